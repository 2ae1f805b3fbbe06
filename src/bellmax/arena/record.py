"""A game of a trained arena agent as an animated GIF, to watch what it learned."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def record_game(agent: Any, path: Path, seed: int = 0, cell: int = 32) -> Path:
    """Play one game of `agent` (an Algorithm trained on an arena env) in its environment, with its
    deterministic policy as in evaluation, and save the frames, the learner's view shown, as a GIF."""
    import gymnasium as gym
    import numpy as np

    import bellmax.envs  # noqa: F401  (registers the arena ids)
    from bellmax.envs.bomber.gym_env import BomberEnv
    from bellmax.envs.bomber.render import rgb_array, save_gif

    env = gym.make(agent.config.env).unwrapped
    assert isinstance(env, BomberEnv), agent.config.env
    obs, info = env.reset(seed=seed)
    config = env.config
    view = (info["seat"], config.view_radius) if config.partial else None
    frames = [rgb_array(env.matches.engine.state(0), config, cell=cell, view=view)]
    done = False
    while not done:
        obs, _, done, _, _ = env.step(int(np.asarray(agent.predict(obs))))
        frames.append(rgb_array(env.matches.engine.state(0), config, cell=cell, view=view))
    frames += [frames[-1]] * 6  # linger on the end
    return save_gif(frames, path)
