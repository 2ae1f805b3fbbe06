"""make_env / make_vec_env: one place that turns an environment id into Gymnasium envs.

Vector envs use Gymnasium's native vectorized implementation where one exists (CartPole-v1
steps all copies in one NumPy call) and `SyncVectorEnv` otherwise. Both use Gymnasium 1.x's
default NEXT_STEP autoreset: the step after an episode ends returns the reset observation with
reward 0 and ignores the action; `core.rollout` marks that step as not a real transition.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import pickle
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

import bellmax.envs  # noqa: F401  (registers bellmax/GridWorld-v0)
from bellmax.errors import BellmaxError, ConfigError


def register_atari() -> bool:
    """Register ale-py's ids (ALE/Pong-v5, PongNoFrameskip-v4, ...) if ale-py is installed."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def is_atari(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point
    return isinstance(entry, str) and entry.startswith("ale_py")


def check_env_id(env_id: str) -> None:
    """Raise a BellmaxError naming close matches when `env_id` is not a registered Gymnasium id."""
    if env_id in gym.registry:
        return
    if ("ALE/" in env_id or "NoFrameskip" in env_id) and not register_atari():
        raise BellmaxError(f"{env_id} needs ale-py: pip install -c constraints.txt -e '.[atari]'")
    if env_id in gym.registry:
        return
    candidates = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, candidates, n=3, cutoff=0.5)
    if not close:  # e.g. "cartpole" vs "CartPole-v1": compare case-insensitively without version
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(env_id.lower(), lowered, n=3, cutoff=0.5)]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `bellmax envs` lists the known ids."
    raise BellmaxError(f"unknown environment id {env_id!r}{hint}")


# what to install for the modules Gymnasium's optional environments import
INSTALL_HINTS = {"jax": "pip install 'gymnasium[jax]'", "shimmy": "pip install 'shimmy[gym-v26]'",
                 "gym": "pip install 'shimmy[gym-v26]'", "mujoco": "pip install 'gymnasium[mujoco]'",
                 "Box2D": "pip install 'gymnasium[box2d]'", "pygame": "pip install 'gymnasium[classic-control]'"}


@contextlib.contextmanager
def needs_installed(env_id: str) -> Iterator[None]:
    """Turn an environment's missing dependency (an ImportError while it is made) into one line
    naming the package and how to install it."""
    try:
        yield
    except ImportError as exc:  # gymnasium's DependencyNotInstalled is one too
        module = (exc.name or "").split(".")[0]
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else f"no module {module}"
        hint = f": {INSTALL_HINTS[module]}" if module in INSTALL_HINTS else ""
        raise BellmaxError(f"{env_id} needs a package that is not installed ({detail}){hint}") from None


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """One Gymnasium environment, with a clear error for an unknown id or a missing dependency."""
    check_env_id(env_id)
    with needs_installed(env_id):
        return gym.make(env_id, render_mode=render_mode, **kwargs)


def _make_single(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    # A module-level function (not a closure) so SyncVectorEnv stays picklable for checkpoints.
    return gym.make(env_id, **kwargs)


def make_vec_env(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` stepping as one batch, reset with seeds seed..seed+num_envs-1
    when `seed` is given (otherwise the caller resets it before the first step)."""
    check_env_id(env_id)
    if num_envs < 1:
        raise BellmaxError(f"num_envs={num_envs} must be at least 1")
    spec = gym.spec(env_id)
    with needs_installed(env_id):
        if is_atari(env_id):
            env = make_atari_vec_env(env_id, num_envs, **kwargs)
        elif spec.vector_entry_point is not None and not kwargs:
            env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        else:
            env = gym.vector.SyncVectorEnv(
                [functools.partial(_make_single, env_id, dict(kwargs)) for _ in range(num_envs)]
            )
    if seed is not None:
        env.reset(seed=seed)
    return env


def make_worker_env(env_id: str, num_envs: int, num_workers: int) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` stepped by `num_workers` Ray actors (the `ray` extra), for
    environments whose copies are seeded and stepped independently: those made one by one, and
    Atari's (ale-py's vector env runs one emulator per copy, seeded seed + index). Gymnasium's
    native CartPole and bellmax's arena vector envs draw from one generator for all copies and
    stay in one process."""
    check_env_id(env_id)
    spec = gym.spec(env_id)
    if not is_atari(env_id) and spec.vector_entry_point is not None:
        raise BellmaxError(f"--num-workers: {env_id} steps as one native vector env whose copies share one random "
                           "generator, which cannot be split between workers; train it without --num-workers")
    from bellmax.distributed.rollouts import RayVectorEnv

    return RayVectorEnv(env_id, num_envs, num_workers)


def _given(env: gym.Env) -> gym.Env:
    # SyncVectorEnv makes its envs by calling functions; this one hands over an env that exists
    # already (a module-level function in a partial, so the vector env still pickles for checkpoints)
    return env


def as_vector_env(env: gym.Env | gym.vector.VectorEnv, env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """An environment object a user passes in, as the vector env of `num_envs` copies training
    steps: a VectorEnv of that size as it is, or one gym.Env (num_envs 1) in a SyncVectorEnv. It
    must be the registered id `env_id`, which evaluation and checkpoints make more copies of."""
    if isinstance(env, gym.vector.VectorEnv):
        copies = env.num_envs
    elif isinstance(env, gym.Env):
        copies = 1
    else:
        raise ConfigError(f"env={env!r} is neither a gymnasium.Env nor a gymnasium.vector.VectorEnv")
    if copies != num_envs:
        raise ConfigError(f"invalid num_envs={num_envs}: the environment passed has {copies} cop"
                          f"{'y' if copies == 1 else 'ies'}; set num_envs={copies} (set --num-envs)")
    spec = env.spec
    if spec is None and isinstance(env, gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv):  # built from functions
        spec = env.get_attr("spec")[0]
    spec_id = getattr(spec, "id", None)
    if spec_id is None:
        raise ConfigError("the environment passed has no registered id: register it (gymnasium.register) and "
                          "set env to that id, so that evaluation and checkpoints can make copies of it")
    if spec_id != env_id:
        raise ConfigError(f"invalid env={env_id!r}: the environment passed is {spec_id!r}; set env={spec_id!r} "
                          "(evaluation makes its copies from that id)")
    if isinstance(env, gym.vector.VectorEnv):
        return env
    return gym.vector.SyncVectorEnv([functools.partial(_given, env)])


def make_atari_vec_env(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """Atari through ale-py's AtariVectorEnv, which does the standard preprocessing in C++: no-op
    starts (up to 30), frame skip 4 with max-pooling of the last two frames, fire on reset,
    84x84 grayscale, a stack of 4 frames. Rewards stay raw and episodes are whole games here:
    reward clipping and life-loss episode ends belong to learning (`clip_reward`,
    `episodic_life` in the Config), so reported returns are game scores."""
    game = env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "")
    game = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(game))
    options = {"reward_clipping": False, "episodic_life": False, "repeat_action_probability": 0.0, **kwargs}
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(game=game, num_envs=num_envs, **options)


def env_state(env: gym.vector.VectorEnv) -> dict[str, Any] | None:
    """Everything needed to continue `env` exactly (physics and RNG), or None if it cannot be saved.

    Most envs pickle completely. MuJoCo envs pickle only their constructor arguments (EzPickle),
    so their full physics state and their RNG are saved next to the pickle and put back on restore.
    """
    try:
        pickled = pickle.dumps(env)
    except Exception:  # an env holding unpicklable handles (the ALE emulator, a renderer)
        return None
    return {"pickle": pickled, "mujoco": [_mujoco_state(sub) for sub in getattr(env, "envs", [])]}


def restore_env(state: dict[str, Any]) -> gym.vector.VectorEnv:
    env = pickle.loads(state["pickle"])
    for sub, saved in zip(getattr(env, "envs", []), state["mujoco"]):
        if saved is not None:
            import mujoco

            unwrapped = sub.unwrapped
            mujoco.mj_setState(unwrapped.model, unwrapped.data, saved["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
            unwrapped.np_random.bit_generator.state = saved["rng"]
    return env


def _mujoco_state(sub_env: gym.Env) -> dict[str, Any] | None:
    unwrapped = sub_env.unwrapped
    model = getattr(unwrapped, "model", None)
    if model is None or not type(model).__module__.startswith("mujoco") or not hasattr(unwrapped, "data"):
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, unwrapped.data, physics, spec)
    return {"physics": physics, "rng": unwrapped.np_random.bit_generator.state}
