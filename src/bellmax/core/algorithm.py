"""The Algorithm base: learn / predict / evaluate / save / load, and a state_dict that holds
everything needed to continue a run bit-for-bit.

A subclass builds its networks in `build()`, does one iteration of its method in
`train_iteration(max_steps)` (collect -> estimate -> update, returning named scalars) and lists
its modules and optimizers in `modules()` / `optimizers()`. The base owns the environment loop
state (current observations, episode tracker, autoreset flags), seeding, checkpoints and the
outer training loop, so no algorithm copies them.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellmax.config import Config
from bellmax.core.buffers import EpisodeTracker, RolloutBuffer
from bellmax.core.nets import ACTIVATIONS, NatureCNN, Policy, ValueNet, is_image_space
from bellmax.core.normalize import ObsNormalizer, RewardNormalizer
from bellmax.core.optim import Adam
from bellmax.core.run import CHECKPOINT_FILE, Run, StopRequests, load_checkpoint, save_checkpoint
from bellmax.envs.make import env_state, make_vec_env, restore_env
from bellmax.errors import BellmaxError, TrainingInterrupted


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
    """Base of every deep RL algorithm in `bellmax.algos`."""

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    supports_discrete: ClassVar[bool] = True
    supports_continuous: ClassVar[bool] = True

    policy: nn.Module

    def __init__(self, config: Config, env: gym.vector.VectorEnv | None = None):
        if not isinstance(config, self.config_class):
            raise BellmaxError(f"{self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate()
        self.config = config
        torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)
        if env is None:
            env = make_vec_env(config.env, config.num_envs, seed=config.seed)
            obs = env.initial_obs
        else:
            obs, _ = env.reset(seed=config.seed)
        self.env = env
        self._check_action_space(env.single_action_space)
        self.obs = obs
        self.prev_done = np.zeros(env.num_envs, dtype=bool)  # NEXT_STEP autoreset: next step is filler
        self.tracker = EpisodeTracker(env.num_envs)
        obs_space = env.single_observation_space
        self.obs_normalizer = ObsNormalizer(obs_space.shape) if config.normalize_obs else None
        self.reward_normalizer = RewardNormalizer(env.num_envs, config.gamma) if config.normalize_reward else None
        self.global_step = 0
        self.iteration = 0
        self.last_eval: np.ndarray | None = None
        self.lives: np.ndarray | None = None  # Atari lives per env, for episodic_life
        self.rollout_seconds = 0.0
        self._eval_env: gym.vector.VectorEnv | None = None  # evaluation's own envs, never checkpointed
        self.device = resolve_device(config.device, obs_space)
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

    def optimizers(self) -> dict[str, Adam]:
        raise NotImplementedError

    # -- shared building blocks ---------------------------------------------------------------
    def make_policy_and_value(self) -> tuple[Policy, ValueNet]:
        """pi_theta and V_phi from the config: separate MLPs, or one Nature CNN torso shared by
        both heads for image observations (Atari)."""
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        if is_image_space(obs_space):
            torso = NatureCNN(obs_space)
            return (Policy(obs_space, action_space, (), torso=torso, log_std_init=cfg.log_std_init),
                    ValueNet(obs_space, (), torso=torso))
        activation = ACTIVATIONS[cfg.activation]
        return (Policy(obs_space, action_space, cfg.hidden_sizes, activation=activation, log_std_init=cfg.log_std_init),
                ValueNet(obs_space, cfg.hidden_sizes, activation=activation))

    def make_rollout_buffer(self, n_steps: int) -> RolloutBuffer:
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        discrete_actions = isinstance(action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        if isinstance(obs_space, gym.spaces.Discrete):
            obs_dtype = torch.long
        elif is_image_space(obs_space):
            obs_dtype = torch.uint8
        else:
            obs_dtype = torch.float32
        return RolloutBuffer(n_steps, self.env.num_envs, obs_space.shape, action_space.shape,
                             obs_dtype=obs_dtype, action_dtype=torch.long if discrete_actions else torch.float32)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch from a (CPU) buffer, on the networks' device (no copy on the CPU)."""
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of all modules, each once (a shared torso appears in two modules)."""
        seen: dict[int, nn.Parameter] = {}
        for module in self.modules().values():
            for p in module.parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

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

    # -- acting -------------------------------------------------------------------------------
    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """What the env receives: Gaussian samples are clipped to the Box bounds (the raw sample
        is what the policy gradient uses)."""
        space = self.env.single_action_space
        actions = actions.cpu().numpy()
        if isinstance(space, gym.spaces.Box):
            return np.clip(actions, space.low, space.high)
        return actions.astype(np.int64)

    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """What the networks see: raw observations, or normalized ones (statistics updated
        only from training rollouts)."""
        if self.obs_normalizer is None:
            return obs
        return self.obs_normalizer(obs, update)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations (argmax / Gaussian mean when deterministic)."""
        obs_t = torch.as_tensor(self.normalize_obs(np.asarray(obs)), device=self.device)
        return self.env_actions(self.policy.act(obs_t, deterministic=deterministic))

    def collect_rollout(self, buffer: RolloutBuffer, n_steps: int, value_fn: nn.Module) -> None:
        """Run the current policy for n_steps vector steps, filling `buffer` (on-policy).

        The buffer gets what learning uses (normalized observations and rewards when enabled);
        the episode tracker gets the raw rewards.
        """
        start = time.perf_counter()
        buffer.length = n_steps
        store = buffer.numpy()  # NumPy views of the buffer's tensors: cheap per-step writes
        for t in range(n_steps):
            obs = self.normalize_obs(self.obs, update=True)
            obs_t = torch.as_tensor(obs, device=self.device)
            with torch.inference_mode():
                actions, log_probs = self.policy.sample(obs_t)
                actions = actions.cpu()
                store["log_probs"][t] = log_probs.cpu().numpy()
                store["values"][t] = value_fn(obs_t).cpu().numpy()
            step = self.step_envs(self.env_actions(actions))
            store["obs"][t] = obs
            store["actions"][t] = actions.numpy().reshape(store["actions"][t].shape)
            store["rewards"][t] = step.rewards
            store["terminated"][t] = step.terminated
            store["truncated"][t] = step.truncated
            store["valid"][t] = step.valid
        with torch.inference_mode():
            last_obs = torch.as_tensor(self.normalize_obs(self.obs), device=self.device)
            buffer.last_value = value_fn(last_obs).cpu().clone()
        self.global_step += n_steps * self.env.num_envs
        self.rollout_seconds = time.perf_counter() - start

    def rollout_length(self, max_steps: int) -> int:
        """Vector steps of the next rollout: n_steps, or fewer so total_steps is an exact budget."""
        return min(self.config.n_steps, -(-max_steps // self.env.num_envs))

    def step_envs(self, env_actions: np.ndarray) -> EnvStep:
        """Step every env once and do the bookkeeping all algorithms share: mark the NEXT_STEP
        autoreset filler as invalid, turn rewards and terminations into what learning uses
        (clipping, normalization, life losses), feed the raw rewards to the episode tracker, and
        advance the current observations."""
        next_obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        valid = ~self.prev_done
        done = terminated | truncated  # real episode ends: the env resets on the next step
        raw_rewards = np.asarray(rewards, dtype=np.float64)
        learn_rewards = np.sign(raw_rewards) if self.config.clip_reward else raw_rewards
        if self.reward_normalizer is not None:
            learn_rewards = self.reward_normalizer(learn_rewards, done)
        step = EnvStep(obs=self.obs, next_obs=next_obs, rewards=learn_rewards,
                       terminated=self.learning_terminations(terminated, done, info), truncated=truncated,
                       done=done, valid=valid)
        self.tracker.update(raw_rewards, done, valid)
        self.prev_done, self.obs = done, next_obs
        return step

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
    def learn(self, total_steps: int | None = None, run: Run | None = None,
              checkpoint_every: int | None = None) -> Algorithm:
        """Train until `total_steps` environment steps in all (counting steps already done), or
        until a periodic evaluation reaches `config.stop_at_return`. With a `run`, log every
        iteration, checkpoint every `checkpoint_every` steps and at the end, and evaluate at the end.

        With a `run`, Ctrl-C or SIGTERM stops at the end of the current iteration: a checkpoint of
        that step is written, then `TrainingInterrupted` is raised (a second signal stops at once)."""
        self.check_resources(None if run is None else run.dir)
        cfg = self.config
        total = cfg.total_steps if total_steps is None else total_steps
        every = cfg.checkpoint_every if checkpoint_every is None else checkpoint_every
        next_checkpoint = (self.global_step // every + 1) * every if every else None
        next_eval = (self.global_step // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
        evaluated_at = None
        if run is not None:
            run.start_progress(total, self.global_step)
        start, start_step = time.perf_counter(), self.global_step
        try:
            with StopRequests(run.notify) if run is not None else nullcontext() as stop_requests:
                while self.global_step < total:
                    t0 = time.perf_counter()
                    metrics = self.train_iteration(total - self.global_step)
                    self.iteration += 1
                    metrics["time/iteration_seconds"] = time.perf_counter() - t0
                    metrics["time/rollout_seconds"] = self.rollout_seconds
                    sps = (self.global_step - start_step) / max(time.perf_counter() - start, 1e-9)
                    metrics["time/sps"] = sps
                    metrics["rollout/ep_return"] = self.tracker.mean_return()
                    metrics["rollout/ep_length"] = self.tracker.mean_length()
                    metrics["rollout/episodes"] = self.tracker.episodes
                    stop = False
                    if next_eval is not None and self.global_step >= next_eval:
                        metrics.update(self._evaluate_and_record())
                        evaluated_at = self.global_step
                        next_eval = (self.global_step // cfg.eval_every + 1) * cfg.eval_every
                        stop = cfg.stop_at_return is not None and metrics["eval/return"] >= cfg.stop_at_return
                    if run is not None:
                        run.log(self.global_step, metrics)
                        run.update_progress(self.global_step, sps, self.tracker.mean_return())
                        if evaluated_at == self.global_step:  # a line per evaluation, also without the bar
                            run.notify(f"step {self.global_step:,}: eval/return {metrics['eval/return']:.2f} "
                                       f"+- {metrics['eval/return_std']:.2f} over {metrics['eval/episodes']} "
                                       "episodes (deterministic policy)")
                        saved = next_checkpoint is not None and self.global_step >= next_checkpoint
                        if saved:
                            self.save(run.dir / CHECKPOINT_FILE)
                            next_checkpoint = (self.global_step // every + 1) * every
                        if stop_requests.requested:  # at an iteration's end, so resuming is exact
                            if not saved:
                                self.save(run.dir / CHECKPOINT_FILE)
                            raise TrainingInterrupted(stop_requests.requested, self.name, self.global_step, run.dir)
                    if stop:
                        break
                if run is not None:
                    self.save(run.dir / CHECKPOINT_FILE)
                    if cfg.eval_episodes and evaluated_at != self.global_step:
                        run.log(self.global_step, self._evaluate_and_record())
        finally:
            if run is not None:
                run.close()
        return self

    def check_resources(self, run_dir: Path | None = None) -> None:
        """Refuse (or warn about) what would stop training hours in, before its first step: `learn`
        calls it, and `bellmax train` before it creates the run directory. Nothing to check here;
        replay-based algorithms check that their buffer fits in memory and its checkpoints on disk."""

    def _evaluate_and_record(self) -> dict[str, float]:
        start = time.perf_counter()
        returns = self.evaluate(self.config.eval_episodes)
        self.last_eval = returns
        return {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/episodes": len(returns), "time/eval_seconds": time.perf_counter() - start}

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, episodes: int = 10, seed: int | None = None) -> np.ndarray:
        """Raw returns of `episodes` episodes of the deterministic policy, run side by side in a
        vector env of its own (one episode per copy, seeded from seed + 10**6 by default).

        Uses its own env and never the training RNGs or normalizer updates, so evaluating does not
        change what training does next.
        """
        base = self.config.seed + 10**6 if seed is None else seed
        if self._eval_env is None or self._eval_env.num_envs != episodes:
            # built once and reset with the seeds each time: periodic evaluation would otherwise
            # rebuild the envs (MuJoCo models, Atari emulators) on every call
            if self._eval_env is not None:
                self._eval_env.close()
            self._eval_env = make_vec_env(self.config.env, episodes)
        env = self._eval_env
        obs, _ = env.reset(seed=base)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            obs, rewards, terminated, truncated, _ = env.step(self.predict(obs))
            returns += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
        return returns

    def params_sha256(self) -> str:
        return params_sha256(self.policy)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        env_bytes = env_state(self.env)
        return {
            "algo": self.name,
            "config": self.config.to_dict(),
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": rng_state(),
            "env": env_bytes,
            "obs": self.obs,
            "prev_done": self.prev_done,
            "lives": self.lives,
            "tracker": self.tracker,
            "normalizers": {"obs": self.obs_normalizer, "reward": self.reward_normalizer},
            "global_step": self.global_step,
            "iteration": self.iteration,
            "extra": self.extra_state(),
        }

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific state beyond modules and optimizers (schedules, normalizers)."""
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
        self.obs_normalizer = state["normalizers"]["obs"]
        self.reward_normalizer = state["normalizers"]["reward"]
        self.global_step = state["global_step"]
        self.iteration = state["iteration"]
        self.load_extra_state(state.get("extra", {}))
        set_rng_state(state["rng"])

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (a crash never leaves a half-written file behind)."""
        save_checkpoint(Path(path), self.state_dict())

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False, **config_changes: Any) -> Algorithm:
        """Rebuild an algorithm from a checkpoint file or run directory, ready to continue.
        mmap=True (for evaluation) maps the checkpoint instead of reading it, so a large replay
        buffer is not read into memory unless it is used (see `load_checkpoint`)."""
        state = load_checkpoint(Path(path), mmap=mmap)
        if cls is not Algorithm and state["algo"] != cls.name:
            raise BellmaxError(f"{path} holds a {state['algo']} checkpoint, not {cls.name}")
        return cls.from_state(state, **config_changes)

    @classmethod
    def from_state(cls, state: dict[str, Any], **config_changes: Any) -> Algorithm:
        """Rebuild an algorithm from a loaded checkpoint dict (see `load`)."""
        from bellmax.algos import get_algorithm

        algo_class = get_algorithm(state["algo"])
        config = algo_class.config_class.from_dict(state["config"]).replace(**config_changes)
        agent = algo_class(config)
        agent.load_state_dict(state)
        return agent
