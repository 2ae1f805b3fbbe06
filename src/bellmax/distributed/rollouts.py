"""Environments stepped by Ray actors: `RayVectorEnv` is a Gymnasium vector env whose
`num_envs` copies live in `num_workers` actors (a contiguous share each, on any node of the
cluster), so an on-policy run collects experience on more cores than one process has
(`bellmax train ppo ... --num-workers K`).

What makes it trustworthy: a run with K workers ends with exactly the parameters of the
single-process run with the same seed and the same number of environments. Each environment is
made, seeded (seed + its index) and stepped as it would be in one process, and the learner keeps
the policy: it computes every step's actions for the whole batch, as one process would, and sends
each worker its share. (Running the policy on the workers instead would change the last bits: a
network's output for a row of a small batch differs from its output for the same row in a larger
batch on the CPU, measured up to 7e-8 for batches of 2 and 4, and sampling would draw its random
numbers in other groupings.) The workers therefore pay off where stepping the environments is the
expensive part of a rollout (MuJoCo, Atari, simulators), not for CartPole.

Checkpoints hold each worker's environments as a single-process run's checkpoint holds its own
(pickles, MuJoCo physics and RNG states); restoring one starts the workers again. A worker that
dies is started again from a snapshot of its environments (taken every 256 vector steps) and steps
the actions it was sent since, then the step it missed: the run goes on, its numbers unchanged.
Environments that cannot be saved (the ALE emulator) are rebuilt the same way from their last
reset: made again, reset with the same seed, and stepped through every action since.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from bellmax.errors import BellmaxError


def _remote_worker_class() -> Any:
    import ray

    @ray.remote(num_cpus=1)
    class EnvWorker:
        """A share of the environments: `count` copies of `env_id`, the first being env `first`."""

        def __init__(self, env_id: str, count: int, state: dict[str, Any] | None = None):
            import bellmax.envs  # noqa: F401  (registers bellmax's own ids in this process)
            from bellmax.envs.make import make_vec_env, restore_env

            self.env = restore_env(state) if state is not None else make_vec_env(env_id, count)

        def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[np.ndarray, dict]:
            return self.env.reset(seed=seed, options=options)

        def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
            return self.env.step(actions)

        def state(self) -> dict[str, Any] | None:
            from bellmax.envs.make import env_state

            return env_state(self.env)

        def close(self) -> None:
            self.env.close()

        def node(self) -> str:
            """The Ray node this worker runs on."""
            return str(ray.get_runtime_context().get_node_id())

    return EnvWorker


SNAPSHOT_EVERY = 256  # vector steps between two snapshots of the workers' environments


def free_cpus(ray: Any, wanted: float, patience: float = 10.0) -> float:
    """The cluster's free CPUs, waiting up to `patience` seconds for `wanted` of them (actors just
    killed give theirs back a moment later)."""
    deadline = time.monotonic() + patience
    while True:
        free = float(ray.available_resources().get("CPU", 0.0))
        if free >= wanted or time.monotonic() > deadline:
            return free
        time.sleep(0.1)


def shares(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """(first env, count) of each worker: contiguous, as even as possible, in env order."""
    bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


class RayVectorEnv(gym.vector.VectorEnv):
    """`num_envs` copies of `env_id` in `num_workers` Ray actors, stepping as one vector env."""

    def __init__(self, env_id: str, num_envs: int, num_workers: int, states: list[Any] | None = None):
        if not 1 <= num_workers <= num_envs:
            raise BellmaxError(f"--num-workers {num_workers}: between 1 and num_envs={num_envs} "
                               "(each worker steps at least one environment)")
        try:
            import ray
        except ImportError:
            raise BellmaxError("--num-workers runs on Ray, which is not installed: pip install -c constraints.txt "
                               "'bellmax[ray]' (or make install)") from None

        from bellmax.envs.make import make_vec_env

        if not ray.is_initialized():
            ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
        free = free_cpus(ray, num_workers)
        if free < num_workers:
            raise BellmaxError(f"--num-workers {num_workers}: each worker needs a CPU and the Ray cluster has "
                               f"{free:g} free; use fewer workers or add nodes")
        probe = make_vec_env(env_id, 1)  # the spaces and metadata, as in one process
        self.env_id, self.num_envs, self.num_workers = env_id, num_envs, num_workers
        self.metadata = dict(probe.metadata)
        self.single_observation_space = probe.single_observation_space
        self.single_action_space = probe.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        probe.close()
        self.shares = shares(num_envs, num_workers)
        self._worker_class = _remote_worker_class()
        self.workers = [self._worker_class.remote(env_id, count, None if states is None else states[i])
                        for i, (_, count) in enumerate(self.shares)]
        # what a worker that dies is rebuilt from: its environments' state at the last snapshot, and
        # the actions sent to it since (stepping them again gives the same results: the state holds
        # the environments' random generators)
        self.snapshots: list[Any] = list(states) if states is not None else [None] * num_workers
        self.since: list[list[np.ndarray]] = [[] for _ in range(num_workers)]
        # for environments that cannot be saved: each worker's last reset (seed, options), which a
        # new worker repeats before stepping the actions since
        self.resets: list[tuple[int | None, dict[str, Any] | None] | None] = [None] * num_workers
        self.restarts = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        import ray

        seeds = [None if seed is None else seed + first for first, _ in self.shares]
        results = ray.get([w.reset.remote(s, options) for w, s in zip(self.workers, seeds)])
        self.resets = [(s, options) for s in seeds]
        self.since = [[] for _ in self.workers]
        self.snapshot()
        return np.concatenate([obs for obs, _ in results]), merge_infos([info for _, info in results], self.shares)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        parts = [actions[first:first + count] for first, count in self.shares]
        futures = [w.step.remote(part) for w, part in zip(self.workers, parts)]
        results = [self.result(i, future, parts[i]) for i, future in enumerate(futures)]
        for i, part in enumerate(parts):
            self.since[i].append(part)
        if len(self.since[0]) % SNAPSHOT_EVERY == 0 and any(state is not None for state in self.snapshots):
            self.snapshot()  # (environments that could not be saved at their reset never can: not asked again)
        obs, rewards, terminated, truncated, infos = zip(*results)
        return (np.concatenate(obs), np.concatenate(rewards), np.concatenate(terminated), np.concatenate(truncated),
                merge_infos(list(infos), self.shares))

    def result(self, index: int, future: Any, part: np.ndarray) -> Any:
        """Worker `index`'s answer to a step; if it died, a new worker rebuilt from its snapshot and
        the actions since, then this step again."""
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(future)
        except RayActorError:
            self.restarts += 1
            count, snapshot, reset = self.shares[index][1], self.snapshots[index], self.resets[index]
            if snapshot is None and reset is None:
                raise BellmaxError(f"Ray worker {index} died before its environments were first reset") from None
            worker = self._worker_class.remote(self.env_id, count, snapshot)
            if snapshot is None and reset is not None:  # an environment that cannot be saved: from its reset
                ray.get(worker.reset.remote(*reset))
            for earlier in self.since[index]:
                ray.get(worker.step.remote(earlier))
            self.workers[index] = worker
            return ray.get(worker.step.remote(part))

    def snapshot(self) -> None:
        """Save every worker's environments; those that cannot be saved keep their reset and every
        action since as the way to rebuild them."""
        import ray

        self.snapshots = ray.get([w.state.remote() for w in self.workers])
        self.since = [[] if state is not None else since for state, since in zip(self.snapshots, self.since)]

    def close_extras(self, **kwargs: Any) -> None:
        import ray

        for worker in getattr(self, "workers", []):
            ray.kill(worker)
        self.workers = []

    def __getstate__(self) -> dict[str, Any]:

        self.snapshot()
        states = self.snapshots
        if any(s is None for s in states):
            raise TypeError("an environment of a worker cannot be saved")  # as env_state expects of a pickle
        return {"env_id": self.env_id, "num_envs": self.num_envs, "num_workers": self.num_workers, "states": states}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["env_id"], state["num_envs"], state["num_workers"], state["states"])  # type: ignore[misc]


def merge_infos(infos: list[dict[str, Any]], shares: list[tuple[int, int]]) -> dict[str, Any]:
    """The workers' vector infos as one: every key's array over all envs, with its `_key` mask
    (False where a worker had no such entry), as a single vector env would report them."""
    keys: list[str] = []
    for info in infos:
        keys += [k for k in info if k not in keys]
    merged: dict[str, Any] = {}
    total = sum(count for _, count in shares)
    for key in keys:
        present = [info[key] for info in infos if key in info]
        if all(isinstance(v, dict) for v in present):
            merged[key] = merge_infos([info.get(key, {}) for info in infos], shares)
            continue
        sample = np.asarray(present[0])
        parts = []
        for info, (_, count) in zip(infos, shares):
            if key in info:
                parts.append(np.asarray(info[key]))
            else:
                parts.append(np.zeros((count, *sample.shape[1:]), dtype=bool if key.startswith("_") else sample.dtype))
        merged[key] = np.concatenate(parts) if parts else np.zeros(total)
    return merged
