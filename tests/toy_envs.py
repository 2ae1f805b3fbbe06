"""Tiny environments the tests build on (registered under the bellmax-test/ namespace)."""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Reward 1 per step; terminates after 3 steps when `terminate`, else runs until a time limit."""

    observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate: bool):
        self.terminate = terminate

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, self.terminate and self.t >= 3, False, {}


if "bellmax-test/Corridor-v0" not in gym.registry:
    gym.register("bellmax-test/Corridor-v0", entry_point=Corridor, max_episode_steps=3)
