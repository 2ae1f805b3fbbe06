"""Bomber as a PettingZoo `ParallelEnv`: every agent acts at once, each seeing its own window.

    from bellmax.envs.bomber import parallel_env
    env = parallel_env()                      # 11x11, four agents, free-for-all
    env = parallel_env(board="team")          # 2 against 2, partially observed
    observations, infos = env.reset(seed=0)
    while env.agents:
        actions = {agent: env.action_space(agent).sample() for agent in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)

An agent leaves `env.agents` once it has its final reward: in free-for-all when it dies or the game
ends; in team mode when its team's fate is decided (a dead agent whose teammate still plays waits,
seeing zeros, for the team's result). `state()` is the full state as planes (what no single agent
sees); `observation="dict"` gives each agent the original Pommerman dict layout instead of planes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from bellmax.envs.bomber.config import BOMB_LIFE, EXTRA_BOMB, FLAME_LIFE, KICK, RANGE, WOOD, BomberConfig
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.gym_env import board_config, observation_space
from bellmax.envs.bomber.observe import FOG, dict_observation, observe
from bellmax.errors import ConfigError

STATE_CHANNELS = ("rigid", "wood", "bomb_life", "bomb_strength", "flames", "extra_bomb", "range", "kick",
                  "hidden_extra_bomb", "hidden_range", "hidden_kick")  # then per agent: position, ammo, blast, kick


class BomberParallelEnv(ParallelEnv):
    metadata = {"name": "bellmax_bomber_v0", "render_modes": ["ansi", "rgb_array"], "render_fps": 8,
                "is_parallelizable": True}

    def __init__(self, board: str = "ffa", observation: str = "planes", render_mode: str | None = None,
                 **config_changes: Any):
        if observation not in ("planes", "dict"):
            raise ConfigError(f"unknown observation {observation!r}: use 'planes' (for a CNN) or 'dict' (Pommerman's)")
        self.config: BomberConfig = board_config(board, **config_changes)
        self.observation_kind, self.render_mode = observation, render_mode
        self.possible_agents = [f"agent_{i}" for i in range(self.config.num_agents)]
        self.agents: list[str] = []
        self.engine = BomberEngine(self.config, 1)
        self._observation_space = (observation_space(self.config) if observation == "planes"
                                   else dict_space(self.config))
        self._action_space = gym.spaces.Discrete(6)
        size, agents = self.config.size, self.config.num_agents
        self.state_space = gym.spaces.Box(0.0, 1.0, (len(STATE_CHANNELS) + 4 * agents, size, size), np.float32)

    def observation_space(self, agent: str) -> gym.Space:
        return self._observation_space

    def action_space(self, agent: str) -> gym.Space:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None:
            self.engine.rng = np.random.default_rng(seed)
            self.engine.spare_boards = self.engine.spare_boards[:0]
            self.engine.spare_items = self.engine.spare_items[:0]
        self.engine.reset(np.array([0]))
        self.agents = list(self.possible_agents)
        return self.observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        engine = self.engine
        joint = np.zeros((1, self.config.num_agents), np.int64)
        for agent, action in actions.items():
            joint[0, self.possible_agents.index(agent)] = int(action)
        rewards = engine.step(joint)[0]
        acting = list(self.agents)
        terminations = {agent: bool(engine.done[0, i]) for i, agent in enumerate(self.possible_agents)
                        if agent in acting}
        observations = self.observations(acting)
        result: tuple[dict, dict, dict, dict, dict] = ({agent: observations[agent] for agent in acting},
                  {agent: float(rewards[self.possible_agents.index(agent)]) for agent in acting},
                  terminations, {agent: False for agent in acting}, {agent: {} for agent in acting})
        self.agents = [agent for agent in acting if not terminations[agent]]
        if engine.over[0]:
            self.agents = []
        return result

    def observations(self, agents: list[str] | None = None) -> dict[str, Any]:
        agents = self.agents if agents is None else agents
        indices = np.array([self.possible_agents.index(agent) for agent in agents], np.int64)
        if self.observation_kind == "dict":
            return {agent: dict_space_values(dict_observation(self.engine, 0, int(i)), self.config)
                    for agent, i in zip(agents, indices)}
        planes = observe(self.engine, np.zeros(len(indices), np.int64), indices)
        return dict(zip(agents, planes))

    def state(self) -> np.ndarray:
        """The full state as planes (C, size, size): the board, bombs, flames, every power-up (hidden
        ones too), and each agent's position, ammo, blast strength and kick flag."""
        engine, size = self.engine, self.config.size
        board, items = engine.board[0], engine.items[0]
        has_bomb = engine.bomb_owner[0] >= 0
        planes = [board == 1, board == WOOD, np.where(has_bomb, engine.bomb_life[0] / BOMB_LIFE, 0),
                  np.where(has_bomb, np.minimum(engine.bomb_strength[0] / size, 1.0), 0),
                  engine.flames[0] / FLAME_LIFE]
        for kind in (EXTRA_BOMB, RANGE, KICK):
            planes.append((items == kind) & (board != WOOD))
        for kind in (EXTRA_BOMB, RANGE, KICK):
            planes.append((items == kind) & (board == WOOD))
        for agent in range(self.config.num_agents):
            here = np.zeros(size * size)
            if engine.alive[0, agent]:
                here[engine.position[0, agent]] = 1.0
            planes += [here, np.full(size * size, min(engine.ammo[0, agent] / size, 1.0)),
                       np.full(size * size, min(engine.blast[0, agent] / size, 1.0)),
                       np.full(size * size, float(engine.can_kick[0, agent]))]
        return np.stack(planes).reshape(-1, size, size).astype(np.float32)

    def render(self) -> Any:
        from bellmax.envs.bomber import render

        if self.render_mode == "ansi":
            return render.ansi(self.engine.state(0), self.config)
        if self.render_mode == "rgb_array":
            return render.rgb_array(self.engine.state(0), self.config)
        return None

    def close(self) -> None:
        pass


def dict_space(config: BomberConfig) -> gym.spaces.Dict:
    """The space of the Pommerman dict layout (teammates, enemies and alive as flags per agent)."""
    size, agents = config.size, config.num_agents
    grid = (size, size)
    return gym.spaces.Dict({
        "board": gym.spaces.Box(0, 10 + agents - 1, grid, np.int64),
        "bomb_life": gym.spaces.Box(0, BOMB_LIFE, grid, np.int64),
        "bomb_blast_strength": gym.spaces.Box(0, 255, grid, np.int64),
        "position": gym.spaces.Box(0, size - 1, (2,), np.int64),
        "ammo": gym.spaces.Box(0, 255, (), np.int64),
        "blast_strength": gym.spaces.Box(0, 255, (), np.int64),
        "can_kick": gym.spaces.Discrete(2),
        "teammates": gym.spaces.MultiBinary(agents),
        "enemies": gym.spaces.MultiBinary(agents),
        "alive": gym.spaces.MultiBinary(agents),
        "step_count": gym.spaces.Box(0, config.max_steps, (), np.int64),
    })


def dict_space_values(observation: dict[str, Any], config: BomberConfig) -> dict[str, Any]:
    """`dict_observation` in the types of `dict_space` (agent lists as flags per agent)."""
    def flags(codes: list[int]) -> np.ndarray:
        out = np.zeros(config.num_agents, np.int8)
        out[[code - 10 for code in codes]] = 1
        return out

    return {
        "board": observation["board"].astype(np.int64),
        "bomb_life": observation["bomb_life"].astype(np.int64),
        "bomb_blast_strength": observation["bomb_blast_strength"].astype(np.int64),
        "position": np.array(observation["position"], np.int64),
        "ammo": np.array(observation["ammo"], np.int64),
        "blast_strength": np.array(observation["blast_strength"], np.int64),
        "can_kick": int(observation["can_kick"]),
        "teammates": flags(observation["teammates"]),
        "enemies": flags(observation["enemies"]),
        "alive": flags(observation["alive"]),
        "step_count": np.array(observation["step_count"], np.int64),
    }


def parallel_env(**kwargs: Any) -> BomberParallelEnv:
    """The PettingZoo ParallelEnv (by default the 11x11 four-agent free-for-all); see BomberParallelEnv."""
    return BomberParallelEnv(**kwargs)


__all__ = ["FOG", "BomberParallelEnv", "parallel_env"]
