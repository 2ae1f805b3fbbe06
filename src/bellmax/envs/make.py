"""make_env / make_vec_env: one place that turns an environment id into Gymnasium envs.

Vector envs use Gymnasium's native vectorized implementation where one exists (CartPole-v1
steps all copies in one NumPy call) and `SyncVectorEnv` otherwise. Both use Gymnasium 1.x's
default NEXT_STEP autoreset: the step after an episode ends returns the reset observation with
reward 0 and ignores the action; `core.rollout` marks that step as not a real transition.
"""

from __future__ import annotations

import difflib
import functools
import pickle
from typing import Any

import gymnasium as gym

import bellmax.envs  # noqa: F401  (registers bellmax/GridWorld-v0)
from bellmax.errors import BellmaxError


def check_env_id(env_id: str) -> None:
    """Raise a BellmaxError naming close matches when `env_id` is not a registered Gymnasium id."""
    if env_id in gym.registry:
        return
    candidates = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, candidates, n=3, cutoff=0.5)
    if not close:  # e.g. "cartpole" vs "CartPole-v1": compare case-insensitively without version
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(env_id.lower(), lowered, n=3, cutoff=0.5)]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `bellmax envs` lists the known ids."
    raise BellmaxError(f"unknown environment id {env_id!r}{hint}")


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """One Gymnasium environment, with a clear error for an unknown id."""
    check_env_id(env_id)
    return gym.make(env_id, render_mode=render_mode, **kwargs)


def _make_single(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    # A module-level function (not a closure) so SyncVectorEnv stays picklable for checkpoints.
    return gym.make(env_id, **kwargs)


def make_vec_env(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` stepping as one batch, reset with seeds seed..seed+num_envs-1.

    The returned env has been reset when `seed` is given; its first observation is available as
    `env.initial_obs`.
    """
    check_env_id(env_id)
    if num_envs < 1:
        raise BellmaxError(f"num_envs={num_envs} must be at least 1")
    spec = gym.spec(env_id)
    if spec.vector_entry_point is not None and not kwargs:
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    else:
        env = gym.vector.SyncVectorEnv(
            [functools.partial(_make_single, env_id, dict(kwargs)) for _ in range(num_envs)]
        )
    if seed is not None:
        obs, _ = env.reset(seed=seed)
        env.initial_obs = obs
    return env


def env_state(env: gym.vector.VectorEnv) -> bytes | None:
    """Everything needed to continue `env` exactly (physics and RNG), or None if it cannot be saved."""
    try:
        return pickle.dumps(env)
    except Exception:  # an env holding unpicklable handles (a renderer, a simulator context)
        return None


def restore_env(state: bytes) -> gym.vector.VectorEnv:
    return pickle.loads(state)
