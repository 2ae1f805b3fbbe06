"""The Algorithm base: learn / predict / evaluate / save / load, and a state_dict that holds
everything needed to continue a run bit-for-bit.

A family base (`core/onpolicy.py`, `core/offpolicy.py`) or an algorithm builds its networks in
`build()`, does one iteration of its method in `train_iteration(max_steps)` (collect -> estimate
-> update, returning named scalars) and lists its modules and optimizers in `modules()` /
`optimizers()`. This base owns what every algorithm shares: seeding, the environments and their
loop state (current observations, episode tracker, autoreset flags), the training budget and the
outer loop (periodic evaluation, logging, checkpoints, stop requests), and checkpoints with the
rule of what a resumed run may change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import time
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellmax.config import RESUMABLE_FIELDS, Config
from bellmax.core.nets import Actor, is_image_space, space_shape
from bellmax.core.optim import Optimizer
from bellmax.core.rollout import EpisodeTracker
from bellmax.core.run import Run, StopRequests, load_checkpoint, save_checkpoint, save_run_checkpoint
from bellmax.envs.make import as_vector_env, env_state, make_vec_env, restore_env
from bellmax.errors import BellmaxError, ConfigError, TrainingInterrupted

C = TypeVar("C", bound=Config)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():  # sampling on a GPU draws from its own generator
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def resolve_device(name: str, obs_space: gym.Space) -> torch.device:
    """The torch device for `Config.device`. "auto" picks a CUDA GPU only for image observations
    (the Nature CNN, whose convolutions a GPU speeds up) and the CPU for everything else: a small
    MLP costs less than moving a batch of observations to a GPU and the actions back every step.
    An explicit GPU that this machine lacks is an error, not a silent fall back to the CPU."""
    if name == "auto":
        name = "cuda" if is_image_space(obs_space) and torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BellmaxError(f"--device {name}: this machine has no CUDA GPU that torch can use "
                               f"(torch {torch.__version__}); use --device cpu or --device auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise BellmaxError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                               f"numbered from 0")
        # same seed, same numbers on a GPU too: deterministic cuBLAS workspaces and kernels
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        return torch.device("cuda", index)  # "cuda" -> "cuda:0": tensors report their index, compare equal
    elif name == "mps" and not torch.backends.mps.is_available():
        raise BellmaxError("--device mps: this machine has no Apple GPU that torch can use; use --device cpu")
    return torch.device(name)


def params_sha256(module: nn.Module) -> str:
    """A stable hash of a module's parameters and buffers (sorted by name, raw bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resumed_config(saved: C, changes: dict[str, Any]) -> C:
    """The config a loaded run continues with: `saved` with `changes`, which may differ from it only
    in RESUMABLE_FIELDS (anything else would not continue the same run)."""
    names = {f.name for f in dataclasses.fields(saved)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown {type(saved).__name__} field(s) {', '.join(unknown)}")
    changed = sorted(k for k, v in changes.items() if v != getattr(saved, k) and k not in RESUMABLE_FIELDS)
    if changed:
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_FIELDS)
        raise BellmaxError(f"a resumed run continues exactly as it was configured: only {allowed} may change "
                           f"(you changed {', '.join(changed)}); start a new run for other settings")
    return saved.replace(**changes)


def multiple_crossed(every: int, before: int, after: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]: a periodic event is due (never, for 0)."""
    return every > 0 and after // every > before // every


class EnvStep(NamedTuple):
    """One vector step as learning sees it. obs: the observations acted on (raw); rewards and
    terminated: after clipping/normalization and life losses; done: true episode ends; valid:
    False for the NEXT_STEP autoreset filler step (not a transition)."""

    obs: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    done: np.ndarray
    valid: np.ndarray


class Algorithm:
    """Base of every deep RL algorithm in `bellmax.algos`.

        agent = PPO(PPOConfig(env="CartPole-v1"))       # or PPOConfig.from_preset("CartPole-v1")
        agent.learn(50_000)                             # the run's budget: 50k environment steps in all
        action = agent.predict(obs)                     # one observation -> one action; a batch -> a batch
        agent.save("ppo.pt"); bellmax.algos.load("ppo.pt")
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    supports_discrete: ClassVar[bool] = True
    supports_continuous: ClassVar[bool] = True

    config: Config
    policy: Actor

    def __init__(self, config: Config, env: gym.Env | gym.vector.VectorEnv | None = None):
        """`env`: train on this environment object instead of making `config.env` (a vector env of
        `config.num_envs` copies, or one gym.Env when num_envs is 1; it must be the registered id
        `config.env`, which evaluation and checkpoints make more copies of)."""
        if not isinstance(config, self.config_class):
            raise BellmaxError(f"{self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate()
        self.config = config
        torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)
        if env is None:
            self.env = self.make_env()
        else:
            self.env = as_vector_env(env, config.env, config.num_envs)
        self.obs, _ = self.env.reset(seed=config.seed)
        self._check_action_space(self.env.single_action_space)
        self.prev_done = np.zeros(self.env.num_envs, dtype=bool)  # NEXT_STEP autoreset: next step is filler
        self.tracker = EpisodeTracker(self.env.num_envs)
        self.global_step = 0
        self.iteration = 0
        self.last_eval: np.ndarray | None = None
        self.lives: np.ndarray | None = None  # Atari lives per env, for episodic_life
        self.rollout_seconds = 0.0
        self._eval_env: gym.vector.VectorEnv | None = None  # evaluation's own envs, never checkpointed
        self.device = resolve_device(config.device, self.env.single_observation_space)
        # networks, their optimizer states and other tensors made in build() start on the device
        with torch.device(self.device) if self.device.type != "cpu" else nullcontext():
            self.build()

    # -- what a subclass provides -------------------------------------------------------------
    def build(self) -> None:
        """Make the networks and optimizers (tensors made here land on `self.device`)."""
        raise NotImplementedError

    def train_iteration(self, max_steps: int) -> dict[str, float]:
        """Collect at most `max_steps` environment steps, update, return named scalars."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> Mapping[str, Optimizer]:
        raise NotImplementedError

    # -- shared building blocks ---------------------------------------------------------------
    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch from a (CPU) buffer, on the networks' device (on the CPU: the batch itself)."""
        if self.device.type == "cpu":
            return batch
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of all modules, each once (a shared torso appears in two modules)."""
        seen: dict[int, nn.Parameter] = {}
        for module in self.modules().values():
            for p in module.parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

    def progress_remaining(self) -> float:
        """1 at the start of the run's budget, 0 at its end: what linear schedules anneal by."""
        return max(0.0, 1.0 - self.global_step / self.config.total_steps)

    # -- checks -------------------------------------------------------------------------------
    def _check_action_space(self, space: gym.Space) -> None:
        discrete = not isinstance(space, gym.spaces.Box)
        if discrete and not self.supports_discrete:
            raise BellmaxError(f"{self.name} needs continuous (Box) actions, but {self.config.env} has {space}")
        if not discrete and not self.supports_continuous:
            raise BellmaxError(f"{self.name} needs discrete actions, but {self.config.env} has {space}")
        if not isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.Box)):
            raise BellmaxError(f"{self.name} supports Discrete, MultiDiscrete and Box actions; "
                               f"{self.config.env} has {space}")

    def action_box(self) -> gym.spaces.Box:
        """The action space of an algorithm with `supports_discrete = False`, which
        `_check_action_space` made sure is a Box."""
        space = self.env.single_action_space
        assert isinstance(space, gym.spaces.Box), space
        return space

    def check_resources(self, run_dir: Path | None = None) -> None:
        """Refuse (or warn about) what would stop training hours in, before its first step: `learn`
        calls it, and `bellmax train` before it creates the run directory. Nothing to check here;
        replay-based algorithms check that their buffer fits in memory and its checkpoints on disk."""

    # -- acting -------------------------------------------------------------------------------
    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """What the env receives: Gaussian samples are clipped to the Box bounds (the raw sample
        is what the policy gradient uses)."""
        space = self.env.single_action_space
        as_numpy = actions.cpu().numpy()
        if isinstance(space, gym.spaces.Box):
            return np.clip(as_numpy, space.low, space.high)
        return as_numpy.astype(np.int64)

    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """What the networks see of raw observations (the on-policy family may normalize them)."""
        return obs

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for raw observations, as the environment takes them: one observation (shaped
        like the observation space) gives one action, a batch (a leading axis) a batch of actions.
        Deterministic: the argmax or the Gaussian mean; deterministic=False samples."""
        obs = np.asarray(obs)
        single = obs.ndim == len(space_shape(self.env.single_observation_space))
        batch = obs[None] if single else obs
        obs_t = torch.as_tensor(self.normalize_obs(batch), device=self.device)
        with torch.no_grad():
            actions = self.env_actions(self.policy.act(obs_t, deterministic=deterministic))
        return actions[0] if single else actions

    def step_envs(self, env_actions: np.ndarray) -> EnvStep:
        """Step every env once and do the bookkeeping all algorithms share: mark the NEXT_STEP
        autoreset filler as invalid, turn rewards and terminations into what learning uses
        (clipping, normalization, life losses), feed the raw rewards to the episode tracker, and
        advance the current observations."""
        next_obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        valid = ~self.prev_done
        done = terminated | truncated  # real episode ends: the env resets on the next step
        raw_rewards = np.asarray(rewards, dtype=np.float64)
        self.check_env_output(next_obs, raw_rewards)
        step = EnvStep(obs=self.obs, next_obs=next_obs, rewards=self.learning_rewards(raw_rewards, done),
                       terminated=self.learning_terminations(terminated, done, info), truncated=truncated,
                       done=done, valid=valid)
        self.tracker.update(raw_rewards, done, valid)
        self.prev_done, self.obs = done, next_obs
        return step

    def check_env_output(self, obs: Any, rewards: np.ndarray) -> None:
        """An environment that returns inf or nan is the environment's fault: say so, by name and step."""
        bad = None
        if not np.isfinite(rewards).all():
            bad = f"reward {rewards[~np.isfinite(rewards)][0]}"
        elif isinstance(obs, np.ndarray) and obs.dtype.kind == "f" and not np.isfinite(obs).all():
            bad = "observation with " + ("nan" if np.isnan(obs).any() else "inf")
        if bad is not None:
            raise BellmaxError(f"{self.config.env} returned a non-finite {bad} at step {self.global_step:,}: "
                               "the environment is at fault, not the algorithm; fix or wrap it (the last "
                               "checkpoint is untouched)")

    def check_finite_update(self, metrics: Mapping[str, Any], parameters: bool = True) -> None:
        """After an update: non-finite losses (or, with `parameters`, parameters) stop the run here,
        before a checkpoint could save them, naming the quantity and the step."""
        # the minimized losses only: a diagnostic such as explained_variance is nan by definition
        # when the returns do not vary
        # (with skip_nonfinite_updates, a non-finite loss's step was dropped: only parameters count)
        bad = [k for k, v in metrics.items() if k.startswith("losses/loss_") and isinstance(v, float)
               and not math.isfinite(v) and not self.config.skip_nonfinite_updates]
        if not bad and parameters:
            bad = [f"parameters of {name}" for name, module in self.modules().items()
                   if not all(torch.isfinite(p).all() for p in module.parameters())]
        if bad:
            raise BellmaxError(f"training diverged at step {self.global_step:,}: {', '.join(bad)} not finite "
                               "(a learning rate too high?); stopped before saving, so the last checkpoint "
                               "is untouched")

    def learning_rewards(self, raw_rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Rewards as learning sees them: raw, or sign(r) with `clip_reward`."""
        return np.sign(raw_rewards) if self.config.clip_reward else raw_rewards

    def learning_terminations(self, terminated: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
        """`terminated` as learning sees it: with `episodic_life`, a lost life also ends the
        return (no bootstrap across it), although the game goes on and returns count whole games."""
        if not self.config.episodic_life or "lives" not in info:
            return terminated
        lives = np.asarray(info["lives"])
        lost = np.zeros_like(terminated) if self.lives is None else (lives < self.lives) & ~done
        self.lives = lives
        return terminated | lost

    # -- the outer loop -----------------------------------------------------------------------
    def set_budget(self, total_steps: int | None = None) -> None:
        """Make `total_steps` the run's budget (None: keep `config.total_steps`); a budget already
        spent is refused rather than silently training for nothing."""
        if total_steps is not None:
            self.config = self.config.replace(total_steps=total_steps)
            self.config.validate()
        if self.global_step >= self.config.total_steps:
            raise BellmaxError(f"this run has taken {self.global_step:,} steps, its whole budget "
                               f"(total_steps={self.config.total_steps:,}): pass a larger total_steps "
                               "(--total-steps) to train further")

    def learn(self, total_steps: int | None = None, *, run: Run | None = None,
              until_step: int | None = None) -> Self:
        """Train until the run has taken `total_steps` environment steps in all, or until a periodic
        evaluation reaches `config.stop_at_return`.

        total_steps: the run's budget, counting the steps already taken (a loaded agent's too); it
            becomes `config.total_steps`, the one horizon every schedule follows (learning-rate and
            clip-range annealing, epsilon, prioritized replay's beta). None keeps config.total_steps.
        run: log every iteration to this run directory, checkpoint every `config.checkpoint_every`
            steps and at the end, and evaluate at the end. Ctrl-C or SIGTERM then stops at the end of
            the current iteration, writes a checkpoint of that step and raises `TrainingInterrupted`
            (a second signal stops at once).
        until_step: pause at the end of the first iteration that reaches this step, the budget and
            schedules unchanged; a later `learn()` (or a resume of the checkpoint a run writes at the
            pause) continues exactly as if training had never paused.
        """
        self.set_budget(total_steps)
        cfg = self.config
        pause_at = cfg.total_steps if until_step is None else until_step
        if not self.global_step < pause_at <= cfg.total_steps:
            raise BellmaxError(f"until_step={until_step:,} must lie after the steps taken ({self.global_step:,}) "
                               f"and within the budget (total_steps={cfg.total_steps:,})")
        self.check_resources(None if run is None else run.dir)
        if run is not None:
            run.update_config(cfg.to_dict())
            run.start_progress(cfg.total_steps, self.global_step)
        start, start_step = time.perf_counter(), self.global_step
        try:
            with StopRequests(run.notify) if run is not None else nullcontext() as stop_requests:
                reached = False
                while self.global_step < pause_at and not reached:
                    before = self.global_step
                    metrics = self.iterate()
                    checkpoint_due = multiple_crossed(cfg.checkpoint_every, before, self.global_step)
                    # losses every iteration (free); parameters before anything could save them
                    self.check_finite_update(metrics, parameters=checkpoint_due or self.global_step >= pause_at
                                             or (stop_requests is not None and stop_requests.requested is not None))
                    metrics["time/sps"] = (self.global_step - start_step) / max(time.perf_counter() - start, 1e-9)
                    if cfg.eval_episodes and multiple_crossed(cfg.eval_every, before, self.global_step):
                        metrics.update(self.evaluate_and_record())
                        reached = cfg.stop_at_return is not None and metrics["eval/return"] >= cfg.stop_at_return
                    if run is not None and stop_requests is not None:  # stop_requests: opened with the run
                        self.record(run, metrics, checkpoint_due, stop_requests)
                if run is not None:
                    self.finish(run, evaluate=reached or self.global_step >= cfg.total_steps)
        finally:
            if run is not None:
                run.close()
        return self

    def iterate(self) -> dict[str, Any]:
        """One iteration of the method, and the scalars every algorithm reports with it."""
        start = time.perf_counter()
        for optimizer in self.optimizers().values():
            optimizer.skip_nonfinite = self.config.skip_nonfinite_updates
        metrics: dict[str, Any] = self.train_iteration(self.config.total_steps - self.global_step)
        self.iteration += 1
        metrics["time/iteration_seconds"] = time.perf_counter() - start
        metrics["time/rollout_seconds"] = self.rollout_seconds
        metrics["rollout/ep_return"] = self.tracker.mean_return()
        metrics["rollout/ep_length"] = self.tracker.mean_length()
        metrics["rollout/episodes"] = self.tracker.episodes
        if self.config.skip_nonfinite_updates:
            metrics["losses/skipped_updates"] = sum(o.skipped for o in self.optimizers().values())
        return metrics

    def record(self, run: Run, metrics: dict[str, Any], checkpoint_due: bool, stop_requests: StopRequests) -> None:
        """Log an iteration; checkpoint it when one is due or a stop was requested (then stop)."""
        run.log(self.global_step, metrics)
        run.update_progress(self.global_step, metrics["time/sps"], metrics["rollout/ep_return"])
        if "eval/return" in metrics:  # a line per evaluation, also without the progress bar
            run.notify(f"step {self.global_step:,}: eval/return {metrics['eval/return']:.2f} "
                       f"+- {metrics['eval/return_std']:.2f} over {metrics['eval/episodes']} "
                       f"episodes ({self.config.eval_policy_name()} policy)")
        if checkpoint_due or stop_requests.requested:
            self.save_in_run(run)
            run.checkpointed_at = self.global_step
        if stop_requests.requested:  # at an iteration's end (or during its checkpoint), so resuming is exact
            raise TrainingInterrupted(stop_requests.requested, self.name, self.global_step, run.dir)

    def finish(self, run: Run, evaluate: bool) -> None:
        """Checkpoint where training ended (or paused) and, when it ended, evaluate once more unless
        the last iteration just did."""
        if run.checkpointed_at != self.global_step:
            self.check_finite_update({})
            self.save_in_run(run)
            run.checkpointed_at = self.global_step
        last = run.rows[-1] if run.rows else {}
        if evaluate and self.config.eval_episodes and not (last.get("step") == self.global_step
                                                           and "eval/return" in last):
            run.log(self.global_step, self.evaluate_and_record())

    def evaluate_and_record(self) -> dict[str, float]:
        start = time.perf_counter()
        returns = self.evaluate(self.config.eval_episodes)
        self.last_eval = returns
        return {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/episodes": len(returns), "time/eval_seconds": time.perf_counter() - start}

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, episodes: int = 10, seed: int | None = None, deterministic: bool | None = None) -> np.ndarray:
        """Raw returns of `episodes` episodes of the policy, run side by side in a vector env of its
        own (one episode per copy, seeded from seed + 10**6 by default): its most likely actions, or
        sampled ones with deterministic=False (default: `config.eval_deterministic`), drawn from a
        torch generator seeded from the same seed.

        Uses its own env and never the training RNGs or normalizer updates, so evaluating does not
        change what training does next.
        """
        base = self.config.seed + 10**6 if seed is None else seed
        deterministic = self.config.eval_deterministic if deterministic is None else deterministic
        if not deterministic:  # sample with a generator of its own: the training RNG stream stays as it is
            training_rng = torch.get_rng_state()
            torch.manual_seed(base)
            try:
                return self.play_episodes(episodes, base, deterministic=False)
            finally:
                torch.set_rng_state(training_rng)
        return self.play_episodes(episodes, base, deterministic=True)

    def play_episodes(self, episodes: int, seed: int, deterministic: bool) -> np.ndarray:
        """Raw returns of one episode in each of `episodes` evaluation envs reset with `seed`."""
        if self._eval_env is None or self._eval_env.num_envs != episodes:
            # built once and reset with the seeds each time: periodic evaluation would otherwise
            # rebuild the envs (MuJoCo models, Atari emulators) on every call
            if self._eval_env is not None:
                self._eval_env.close()
            self._eval_env = make_vec_env(self.config.env, episodes)
        env = self._eval_env
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            obs, rewards, terminated, truncated, _ = env.step(self.predict(obs, deterministic=deterministic))
            returns += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
        return returns

    def params_sha256(self) -> str:
        return params_sha256(self.policy)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "algo": self.name,
            "config": self.config.to_dict(),
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": rng_state(),
            "env": env_state(self.env),
            "obs": self.obs,
            "prev_done": self.prev_done,
            "lives": self.lives,
            "tracker": self.tracker,
            "global_step": self.global_step,
            "iteration": self.iteration,
            "extra": self.extra_state(),
        }

    def make_env(self) -> gym.vector.VectorEnv:
        """The training environments: `config.num_envs` copies of `config.env` in this process."""
        return make_vec_env(self.config.env, self.config.num_envs)

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific state beyond modules and optimizers (schedules, buffers, noise)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, module in self.modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        if state.get("env") is not None:
            self.env.close()
            self.env = restore_env(state["env"])
            self.obs = state["obs"]
            self.prev_done = state["prev_done"]
            self.tracker = state["tracker"]
            self.lives = state.get("lives")
        else:  # an env that cannot be saved (the ALE emulator): episodes restart, the rest is exact
            warnings.warn(f"the state of {self.config.env} could not be saved in the checkpoint: the resumed "
                          "run starts new episodes (parameters, optimizer and RNG states continue exactly)",
                          stacklevel=2)
            self.obs, _ = self.env.reset(seed=self.config.seed + state["global_step"])
            self.prev_done = np.zeros(self.env.num_envs, dtype=bool)
        self.global_step = state["global_step"]
        self.iteration = state["iteration"]
        self.load_extra_state(state.get("extra", {}))
        set_rng_state(state["rng"])

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (a crash never leaves a half-written file behind)."""
        save_checkpoint(Path(path), self.state_dict())

    def save_in_run(self, run: Run) -> None:
        """The run's checkpoint at this step (checkpoint.pt and checkpoint-STEP.pt, keeping the newest
        `keep_checkpoints`)."""
        save_run_checkpoint(run.dir, self.state_dict(), self.global_step, self.config.keep_checkpoints)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False, **changes: Any) -> Self:
        """Rebuild this algorithm from a checkpoint file or run directory, ready to continue; only
        RESUMABLE_FIELDS may be changed (`PPO.load(path, total_steps=200_000)`). mmap=True (for
        evaluation) maps the checkpoint instead of reading it, so a large replay buffer is not read
        into memory unless it is used. `bellmax.algos.load(path)` picks the algorithm for you."""
        if getattr(cls, "name", None) is None:
            raise BellmaxError(f"{cls.__name__}.load needs a concrete algorithm: bellmax.algos.load(path) "
                               "reads which one from the checkpoint (or call PPO.load(path), ...)")
        return cls.from_state(load_checkpoint(Path(path), mmap=mmap), **changes)

    @classmethod
    def from_state(cls, state: dict[str, Any], **changes: Any) -> Self:
        """Rebuild from a loaded checkpoint dict (see `load`)."""
        if state["algo"] != cls.name:
            raise BellmaxError(f"the checkpoint holds a {state['algo']} agent, not {cls.name}: "
                               "load it with bellmax.algos.load(path)")
        config = resumed_config(cls.config_class.from_dict(state["config"]), changes)
        agent = cls(config)
        agent.load_state_dict(state)
        return agent
