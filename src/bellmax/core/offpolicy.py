"""What the off-policy family (DQN, DDPG, TD3, SAC) shares: the replay buffer, the checks that
it fits in memory and on disk, and the loop that interleaves acting and learning (its Config
fields are `bellmax.config.OffPolicyConfig`).

An off-policy algorithm provides `build()`, `explore(obs)` (actions to try: epsilon-greedy,
noisy, or sampled), `gradient_step(batch)` (one update on a replay minibatch, returning named
scalars), `modules()` and `optimizers()`. One `train_iteration` acts for up to `log_every`
environment steps: every vector step stores its real transitions; once `learning_starts` steps
are in, every `train_freq` vector steps take `gradient_steps` gradient steps on uniform samples.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bellmax.config import OffPolicyConfig
from bellmax.core.algorithm import Algorithm, EnvStep
from bellmax.core.nets import is_image_space, space_shape
from bellmax.core.replay import FrameStackReplayBuffer, NStepAccumulator, ReplayBuffer
from bellmax.core.resources import memory_bytes
from bellmax.errors import BellmaxError


def check_memory_for_replay(nbytes: int, buffer_size: int, stored: int = 0) -> None:
    """The replay's arrays are allocated lazily and fill over the run: one larger than the machine's
    memory would get the process killed hours in, so it is an error before the first step; one
    whose unfilled part (a resumed run's is partly in memory already) exceeds what is free now is
    a warning."""
    memory = memory_bytes()
    if memory is None:
        return
    total, available = memory
    gib = 2.0**30
    if nbytes > total:
        raise BellmaxError(f"a replay buffer of {buffer_size:,} transitions needs {nbytes / gib:.1f} GiB, more than "
                           f"this machine's {total / gib:.1f} GiB of memory: lower --buffer-size")
    to_fill = nbytes * (1 - stored / buffer_size)
    if to_fill > available:
        warnings.warn(f"the replay buffer ({buffer_size:,} transitions) will take {to_fill / gib:.1f} GiB more as it "
                      f"fills; {available / gib:.1f} GiB are free now: the run may be killed for memory",
                      stacklevel=3)


def check_disk_for_checkpoints(run_dir: Path, replay_nbytes: int) -> None:
    """A checkpoint holds the replay, and is written next to the previous one before replacing it:
    warn at the start when the disk cannot take one (the first save would fail, the replay lost
    with the time since the run started), rather than at that save."""
    existing = next(d for d in (Path(run_dir).absolute(), *Path(run_dir).absolute().parents) if d.exists())
    free = shutil.disk_usage(existing).free
    gib = 2.0**30
    if replay_nbytes > free:
        warnings.warn(f"each checkpoint of this run holds its replay buffer, {replay_nbytes / gib:.1f} GiB once full; "
                      f"{existing} has {free / gib:.1f} GiB free: checkpoints will fail unless space is freed",
                      stacklevel=3)


class OffPolicyAlgorithm(Algorithm):
    config: OffPolicyConfig

    def __init__(self, config: OffPolicyConfig, env: gym.Env | gym.vector.VectorEnv | None = None):
        super().__init__(config, env)
        try:
            self.replay = self.make_replay()
        except MemoryError as exc:  # arrays larger than the machine lets one process reserve
            raise BellmaxError(f"a replay buffer of {self.config.buffer_size:,} transitions does not fit in this "
                               f"machine's memory ({str(exc).strip().splitlines()[0]}): lower --buffer-size") from None
        # n-step transitions are built as they arrive, except by the frame buffer (when sampled)
        self.n_step = (NStepAccumulator(self.env.num_envs, config.n_step, config.gamma)
                       if config.n_step > 1 and not isinstance(self.replay, FrameStackReplayBuffer) else None)
        self.rng = np.random.default_rng(config.seed)  # replay sampling and exploration noise
        self.vector_steps = 0
        self.resources_checked = False

    def make_replay(self) -> ReplayBuffer | FrameStackReplayBuffer:
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        action_dtype = np.int64 if isinstance(action_space, gym.spaces.Discrete) else np.float32
        if is_image_space(obs_space):  # stacked Atari frames: store each frame once
            return FrameStackReplayBuffer(cfg.buffer_size, self.env.num_envs, obs_space.shape,
                                          space_shape(action_space), action_dtype, gamma=cfg.gamma, n_step=cfg.n_step)
        return ReplayBuffer(cfg.buffer_size, space_shape(obs_space), space_shape(action_space),
                            obs_dtype=self.replay_obs_dtype(), action_dtype=action_dtype)

    def replay_obs_dtype(self) -> np.dtype:
        """How a flat replay buffer stores observations: float64 ones (MuJoCo's) as the float32 the
        networks compute in (half the memory, no conversion in every forward pass, the same values)."""
        dtype = self.env.single_observation_space.dtype
        assert dtype is not None  # Box and Discrete observations (the networks' encoders take no others) have one
        return np.dtype(np.float32) if dtype == np.float64 else dtype

    def before_sampling(self) -> None:
        """Hook before each round of gradient steps (e.g. annealing prioritized replay's beta)."""

    # -- what a subclass provides -------------------------------------------------------------
    def explore(self, obs: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    # -- the shared loop ----------------------------------------------------------------------
    def random_actions(self) -> np.ndarray:
        space, n = self.env.single_action_space, self.env.num_envs
        if isinstance(space, gym.spaces.Discrete):
            return self.rng.integers(space.n, size=n)
        assert isinstance(space, gym.spaces.Box)  # DQN acts in Discrete spaces, DDPG, TD3 and SAC in Boxes
        return self.rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(np.float32)

    def check_resources(self, run_dir: Path | None = None) -> None:
        if not self.resources_checked:
            check_memory_for_replay(self.replay.nbytes, self.config.buffer_size, len(self.replay))
            if run_dir is not None:
                check_disk_for_checkpoints(run_dir, self.replay.nbytes)
            self.resources_checked = True

    def train_iteration(self, max_steps: int) -> dict[str, float]:
        cfg = self.config
        n_vector = max(1, min(cfg.log_every, max_steps) // self.env.num_envs)
        sums: dict[str, float] = {}
        updates, acting_seconds = 0, 0.0
        for _ in range(n_vector):
            start = time.perf_counter()
            if self.global_step < cfg.learning_starts:
                actions = self.random_actions()
            else:
                with torch.inference_mode():
                    actions = self.explore(torch.as_tensor(self.obs, device=self.device))
            self.store(actions, self.step_envs(actions))
            self.global_step += self.env.num_envs
            self.vector_steps += 1
            acting_seconds += time.perf_counter() - start
            if self.global_step >= cfg.learning_starts and self.vector_steps % cfg.train_freq == 0:
                self.before_sampling()
                for _ in range(cfg.gradient_steps):
                    batch = self.to_device(self.replay.sample(cfg.batch_size, self.rng))
                    for key, value in self.gradient_step(batch).items():
                        sums[key] = sums.get(key, 0.0) + value
                    updates += 1
        self.rollout_seconds = acting_seconds
        metrics = {key: value / updates for key, value in sums.items()}
        metrics["losses/gradient_steps"] = updates
        metrics["rollout/buffer_size"] = len(self.replay)
        return metrics

    def store(self, actions: np.ndarray, step: EnvStep) -> None:
        """Put one vector step into the replay buffer, as n-step transitions when n_step > 1."""
        if self.n_step is None:
            self.replay.add(step.obs, actions, step.rewards, step.next_obs, step.terminated, step.valid, step.done,
                            self.config.gamma)
            return
        for obs, action, n_return, last_obs, term, discount in self.n_step.step(
                step.obs, actions, step.rewards, step.next_obs, step.terminated, step.valid, step.done):
            self.replay.add(obs[None], np.asarray(action)[None], np.array([n_return]), last_obs[None],
                            np.array([term]), np.ones(1, dtype=bool), None, discount)

    # -- state --------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"replay": self.replay, "rng": self.rng.bit_generator.state, "vector_steps": self.vector_steps,
                "n_step": self.n_step}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.replay = state["replay"]
        self.rng.bit_generator.state = state["rng"]
        self.vector_steps = state["vector_steps"]
        self.n_step = state["n_step"]
