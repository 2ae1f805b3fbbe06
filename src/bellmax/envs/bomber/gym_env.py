"""Bomber as Gymnasium environments: a learner against built-in opponents (and, when training
with self-play, against snapshots of its own policy).

    bellmax/Bomber-v0       11x11, four agents, free-for-all: the learner against three opponents
    bellmax/BomberDuel-v0   8x8, two agents, partially observed: the learner against one

`BomberEnv` is one game (`gym.make`); `BomberVectorEnv` is many games in one batched engine, the
native vector form (`gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")`), which
`make_vec_env` and every on-policy algorithm use as they use CartPole's. Each vector slot is one
learning agent: `learners` seats per game play from outside (one sample each), the others are
opponents. A slot's episode ends when its game is over for the learners (free-for-all: the learner
died or won; team mode: its team's fate is decided); a learner that dies earlier in a game with
several learners sees zeros, with reward 0, until then. The game's step limit is a rule of the
game (everyone still alive loses), so it ends the episode as `terminated`, not `truncated`.

With `action_filter` on (the default), a learner's action that would walk into a blast it can see
coming, or lay a bomb it could not get away from, is replaced by one drawn at random among the safe
ones (`opponents.filtered_actions`, the filtered player's rule), as the shields of Pommerman's
strongest learning entries did: the learner then spends its games learning to win, not learning
not to die by its own bombs. `action_filter=False` plays the raw game.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from bellmax.envs.bomber.config import BomberConfig
from bellmax.envs.bomber.danger import observe_pairs
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.observe import observe, observe_shape
from bellmax.envs.bomber.opponents import OPPONENTS, Opponent, filtered_actions, make_opponent, random_among
from bellmax.errors import ConfigError

BOARDS = {"duel": BomberConfig.duel, "ffa": BomberConfig.ffa, "team": BomberConfig.team}
SNAPSHOT_EVERY = 50_000  # learner steps between two snapshots of its policy in the self-play pool
POOL_SIZE = 8  # snapshots kept (the newest)

OpponentSpec = str | Mapping[str, float]


def filter_actions(engine: BomberEngine, games: np.ndarray, agents: np.ndarray, actions: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """`actions` of `agents` in `games`, each unsafe one (see `filtered_actions`) replaced by a safe
    one drawn from `rng`."""
    if len(games) == 0:
        return actions
    allowed = filtered_actions(observe_pairs(engine, games, agents))
    safe = allowed[np.arange(len(games)), actions]
    return np.where(safe, actions, random_among(allowed, rng))


def board_config(board: str, **changes: Any) -> BomberConfig:
    """The BomberConfig of a named board ("duel", "ffa" or "team") with `changes`."""
    if board not in BOARDS:
        raise ConfigError(f"unknown Bomber board {board!r}: use one of {', '.join(BOARDS)}")
    config = BOARDS[board](**changes)
    config.validate()
    return config


class PolicyOpponent:
    """A policy network (`act(obs, deterministic)`) playing seats: a snapshot in self-play, a
    trained run in the arena. It samples its actions, as in training, unless `deterministic`, and
    they pass through the action filter when `action_filter` (as a learner's do in training)."""

    def __init__(self, name: str, module: Any, deterministic: bool = False, action_filter: bool = True):
        self.name, self.module, self.deterministic = name, module, deterministic
        self.action_filter = action_filter

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        import torch

        obs = torch.as_tensor(observe(engine, games, agents))
        with torch.no_grad():
            actions = self.module.act(obs, deterministic=self.deterministic)
        actions = np.asarray(actions.cpu().numpy(), dtype=np.int64)
        if self.action_filter:
            actions = filter_actions(engine, games, agents, actions, rng)
        return actions


class Matches:
    """`num_games` games in one engine: in each, `learners` seats are played from outside and the
    others by opponents drawn, game by game, from `opponents` (a built-in name, or weights over
    built-in names), or by snapshots of a learning policy for a share `self_play` of them. With
    `action_filter`, the learners' unsafe actions (and the snapshots') are replaced by safe ones."""

    def __init__(self, config: BomberConfig, num_games: int, learners: int, opponents: OpponentSpec, seed: int | None,
                 action_filter: bool = True):
        config.validate()
        if not 1 <= learners <= config.num_agents:
            raise ConfigError(f"invalid learners={learners}: between 1 and the {config.num_agents} agents of a game")
        self.config, self.num_games, self.learners = config, num_games, learners
        self.action_filter = action_filter
        self.filtered = 0  # learner actions replaced by the filter so far
        weights = {opponents: 1.0} if isinstance(opponents, str) else dict(opponents)
        for name in weights:
            if name not in OPPONENTS:
                raise ConfigError(f"unknown Bomber opponent {name!r}: use one of {', '.join(OPPONENTS)}")
        self.builtin_names = list(weights)
        self.builtin_weights = np.array([weights[n] for n in self.builtin_names], float)
        self.builtin_weights /= self.builtin_weights.sum()
        self.players: list[Opponent] = [make_opponent(name) for name in self.builtin_names]
        self.self_play: float = 0.0
        self.learner_policy: Any = None  # the live policy of the algorithm training in this env
        self.pool: list[PolicyOpponent] = []
        self.learner_steps, self.next_snapshot = 0, 0
        self.rng = np.random.default_rng(seed)
        self.engine = BomberEngine(config, num_games, seed=int(self.rng.integers(2**63)))
        agents = config.num_agents
        self.seats = np.zeros((num_games, learners), np.int64)  # the learning seats of each game
        self.player = np.full((num_games, agents), -1, np.int64)  # who plays each seat: index into players, -1: learner
        self.start(np.arange(num_games))

    # -- self-play ----------------------------------------------------------------------------
    def use_self_play(self, policy: Any, share: float) -> None:
        """Let snapshots of `policy` (a module with `act(obs, deterministic)`) play a `share` of the
        opponent seats, from games started from now on; the first snapshot is taken at once."""
        self.learner_policy, self.self_play = policy, share
        if not self.pool:
            self.snapshot()

    def snapshot(self) -> None:
        module = copy.deepcopy(self.learner_policy).cpu().eval()
        self.pool.append(PolicyOpponent(f"snapshot@{self.learner_steps}", module, action_filter=self.action_filter))
        del self.pool[:-POOL_SIZE]
        self.next_snapshot = self.learner_steps + SNAPSHOT_EVERY

    def reseed(self, seed: int) -> None:
        """Draw everything from `seed` from now on: boards, seats, opponents and their moves."""
        self.rng = np.random.default_rng(seed)
        self.engine.rng = np.random.default_rng(int(self.rng.integers(2**63)))
        self.engine.spare_boards = self.engine.spare_boards[:0]
        self.engine.spare_items = self.engine.spare_items[:0]

    def learners_won(self, games: np.ndarray) -> np.ndarray:
        """Whether a learner of each of `games` (over) is among the winners."""
        return np.array([bool(set(self.engine.winners(int(g))) & set(self.seats[g].tolist())) for g in games], bool)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state["learner_policy"] = None  # the live policy belongs to the algorithm, which attaches it again
        return state

    # -- games --------------------------------------------------------------------------------
    def start(self, games: np.ndarray) -> None:
        """Start new games: fresh boards, learning seats drawn at random, opponents drawn for the rest."""
        if len(games) == 0:
            return
        self.engine.reset(games)
        agents = self.config.num_agents
        order = np.argsort(self.rng.random((len(games), agents)), axis=1)
        self.seats[games] = order[:, : self.learners]
        kinds = self.rng.choice(len(self.builtin_names), size=(len(games), agents), p=self.builtin_weights)
        if self.self_play > 0 and self.pool:
            use_pool = self.rng.random((len(games), agents)) < self.self_play
            drawn = len(self.players) + self.rng.integers(len(self.pool), size=(len(games), agents))
            kinds = np.where(use_pool, drawn, kinds)
        np.put_along_axis(kinds, order[:, : self.learners], -1, axis=1)
        self.player[games] = kinds

    def all_players(self) -> list[Opponent]:
        return [*self.players, *self.pool]

    def step(self, learner_actions: np.ndarray, sitting_out: np.ndarray | None = None) -> np.ndarray:
        """One step of every game; learner_actions (num_games, learners). Games in `sitting_out`
        (just started, answering a NEXT_STEP autoreset) do not move. Returns the learners' rewards."""
        engine = self.engine
        actions = np.zeros((self.num_games, self.config.num_agents), np.int64)
        if self.action_filter:
            games = np.repeat(np.arange(self.num_games), self.learners)
            agents = self.seats.reshape(-1)
            wanted = np.asarray(learner_actions, np.int64).reshape(-1)
            live = np.flatnonzero(engine.alive[games, agents])
            chosen = wanted.copy()
            chosen[live] = filter_actions(engine, games[live], agents[live], wanted[live], self.rng)
            self.filtered += int((chosen != wanted).sum())
            learner_actions = chosen.reshape(self.num_games, self.learners)
        np.put_along_axis(actions, self.seats, learner_actions, axis=1)
        for index, player in enumerate(self.all_players()):
            games, agents = np.nonzero(self.player == index)
            live = engine.alive[games, agents]
            if live.any():
                actions[games[live], agents[live]] = player.act(engine, games[live], agents[live], self.rng)
        sitting_out = np.zeros(0, np.int64) if sitting_out is None else sitting_out
        saved = engine.copy_games(sitting_out)
        rewards = engine.step(actions)
        engine.paste_games(sitting_out, saved)
        rewards[sitting_out] = 0.0
        self.learner_steps += self.num_games * self.learners
        if self.learner_policy is not None and self.learner_steps >= self.next_snapshot:
            self.snapshot()
        return np.take_along_axis(rewards, self.seats, axis=1)

    def finished(self) -> np.ndarray:
        """(num_games,): games over for their learners (every learner has its final reward)."""
        learners_done = np.take_along_axis(self.engine.done, self.seats, axis=1).all(1)
        return learners_done | self.engine.over

    def observations(self) -> np.ndarray:
        """(num_games * learners, C, side, side): each learning slot's observation."""
        games = np.repeat(np.arange(self.num_games), self.learners)
        return observe(self.engine, games, self.seats.reshape(-1))


def render_first_game(matches: Matches, render_mode: str | None) -> Any:
    """The first game of `matches` as text (`ansi`) or an RGB frame (`rgb_array`); None otherwise."""
    from bellmax.envs.bomber import render

    state = matches.engine.state(0)
    if render_mode == "ansi":
        return render.ansi(state, matches.config)
    if render_mode == "rgb_array":
        return render.rgb_array(state, matches.config)
    return None


def observation_space(config: BomberConfig) -> gym.spaces.Box:
    return gym.spaces.Box(0.0, 1.0, observe_shape(config), np.float32)


class BomberVectorEnv(gym.vector.VectorEnv):
    """`num_envs` learning slots in num_envs / learners batched games (NEXT_STEP autoreset)."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8,
                "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, board: str = "duel", opponents: OpponentSpec = "rule", learners: int = 1,
                 render_mode: str | None = None, seed: int | None = None, action_filter: bool = True,
                 **config_changes: Any):
        if num_envs % learners:
            raise ConfigError(f"invalid num_envs={num_envs}: a multiple of learners={learners} (one slot per learner)")
        self.config = board_config(board, **config_changes)
        self.num_envs, self.learners, self.render_mode = num_envs, learners, render_mode
        self.board, self.opponents = board, opponents
        self.matches = Matches(self.config, num_envs // learners, learners, opponents, seed, action_filter)
        self.single_observation_space = observation_space(self.config)
        self.single_action_space = gym.spaces.Discrete(6)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.prev_done = np.zeros(num_envs // learners, bool)

    def use_self_play(self, policy: Any, share: float) -> None:
        self.matches.use_self_play(policy, share)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.matches.reseed(seed)
        self.matches.start(np.arange(self.matches.num_games))
        self.prev_done[:] = False
        return self.matches.observations(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        matches = self.matches
        restarting = np.flatnonzero(self.prev_done)
        matches.start(restarting)
        rewards = matches.step(np.asarray(actions).reshape(matches.num_games, self.learners), restarting)
        finished = matches.finished()
        finished[restarting] = False
        self.prev_done = finished
        terminated = np.repeat(finished, self.learners)
        won = np.zeros(matches.num_games, bool)
        won[finished] = matches.learners_won(np.flatnonzero(finished))
        info = {"learner_won": np.repeat(won, self.learners), "_learner_won": terminated}
        return (matches.observations(), rewards.reshape(-1).astype(np.float64), terminated,
                np.zeros(self.num_envs, bool), info)

    def render(self) -> Any:
        return render_first_game(self.matches, self.render_mode)


class BomberEnv(gym.Env):
    """One game of Bomber for one learner against built-in opponents (see the module docstring)."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, board: str = "duel", opponents: OpponentSpec = "rule", render_mode: str | None = None,
                 action_filter: bool = True, **config_changes: Any):
        self.config = board_config(board, **config_changes)
        self.board, self.opponents, self.render_mode = board, opponents, render_mode
        self.matches = Matches(self.config, 1, 1, opponents, None, action_filter)
        self.observation_space = observation_space(self.config)
        self.action_space = gym.spaces.Discrete(6)

    def use_self_play(self, policy: Any, share: float) -> None:
        self.matches.use_self_play(policy, share)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.matches.reseed(seed)
        self.matches.start(np.array([0]))
        return self.matches.observations()[0], {"seat": int(self.matches.seats[0, 0])}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = self.matches.step(np.array([[int(action)]]))
        done = bool(self.matches.finished()[0])
        info: dict[str, Any] = {"seat": int(self.matches.seats[0, 0])}
        if done:
            info["learner_won"] = bool(self.matches.learners_won(np.array([0]))[0])
        return self.matches.observations()[0], float(reward[0, 0]), done, False, info

    def render(self) -> Any:
        return render_first_game(self.matches, self.render_mode)

