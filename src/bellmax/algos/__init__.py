"""One readable file per algorithm, each with its Config dataclass.

    from bellmax.algos import VPG, VPGConfig
    VPG(VPGConfig(env="CartPole-v1")).learn(50_000)
    agent = bellmax.algos.load("runs/vpg-CartPole-v1-s0-...")   # any checkpoint or run directory

Names resolve lazily (PEP 562), so `import bellmax.algos` stays cheap until an algorithm is used.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bellmax.errors import BellmaxError

if TYPE_CHECKING:
    from bellmax.core.algorithm import Algorithm

# algorithm name -> (module, class, config class)
ALGORITHMS: dict[str, tuple[str, str, str]] = {
    "vpg": ("bellmax.algos.vpg", "VPG", "VPGConfig"),
    "a2c": ("bellmax.algos.a2c", "A2C", "A2CConfig"),
    "ppo": ("bellmax.algos.ppo", "PPO", "PPOConfig"),
    "trpo": ("bellmax.algos.trpo", "TRPO", "TRPOConfig"),
    "dqn": ("bellmax.algos.dqn", "DQN", "DQNConfig"),
    "ddpg": ("bellmax.algos.ddpg", "DDPG", "DDPGConfig"),
    "td3": ("bellmax.algos.td3", "TD3", "TD3Config"),
    "sac": ("bellmax.algos.sac", "SAC", "SACConfig"),
}


def algorithm_key(name: str) -> str:
    """The registry key of `name` ("PPO" -> "ppo"); a clear error lists the known names."""
    key = name.lower()
    if key not in ALGORITHMS:
        close = difflib.get_close_matches(key, ALGORITHMS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise BellmaxError(f"unknown algorithm {name!r}{hint} (known: {', '.join(ALGORITHMS)})")
    return key


def get_algorithm(name: str) -> type[Algorithm]:
    """The Algorithm class for `name` (e.g. "vpg"); a clear error lists the known names."""
    module, cls, _ = ALGORITHMS[algorithm_key(name)]
    algorithm: type[Algorithm] = getattr(importlib.import_module(module), cls)
    return algorithm


def load(path: str | Path, mmap: bool = False, **changes: Any) -> Algorithm:
    """The agent in a checkpoint file or run directory, as the algorithm that wrote it, ready to
    continue (`learn`) or act (`predict`, `evaluate`). Only the fields a resumed run may change
    (`bellmax.config.RESUMABLE_FIELDS`: total_steps, checkpoint_every, eval_episodes,
    stop_at_return, device, torch_threads) can be passed; mmap=True maps a large replay buffer instead of reading it."""
    from bellmax.core.run import load_checkpoint

    state = load_checkpoint(Path(path), mmap=mmap)
    return get_algorithm(state["algo"]).from_state(state, **changes)


def __getattr__(attr: str) -> Any:
    for module, cls, config_cls in ALGORITHMS.values():
        if attr in (cls, config_cls):
            return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bellmax.algos' has no attribute {attr!r}")


__all__ = ["ALGORITHMS", "algorithm_key", "get_algorithm", "load"] + [n for v in ALGORITHMS.values() for n in v[1:]]
