"""Typed configuration: the shared `Config` fields, validation with clear errors, and presets.

Every algorithm's Config subclasses `Config`, so the shared fields keep one name everywhere
(`seed`, `total_steps`, `num_envs`, `learning_rate`, `gamma`, `gae_lambda`, `checkpoint_every`;
`batch_size`, the minibatch size, is declared by the algorithms that take minibatches) and the
CLI flags are their kebab-case (`--learning-rate`). Validation runs before any work: a bad value
raises `ConfigError` naming the field, the allowed range and the flag.

Presets are plain JSON under `bellmax/presets/`, one file per algorithm, each entry with the env
it was tuned for and its provenance (paper, rl-zoo3, or our own tuning and the benchmark behind it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

from bellmax.errors import BellmaxError, ConfigError

C = TypeVar("C", bound="Config")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require(ok: bool, name: str, value: Any, allowed: str) -> None:
    """Raise ConfigError unless `ok`: '<name>=<value> is invalid: must be <allowed> (set --<flag>)'."""
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: must be {allowed} (set {flag(name)})")


@dataclass
class Config:
    """Fields every algorithm shares."""

    env: str = "CartPole-v1"
    """Gymnasium environment id (e.g. CartPole-v1, bellmax/GridWorld-v0)."""
    seed: int = 0
    """Seed for Python, NumPy, torch and the environments; same seed, same numbers."""
    total_steps: int = 100_000
    """Environment steps to train for, summed over all vectorized envs."""
    num_envs: int = 8
    """Environments stepped together as one batch."""
    learning_rate: float = 3e-4
    """Adam step size."""
    gamma: float = 0.99
    """Discount factor in R = sum_t gamma^t r_t."""
    gae_lambda: float = 0.95
    """lambda of GAE(gamma, lambda): 0 gives the TD residual, 1 the Monte Carlo advantage."""
    checkpoint_every: int = 25_000
    """Write a checkpoint every this many environment steps (0: only at the end of training)."""
    eval_episodes: int = 10
    """Episodes of deterministic evaluation at the end of training."""
    torch_threads: int = 1
    """Threads torch may use; small MLPs run fastest on one."""
    device: str = "auto"
    """Where the networks run: auto (a CUDA GPU for image observations when one is present, else the
    CPU: small MLPs wait on the environments, not on arithmetic), cpu, cuda, cuda:N or mps."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the policy and value MLPs."""
    normalize_obs: bool = False
    """Normalize observations by running mean and std (statistics are saved in checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (reported returns stay raw)."""
    clip_reward: bool = False
    """Learn from sign(r) (Atari convention); reported returns stay raw game scores."""
    episodic_life: bool = False
    """Atari: treat a lost life as the end of the episode for learning (no bootstrap across it)."""
    eval_every: int = 0
    """Evaluate the deterministic policy every this many steps (0: only at the end)."""
    stop_at_return: float | None = None
    """Stop early once a periodic evaluation's mean return reaches this value."""

    def validate(self) -> None:
        """Check every field; raise ConfigError naming the first bad one. Subclasses extend this."""
        require(isinstance(self.env, str) and bool(self.env), "env", self.env, "a Gymnasium id")
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.total_steps > 0, "total_steps", self.total_steps, "a positive integer")
        require(self.num_envs >= 1, "num_envs", self.num_envs, "at least 1")
        require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "learning_rate", self.learning_rate, "a positive number (e.g. 3e-4)",
        )
        require(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "in (0, 1]")
        require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", self.gae_lambda, "in [0, 1]")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.eval_episodes >= 0, "eval_episodes", self.eval_episodes, ">= 0")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(isinstance(self.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device) is not None,
                "device", self.device, "auto, cpu, cuda, cuda:N or mps")
        require(self.eval_every >= 0, "eval_every", self.eval_every, ">= 0")
        require(self.stop_at_return is None or (self.eval_every > 0 and self.eval_episodes > 0),
                "stop_at_return", self.stop_at_return, "used with --eval-every N > 0 and --eval-episodes K > 0")
        require(
            len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
            "hidden_sizes", self.hidden_sizes, "one or more positive layer widths",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict (config.json or a preset); unknown keys are an error, not ignored."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {', '.join(names)}")
        kwargs = dict(values)
        for key, value in kwargs.items():
            if isinstance(value, list):  # JSON has no tuples
                kwargs[key] = tuple(value)
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


@dataclass
class OnPolicyConfig(Config):
    """Fields the policy-gradient family (VPG, A2C, TRPO, PPO) shares."""

    n_steps: int = 256
    """Vector steps per rollout; one batch holds n_steps x num_envs transitions."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Nonlinearity of the policy and value MLPs."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""

    def validate(self) -> None:
        super().validate()
        require(self.n_steps >= 1, "n_steps", self.n_steps, "at least 1")
        require(-20 <= self.log_std_init <= 2, "log_std_init", self.log_std_init, "in [-20, 2]")

    def rollout_size(self) -> int:
        return self.n_steps * self.num_envs


# ---------------------------------------------------------------------------------------------
# Presets


def _preset_file(algo: str) -> dict[str, Any]:
    try:
        text = resources.files("bellmax.presets").joinpath(f"{algo}.json").read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text)


def preset_names(algo: str) -> list[str]:
    return sorted(_preset_file(algo))


def find_preset(algo: str, env: str | None, name: str | None) -> tuple[str, dict[str, Any]] | None:
    """The preset called `name`, or else the one tuned for `env`, or None.

    Returns (name, entry) where entry has "env", "source" and "values".
    """
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


def config_with_preset(config_class: type[C], algo: str, env: str | None, preset: str | None) -> C:
    """Defaults of `config_class`, overlaid by the preset called `preset` or else the one tuned
    for `env` (default: the config's default env)."""
    if env is None and preset is None:
        env = config_class().env
    found = find_preset(algo, env, preset)
    values: dict[str, Any] = {}
    if found is not None:
        _, entry = found
        values.update(entry["values"])
        values["env"] = entry["env"]
    if env is not None:
        values["env"] = env
    return config_class.from_dict(values)
