"""What each agent sees of a game, for a whole batch of games at once.

State versus observation (the lecture's Pommerman slide): the engine's state is the whole board
with every bomb's timer and strength, every flame's life, the hidden power-ups and every agent's
ammo and blast strength (`BomberEngine.state`). An agent observes a window centred on itself:
with partial observation the (2 r + 1) x (2 r + 1) cells within view radius r (9 x 9 by default),
cells of the board outside it hidden; fully observed, a window of side 2 size - 1, which shows the
whole board from any cell. Power-ups under wood are never seen.

Two layouts:
- `planes`: float32 (CHANNELS, side, side) per agent for a CNN, egocentric (the agent at the
  centre), one channel per kind of object, timers and strengths as values scaled to [0, 1], cells
  off the board marked as rigid walls, the agent's own ammo, blast strength and kick flag (and the
  share of the step limit used) as constant planes, and `burns_in`: how soon each cell will burn,
  worked out from the bombs and flames the agent sees (their timers, blast lines and chain
  reactions; what a player reads off the board at a glance, and a small CNN hardly learns).
- `dict_observation`: the original Pommerman layout for rule-based code: a board of codes
  (0 passage, 1 rigid, 2 wood, 3 bomb, 4 flames, 5 fog, 6 extra bomb, 7 range, 8 kick, 10 + i
  agent i), bomb life and strength grids, position, ammo, blast strength, can_kick, teammates,
  enemies and alive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bellmax.envs.bomber.config import BOMB_LIFE, EXTRA_BOMB, FLAME_LIFE, KICK, RANGE, RIGID, WOOD, BomberConfig

CHANNELS = ("rigid", "wood", "bomb_life", "bomb_strength", "flames", "extra_bomb", "range", "kick", "teammates",
            "enemies", "own_ammo", "own_blast", "own_kick", "steps", "burns_in")
FOG = 5


def window_radius(config: BomberConfig) -> int:
    """Cells the observation window reaches from the agent in each direction."""
    return config.view_radius if config.partial else config.size - 1


def board_planes(engine: Any, games: np.ndarray) -> np.ndarray:
    """(len(games), 8, size, size): the agent-independent channels of the full board."""
    size, n = engine.size, len(games)
    board, items = engine.board[games], engine.items[games]
    has_bomb = engine.bomb_owner[games] >= 0
    visible_item = board != WOOD
    planes = np.stack([
        board == RIGID,
        board == WOOD,
        np.where(has_bomb, engine.bomb_life[games] / BOMB_LIFE, 0.0),
        np.where(has_bomb, np.minimum(engine.bomb_strength[games] / size, 1.0), 0.0),
        engine.flames[games] / FLAME_LIFE,
        visible_item & (items == EXTRA_BOMB),
        visible_item & (items == RANGE),
        visible_item & (items == KICK),
    ], axis=1).astype(np.float32)
    return planes.reshape(n, 8, size, size)


def observe(engine: Any, games: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """(P, CHANNELS, side, side) float32: the egocentric observation of agent agents[i] of game
    games[i], for P (game, agent) pairs; all zeros for a dead agent."""
    games, agents = np.asarray(games), np.asarray(agents)
    cfg, size, pairs = engine.config, engine.size, len(games)
    r = window_radius(cfg)
    side = 2 * r + 1
    unique_games, game_of_pair = np.unique(games, return_inverse=True)
    # the full board with a margin of r cells marked rigid, so that every window is a slice of it
    full = np.zeros((len(unique_games), 8, size + 2 * r, size + 2 * r), np.float32)
    full[:, 0] = 1.0
    full[:, :, r:r + size, r:r + size] = board_planes(engine, unique_games)
    windows = np.lib.stride_tricks.sliding_window_view(full, (side, side), axis=(2, 3))
    rows, cols = np.divmod(engine.position[games], size)  # (P, A): every agent of each pair's game
    row, col = rows[np.arange(pairs), agents], cols[np.arange(pairs), agents]
    out = np.zeros((pairs, len(CHANNELS), side, side), np.float32)
    out[:, :8] = windows[game_of_pair, :, row, col]
    pair_index, alive = np.arange(pairs), engine.alive[games]
    for other in range(engine.num_agents):  # teammates and enemies, where the window shows them
        d_row, d_col = rows[:, other] - row + r, cols[:, other] - col + r
        seen = alive[:, other] & (other != agents) & (d_row >= 0) & (d_row < side) & (d_col >= 0) & (d_col < side)
        channel = np.where(engine.sides[other] == engine.sides[agents], 8, 9)
        out[pair_index[seen], channel[seen], d_row[seen], d_col[seen]] = 1.0
    out[:, 10] = np.minimum(engine.ammo[games, agents] / size, 1.0)[:, None, None]
    out[:, 11] = np.minimum(engine.blast[games, agents] / size, 1.0)[:, None, None]
    out[:, 12] = engine.can_kick[games, agents][:, None, None]
    out[:, 13] = (engine.steps[games] / cfg.max_steps)[:, None, None]
    out[:, 14] = windows_of(burns_soon(engine, games, agents), row, col, r)
    out[~alive[pair_index, agents]] = 0.0
    return out


def burns_soon(engine: Any, games: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """(P, size, size): how soon each cell next burns, by the bombs and flames the agent sees (timers,
    blast lines and chain reactions worked out): 1 at the next step, down to 1/11 in 11 steps, 0 never."""
    from bellmax.envs.bomber.danger import burn_schedule, observe_pairs

    schedule = burn_schedule(observe_pairs(engine, games, agents)).astype(np.int64)
    first = schedule & -schedule  # the lowest set bit: the first step it burns
    step = np.log2(np.maximum(first, 1))
    return np.where(schedule > 0, (BOMB_LIFE + 2 - step) / (BOMB_LIFE + 1), 0.0).astype(np.float32)


def windows_of(grids: np.ndarray, row: np.ndarray, col: np.ndarray, r: int) -> np.ndarray:
    """(P, 2r + 1, 2r + 1): the window of each pair's own grid (P, size, size) centred on (row, col)."""
    padded = np.pad(grids, ((0, 0), (r, r), (r, r)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * r + 1, 2 * r + 1), axis=(1, 2))
    return windows[np.arange(len(grids)), row, col]


def planes(engine: Any, games: np.ndarray | None = None, agents: np.ndarray | None = None) -> np.ndarray:
    """(len(games), len(agents), CHANNELS, side, side): the observations of `agents` (default all)
    in `games` (default all)."""
    games = np.arange(engine.num_games) if games is None else np.asarray(games)
    agents = np.arange(engine.num_agents) if agents is None else np.asarray(agents)
    pair_games, pair_agents = np.repeat(games, len(agents)), np.tile(agents, len(games))
    return observe(engine, pair_games, pair_agents).reshape(len(games), len(agents), *observe_shape(engine.config))


def observe_shape(config: BomberConfig) -> tuple[int, int, int]:
    side = 2 * window_radius(config) + 1
    return len(CHANNELS), side, side


def dict_observation(engine: Any, game: int, agent: int) -> dict[str, Any]:
    """One agent's observation in the original Pommerman layout (for rule-based code)."""
    cfg, size = engine.config, engine.size
    state = engine.state(game)
    board = state["board"].astype(np.int64)
    items = state["items"]
    board = np.where((board != WOOD) & (items == EXTRA_BOMB), 6, board)
    board = np.where((board != WOOD) & (items == RANGE), 7, board)
    board = np.where((board != WOOD) & (items == KICK), 8, board)
    board = np.where(state["bomb_owner"] >= 0, 3, board)
    board = np.where(state["flames"] > 0, 4, board)
    for other in range(engine.num_agents):
        if state["alive"][other]:
            board[tuple(state["position"][other])] = 10 + other
    bomb_life = np.where(state["bomb_owner"] >= 0, state["bomb_life"], 0)
    bomb_strength = np.where(state["bomb_owner"] >= 0, state["bomb_strength"], 0)
    row, col = state["position"][agent]
    if cfg.partial:
        rr, cc = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        hidden = np.maximum(np.abs(rr - row), np.abs(cc - col)) > cfg.view_radius
        board = np.where(hidden, FOG, board)
        bomb_life = np.where(hidden, 0, bomb_life)
        bomb_strength = np.where(hidden, 0, bomb_strength)
    sides = engine.sides
    return {
        "board": board,
        "bomb_life": bomb_life,
        "bomb_blast_strength": bomb_strength,
        "position": (int(row), int(col)),
        "ammo": int(state["ammo"][agent]),
        "blast_strength": int(state["blast"][agent]),
        "can_kick": bool(state["can_kick"][agent]),
        "teammates": [10 + o for o in range(engine.num_agents) if o != agent and sides[o] == sides[agent]],
        "enemies": [10 + o for o in range(engine.num_agents) if sides[o] != sides[agent]],
        "alive": [10 + o for o in range(engine.num_agents) if state["alive"][o]],
        "step_count": int(state["steps"]),
    }
