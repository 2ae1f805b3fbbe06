"""Typed configuration: the fields the algorithms share, validation with clear errors, and presets.

`Config` holds the fields every algorithm reads; `OnPolicyConfig` adds what the policy-gradient
family (VPG, A2C, TRPO, PPO) reads, `OffPolicyConfig` what the replay family (DQN, DDPG, TD3, SAC)
reads, and each algorithm's own Config (in its file under `bellmax/algos/`) the rest. A field
exists only on the configs whose algorithm reads it, and one idea keeps one name everywhere
(`learning_rate`, `gamma`, `batch_size`, `ent_coef`, ...). The CLI flags are the kebab-case
names (`--learning-rate`). Validation runs before any work: a bad value raises `ConfigError`
naming the field, the allowed range and the flag.

Presets are plain JSON under `bellmax/presets/`, one file per algorithm, each entry with the env
it was tuned for and its provenance (paper, rl-zoo3, or our own tuning and the benchmark behind it):
`PPOConfig.from_preset("CartPole-v1")` is what `bellmax train ppo --env CartPole-v1` starts from.

This module imports neither torch nor gymnasium.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from bellmax.errors import BellmaxError, ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="Config")
D = TypeVar("D", bound="DataclassInstance")

# What a loaded (resumed) run may change: everything else must match for it to continue exactly (a run
# moved to another device or thread count continues with the same state, but its numbers differ in the
# last bits). `Algorithm.from_state` enforces it.
FLOAT32_MAX = 3.4028234663852886e38
MAX_ENVS = 65_536

RESUMABLE_FIELDS = ("total_steps", "checkpoint_every", "keep_checkpoints", "eval_episodes", "stop_at_return", "device",
                    "torch_threads", "skip_nonfinite_updates")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require(ok: bool, name: str, value: Any, allowed: str) -> None:
    """Raise ConfigError unless `ok`: 'invalid <name>=<value>: must be <allowed> (set --<flag>)'."""
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: must be {allowed} (set {flag(name)})")


def require_step_size(name: str, value: float) -> None:
    """A learning rate: finite and positive."""
    require(math.isfinite(value) and value > 0, name, value, "a positive number (e.g. 3e-4)")


@dataclass
class Config:
    """Fields every algorithm reads."""

    algo: ClassVar[str] = ""
    """The algorithm (and preset file) this config belongs to; set by each algorithm's Config."""
    renamed: ClassVar[dict[str, str | None]] = {}
    """Fields of older bellmax releases: old name -> new name (None: a field that was never read,
    dropped). Applied by `from_dict`, so older run directories and checkpoints still load."""

    env: str = "CartPole-v1"
    """Gymnasium environment id (e.g. CartPole-v1, bellmax/GridWorld-v0)."""
    seed: int = 0
    """Seed for Python, NumPy, torch and the environments; same seed, same numbers."""
    total_steps: int = 100_000
    """The run's budget: environment steps in all, summed over the vectorized envs. Every schedule
    (learning-rate and clip-range annealing, epsilon, prioritized replay's beta) runs over it."""
    num_envs: int = 8
    """Environments stepped together as one batch."""
    gamma: float = 0.99
    """Discount factor in R = sum_t gamma^t r_t."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the MLPs (image observations use the Nature CNN instead)."""
    clip_reward: bool = False
    """Learn from sign(r) (Atari convention); reported returns stay raw game scores."""
    episodic_life: bool = False
    """Atari: treat a lost life as the end of the episode for learning (no bootstrap across it)."""
    checkpoint_every: int = 25_000
    """Write a checkpoint every this many environment steps (0: only at the end of training)."""
    keep_checkpoints: int = 2
    """Checkpoints a run keeps (checkpoint-STEP.pt, the newest also as checkpoint.pt); --resume falls
    back to the newest one that verifies when a newer one is damaged."""
    eval_every: int = 0
    """Evaluate the deterministic policy every this many steps (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes of each evaluation (periodic and at the end; 0: none)."""
    eval_deterministic: bool = True
    """Evaluate the policy's most likely actions (argmax, Gaussian mean); False samples them, as in
    games where a deterministic policy gets stuck (the Bomber arena)."""
    stop_at_return: float | None = None
    """Stop early once a periodic evaluation's mean return reaches this value."""
    torch_threads: int = 1
    """Threads torch may use; small MLPs run fastest on one."""
    skip_nonfinite_updates: bool = False
    """Drop an optimizer step whose gradients hold a nan or inf instead of stopping the run (counted
    in losses/skipped_updates); parameters that still go non-finite stop the run as without it."""
    device: str = "auto"
    """Where the networks run: auto (a CUDA GPU for image observations when one is present, else the
    CPU: small MLPs wait on the environments, not on arithmetic), cpu, cuda, cuda:N or mps."""

    def validate(self) -> None:
        """Check every field; raise ConfigError naming the first bad one. Subclasses extend this."""
        for field in dataclasses.fields(self):  # inf and nan mean nothing in any field, and break training
            value = getattr(self, field.name)
            require(not isinstance(value, float) or math.isfinite(value), field.name, value, "a finite number")
            # the networks compute in float32: a larger number overflows the first time it is used
            require(not isinstance(value, float) or abs(value) <= FLOAT32_MAX, field.name, value,
                    f"within float32's range (|x| <= {FLOAT32_MAX:.4g})")
        require(isinstance(self.env, str) and bool(self.env), "env", self.env,
                "a Gymnasium id such as 'CartPole-v1' (to train on an environment object, pass it as "
                "ALGO(config, env=...) and set env to its id)")
        require(0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2^32)")
        require(self.total_steps > 0, "total_steps", self.total_steps, "a positive integer")
        require(1 <= self.num_envs <= MAX_ENVS, "num_envs", self.num_envs,
                f"between 1 and {MAX_ENVS:,} (each environment is a copy in memory)")
        require(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "in (0, 1]")
        require(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            "hidden_sizes", self.hidden_sizes, "one or more positive layer widths",
        )
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")
        require(self.eval_every >= 0, "eval_every", self.eval_every, ">= 0")
        require(self.eval_episodes >= 0, "eval_episodes", self.eval_episodes, ">= 0")
        require(self.stop_at_return is None or (self.eval_every > 0 and self.eval_episodes > 0),
                "stop_at_return", self.stop_at_return, "used with --eval-every N > 0 and --eval-episodes K > 0")
        require(1 <= self.torch_threads <= 1024, "torch_threads", self.torch_threads,
                "between 1 and 1024 (torch crashes asked for 100,000)")
        require(isinstance(self.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device) is not None,
                "device", self.device, "auto, cpu, cuda, cuda:N or mps")

    def eval_policy_name(self) -> str:
        """How evaluation acts, for messages: "deterministic" or "sampled"."""
        return "deterministic" if self.eval_deterministic else "sampled"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def renamed_fields(cls) -> dict[str, str | None]:
        """`renamed` of this class and every base class."""
        merged: dict[str, str | None] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("renamed", {}))
        return merged

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict (config.json, a checkpoint or a preset). Fields renamed since an older
        release are read under their new name; any other unknown key is an error, not ignored."""
        return nested_dataclass(cls, with_new_names(values, cls.renamed_fields()))

    @classmethod
    def from_preset(cls: type[C], env: str | None = None, name: str | None = None, **overrides: Any) -> C:
        """The tuned preset `bellmax train` uses: the one called `name`, or else the one tuned for
        `env`, with `overrides` on top. PPOConfig.from_preset("CartPole-v1", seed=3)."""
        if not cls.algo:
            raise BellmaxError(f"{cls.__name__} belongs to no algorithm, so it has no presets")
        found = find_preset(cls.algo, env, name)
        if found is None:
            known = ", ".join(f"{key} ({entry['env']})" for key, entry in _preset_file(cls.algo).items()) or "none"
            raise BellmaxError(f"no {cls.algo} preset is tuned for {env}; presets: {known}. "
                               f"{cls.__name__}(env={env!r}) gives the defaults")
        return config_with_preset(cls, env, name).replace(**overrides)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


@dataclass
class OnPolicyConfig(Config):
    """Fields the policy-gradient family (VPG, A2C, TRPO, PPO) reads."""

    n_steps: int = 256
    """Vector steps per rollout; one batch holds n_steps x num_envs transitions."""
    gae_lambda: float = 0.95
    """lambda of GAE(gamma, lambda): 0 gives the TD residual, 1 the Monte Carlo advantage."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Nonlinearity of the policy and value MLPs."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    normalize_obs: bool = False
    """Normalize observations by running mean and std (statistics are saved in checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (reported returns stay raw)."""
    self_play: float = 0.0
    """Arena environments (bellmax/Bomber-v0, bellmax/BomberDuel-v0): share of the opponents played by
    snapshots of the policy being trained (one every 50k steps, the newest 8 kept); the others are the
    environment's built-in opponents. 0: no self-play."""
    num_workers: int = 0
    """Ray actors that step the environments, a contiguous share of the num_envs each (the `ray`
    extra); the learner keeps the policy, so the run's numbers equal the single-process run's.
    0: step them in this process."""

    def validate(self) -> None:
        super().validate()
        require(self.n_steps >= 1, "n_steps", self.n_steps, "at least 1")
        require(0 <= self.num_workers <= self.num_envs, "num_workers", self.num_workers,
                f"between 0 and num_envs={self.num_envs} (each worker steps at least one environment)")
        require(not (self.num_workers and self.self_play), "num_workers", self.num_workers,
                "0 with self-play (the snapshots play inside the arena's own vector env)")
        require(0.0 <= self.self_play <= 1.0, "self_play", self.self_play, "a share in [0, 1]")
        require(not (self.self_play and self.normalize_obs), "self_play", self.self_play,
                "0 with --normalize-obs (the snapshots act on raw observations)")
        require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", self.gae_lambda, "in [0, 1]")
        require(-20 <= self.log_std_init <= 2, "log_std_init", self.log_std_init, "in [-20, 2]")

    def rollout_size(self) -> int:
        return self.n_steps * self.num_envs

    def require_minibatch(self, name: str, value: int) -> None:
        """A minibatch size: at least 1 and at most one rollout's transitions."""
        require(1 <= value <= self.rollout_size(), name, value,
                f"between 1 and the rollout n_steps x num_envs = {self.rollout_size()}")


MAX_BUFFER_SIZE = 2**40  # replay transitions: far beyond any machine's memory, well within what NumPy can address


@dataclass
class OffPolicyConfig(Config):
    """Fields every replay-based algorithm (DQN, DDPG, TD3, SAC) reads."""

    # fields older releases had on every config, which no replay-based algorithm reads
    renamed: ClassVar[dict[str, str | None]] = {"gae_lambda": None, "normalize_obs": None, "normalize_reward": None}

    num_envs: int = 1
    learning_rate: float = 3e-4
    """Adam step size."""
    buffer_size: int = 1_000_000
    """Transitions the replay buffer holds (oldest overwritten first)."""
    learning_starts: int = 1000
    """Steps of uniformly random actions before learning begins."""
    batch_size: int = 256
    """Transitions per gradient step."""
    train_freq: int = 1
    """Vector steps between rounds of gradient steps."""
    gradient_steps: int = 1
    """Gradient steps per round."""
    tau: float = 0.005
    """Polyak factor of the target networks: theta' <- tau theta + (1 - tau) theta'."""
    log_every: int = 1000
    """Environment steps per logged iteration."""
    n_step: int = 1
    """Bootstrap after n rewards: y = r_t + ... + gamma^(n-1) r_{t+n-1} + gamma^n (1 - d) V(s_{t+n})."""

    def validate(self) -> None:
        super().validate()
        require_step_size("learning_rate", self.learning_rate)
        require(1 <= self.buffer_size <= MAX_BUFFER_SIZE, "buffer_size", self.buffer_size,
                f"between 1 and 2**40 = {MAX_BUFFER_SIZE:,} (a replay that large would take tens of terabytes)")
        require(self.learning_starts >= 0, "learning_starts", self.learning_starts, ">= 0")
        require(1 <= self.batch_size <= self.buffer_size, "batch_size", self.batch_size,
                f"between 1 and buffer_size ({self.buffer_size})")
        require(self.train_freq >= 1, "train_freq", self.train_freq, "at least 1")
        require(self.gradient_steps >= 0, "gradient_steps", self.gradient_steps, ">= 0")
        require(0 < self.tau <= 1, "tau", self.tau, "in (0, 1]")
        require(self.log_every >= 1, "log_every", self.log_every, "at least 1")
        require(self.n_step >= 1, "n_step", self.n_step, "at least 1")


def with_new_names(values: dict[str, Any], renamed: dict[str, str | None]) -> dict[str, Any]:
    """`values` with the keys of older releases renamed (`Config.renamed`); dropped where None."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in renamed:
            new_name = renamed[key]
            if new_name is None:
                continue
            key = new_name
        out[key] = value
    return out


def nested_dataclass(cls: type[D], values: dict[str, Any]) -> D:
    """An instance of dataclass `cls` from plain data: a dict for a field whose default is a
    dataclass (default_factory) builds that dataclass, JSON lists become tuples, and an unknown key
    is an error naming the known ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        factory = fields[key].default_factory
        if isinstance(value, dict) and isinstance(factory, type) and dataclasses.is_dataclass(factory):
            kwargs[key] = nested_dataclass(factory, value)
        else:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Presets


def _preset_file(algo: str) -> dict[str, Any]:
    try:
        text = resources.files("bellmax.presets").joinpath(f"{algo}.json").read_text()
    except FileNotFoundError:
        return {}
    presets: dict[str, Any] = json.loads(text)
    return presets


def preset_names(algo: str) -> list[str]:
    return sorted(_preset_file(algo))


def find_preset(algo: str, env: str | None, name: str | None) -> tuple[str, dict[str, Any]] | None:
    """The preset called `name`, or else the one tuned for `env`, or None.

    Returns (name, entry) where entry has "env", "source" and "values". A `name` ending in .json is
    a preset file (one such entry, as `bellmax sweep` writes its best setting).
    """
    if name is not None and name.endswith(".json"):
        return name, read_preset_file(Path(name))
    presets = _preset_file(algo)
    if name is not None:
        if name not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise BellmaxError(f"no preset {name!r} for {algo}; known presets: {known}")
        return name, presets[name]
    for key, entry in presets.items():
        if entry.get("env") == env:
            return key, entry
    return None


def read_preset_file(path: Path) -> dict[str, Any]:
    """One preset entry {"env", "source", "values"} from a JSON file."""
    if not path.is_file():
        raise BellmaxError(f"preset file {path} does not exist")
    try:
        entry = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BellmaxError(f"preset file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not (isinstance(entry, dict) and isinstance(entry.get("values"), dict) and isinstance(entry.get("env"), str)):
        raise BellmaxError(f'preset file {path}: expected {{"env": ID, "source": TEXT, "values": {{FIELD: VALUE}}}}')
    return entry


def config_with_preset(config_class: type[C], env: str | None, preset: str | None) -> C:
    """Defaults of `config_class`, overlaid by the preset called `preset` or else the one tuned
    for `env` (default: the config's default env)."""
    if env is None and preset is None:
        env = config_class().env
    found = find_preset(config_class.algo, env, preset)
    values: dict[str, Any] = {}
    if found is not None:
        _, entry = found
        values.update(entry["values"])
        values["env"] = entry["env"]
    if env is not None:
        values["env"] = env
    return config_class.from_dict(values)
