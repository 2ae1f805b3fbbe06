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


class Frames(gym.Env):
    """1x36x36 uint8 frames (the smallest the Nature CNN takes): the left or right half is lit, and
    the action naming the lit half pays 1. Episodes last 4 steps."""

    observation_space = gym.spaces.Box(0, 255, (1, 36, 36), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def _frame(self):
        self.lit = int(self.np_random.integers(2))
        frame = np.zeros((1, 36, 36), np.uint8)
        frame[:, :, 18 * self.lit: 18 * (self.lit + 1)] = 255
        return frame

    def step(self, action):
        reward = float(int(action) == self.lit)
        self.t += 1
        return self._frame(), reward, self.t >= 4, False, {}


if "bellmax-test/CnnFrames-v0" not in gym.registry:
    gym.register("bellmax-test/CnnFrames-v0", entry_point=Frames)
