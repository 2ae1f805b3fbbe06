"""The lecture's 4x3 gridworld, and any grid MDP drawn as a text map.

Cells are named "x,y" as in the lecture: x = 1..n_cols left to right, y = 1..n_rows bottom to
top. The default map (`LECTURE_LAYOUT`) is the lecture's::

    y=3   . . . +1        wall at 2,2
    y=2   . # . -1        +1 exit at 4,3, -1 exit at 4,2
    y=1   S . . .         start at 1,1
         x=1 2 3 4

Dynamics:
- actions up / down / left / right; the intended move happens with probability 1 - noise and
  the agent slips to each perpendicular direction with probability noise / 2;
- moving into a wall or off the border leaves the agent where it is;
- in an exit cell every action collects the exit reward and moves to one absorbing terminal
  state, so V*(exit) = its exit reward (V*(4,3) = 1);
- every move from a non-exit cell receives the living reward.

State indices follow the map's reading order (top row first, left to right, walls skipped);
the absorbing terminal state, named "terminal", is the last index. `gridworld_mdp` builds the
TabularMDP; `GridWorldEnv` samples from exactly that MDP's P and R.

Text maps: one string per row, top row first (or one string with rows separated by newlines or
"/"). Cells are single characters -- "." empty, "#" wall, "S" start, "+" exit +1, "-" exit -1,
a digit d exit +d -- or, when a row contains spaces, whitespace-separated tokens, which may be
any number (e.g. ". . . 10" or "S . . -2.5").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from bellmax.errors import BellmaxError
from bellmax.tabular.mdp import TERMINAL_STATE_NAME, GridGeometry, TabularMDP

LECTURE_LAYOUT: tuple[str, ...] = ("...+", ".#.-", "S...")

ACTION_NAMES: tuple[str, ...] = ("up", "down", "left", "right")
# (dx, dy) per action, with y pointing up as in the lecture's "x,y" names.
_ACTION_DELTAS: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (-1, 0), (1, 0))
# The two directions an action can slip to (perpendicular to it).
_PERPENDICULAR: tuple[tuple[int, int], ...] = ((2, 3), (2, 3), (0, 1), (0, 1))

LayoutLike = str | Sequence[str]


@dataclass(frozen=True)
class GridLayout:
    """A parsed text map. `exits` maps (x, y) to the exit reward; `walls` holds (x, y)."""

    n_cols: int
    n_rows: int
    walls: frozenset[tuple[int, int]]
    exits: dict[tuple[int, int], float]
    start: tuple[int, int]

    def cells(self) -> list[tuple[int, int]]:
        """Non-wall cells (x, y) in reading order: top row first, left to right."""
        return [
            (x, y)
            for y in range(self.n_rows, 0, -1)
            for x in range(1, self.n_cols + 1)
            if (x, y) not in self.walls
        ]


def cell_name(x: int, y: int) -> str:
    return f"{x},{y}"


def _format_reward(reward: float) -> str:
    return f"{reward:+g}"


def parse_layout(layout: LayoutLike) -> GridLayout:
    """Parse a text map (see the module docstring) into walls, exits and the start cell."""
    if isinstance(layout, str):
        rows = [row for row in layout.replace("/", "\n").splitlines() if row.strip()]
    else:
        rows = [str(row) for row in layout]
    if not rows:
        raise BellmaxError("the gridworld map is empty; give rows like '...+', '.#.-', 'S...'.")
    tokenized = any(" " in row.strip() or "\t" in row.strip() for row in rows)
    grid = [row.split() if tokenized else list(row.strip()) for row in rows]
    n_cols = len(grid[0])
    if n_cols == 0 or any(len(row) != n_cols for row in grid):
        raise BellmaxError(
            f"gridworld map rows have lengths {[len(r) for r in grid]}; every row needs the same "
            "number of cells."
        )
    n_rows = len(grid)
    walls: set[tuple[int, int]] = set()
    exits: dict[tuple[int, int], float] = {}
    starts: list[tuple[int, int]] = []
    for row_index, row in enumerate(grid):
        y = n_rows - row_index
        for col_index, token in enumerate(row):
            x = col_index + 1
            if token == "#":
                walls.add((x, y))
            elif token == ".":
                pass
            elif token.upper() == "S":
                starts.append((x, y))
            elif token == "+":
                exits[(x, y)] = 1.0
            elif token == "-":
                exits[(x, y)] = -1.0
            else:
                try:
                    exits[(x, y)] = float(token)
                except ValueError:
                    raise BellmaxError(
                        f"gridworld map cell {cell_name(x, y)} is {token!r}; use '.' empty, '#' "
                        "wall, 'S' start, '+'/'-' or a number for an exit."
                    ) from None
                if not np.isfinite(exits[(x, y)]):
                    raise BellmaxError(f"exit reward at {cell_name(x, y)} must be finite.")
    if not exits:
        raise BellmaxError("gridworld map has no exit; add '+', '-' or a number cell.")
    if len(starts) != 1:
        raise BellmaxError(
            f"gridworld map has {len(starts)} start cells 'S'; mark exactly one (where episodes begin)."
        )
    start = starts[0]
    return GridLayout(n_cols, n_rows, frozenset(walls), exits, start)


def gridworld_mdp(
    noise: float = 0.2,
    living_reward: float = 0.0,
    layout: LayoutLike = LECTURE_LAYOUT,
) -> TabularMDP:
    """The gridworld as a TabularMDP (cells in map reading order, then the absorbing state).

    noise: probability of slipping; each perpendicular direction gets noise / 2.
    living_reward: reward for every move from a non-exit cell.
    layout: the text map; the lecture's 4x3 map by default.
    """
    if not 0.0 <= noise <= 1.0:
        raise BellmaxError(f"noise={noise} is outside [0, 1]; it is the slip probability.")
    if not np.isfinite(living_reward):
        raise BellmaxError(f"living_reward={living_reward} must be a finite number.")
    grid = parse_layout(layout)
    cells = grid.cells()
    index_of = {cell: i for i, cell in enumerate(cells)}
    n_states, n_actions = len(cells) + 1, len(ACTION_NAMES)
    absorbing = n_states - 1

    def move(cell: tuple[int, int], action: int) -> tuple[int, int]:
        dx, dy = _ACTION_DELTAS[action]
        target = (cell[0] + dx, cell[1] + dy)
        inside = 1 <= target[0] <= grid.n_cols and 1 <= target[1] <= grid.n_rows
        return target if inside and target not in grid.walls else cell  # bump: stay put

    P = np.zeros((n_states, n_actions, n_states))
    R = np.zeros((n_states, n_actions, n_states))
    for cell, s in index_of.items():
        if cell in grid.exits:
            # Any action in an exit cell collects the exit reward and ends the episode.
            P[s, :, absorbing] = 1.0
            R[s, :, absorbing] = grid.exits[cell]
            continue
        R[s, :, :] = living_reward
        for action in range(n_actions):
            slip_left, slip_right = _PERPENDICULAR[action]
            for direction, prob in (
                (action, 1.0 - noise),
                (slip_left, noise / 2),
                (slip_right, noise / 2),
            ):
                P[s, action, index_of[move(cell, direction)]] += prob
    P[absorbing, :, absorbing] = 1.0
    terminal = np.zeros(n_states, dtype=bool)
    terminal[absorbing] = True
    initial_distribution = np.zeros(n_states)
    initial_distribution[index_of[grid.start]] = 1.0

    tiles = {(grid.n_rows - y, x - 1): "#" for x, y in grid.walls}
    tiles.update(
        {(grid.n_rows - y, x - 1): _format_reward(r) for (x, y), r in grid.exits.items()}
    )
    geometry = GridGeometry(
        n_rows=grid.n_rows,
        n_cols=grid.n_cols,
        cells=tuple((grid.n_rows - y, x - 1) for x, y in cells) + (None,),
        tiles=tiles,
        col_labels=tuple(f"x={x}" for x in range(1, grid.n_cols + 1)),
        row_labels=tuple(f"y={y}" for y in range(grid.n_rows, 0, -1)),
    )
    return TabularMDP(
        P=P,
        R=R,
        terminal=terminal,
        state_names=tuple(cell_name(*cell) for cell in cells) + (TERMINAL_STATE_NAME,),
        action_names=ACTION_NAMES,
        initial_distribution=initial_distribution,
        grid=geometry,
        name="gridworld",
    )


class GridWorldEnv(gymnasium.Env):
    """Gymnasium view of `gridworld_mdp`: observations are state indices, actions 0..3.

    Each step samples s' ~ P(. | s, a) with the env's `np_random` and returns R[s, a, s'];
    `terminated` is True once the absorbing state is reached (after the exit action in an exit
    cell). There is no time limit here; Gymnasium's registration adds one. `state_name(i)` and
    `state_index("x,y")` map between indices and the lecture's cell names.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        noise: float = 0.2,
        living_reward: float = 0.0,
        layout: LayoutLike = LECTURE_LAYOUT,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise BellmaxError(
                f"GridWorld render_mode={render_mode!r} is not supported; use 'ansi' or None."
            )
        self.mdp = gridworld_mdp(noise=noise, living_reward=living_reward, layout=layout)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(self.mdp.n_states)
        self.action_space = spaces.Discrete(self.mdp.n_actions)
        # Cumulative P(. | s, a), normalised so the last entry is exactly 1: inverse-CDF sampling.
        cumulative = np.cumsum(self.mdp.P, axis=2)
        self._cumulative_P = cumulative / cumulative[:, :, -1:]
        assert self.mdp.initial_distribution is not None  # gridworld_mdp starts every episode in the start cell
        self._start_cumulative = np.cumsum(self.mdp.initial_distribution)
        self._start_cumulative /= self._start_cumulative[-1]
        self._state: int | None = None

    def state_name(self, index: int) -> str:
        return self.mdp.state_names[int(index)]

    def state_index(self, name: str) -> int:
        return self.mdp.state_index(name)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = int(np.searchsorted(self._start_cumulative, self.np_random.random(), "right"))
        return self._state, {"cell": self.state_name(self._state)}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise BellmaxError("GridWorldEnv.step called before reset(); call env.reset() first.")
        if not self.action_space.contains(action):
            raise BellmaxError(
                f"action {action!r} is not in {{0, 1, 2, 3}} ({', '.join(ACTION_NAMES)})."
            )
        state, action = self._state, int(action)
        # s' ~ P(. | s, a): first index whose cumulative probability exceeds u ~ U[0, 1).
        next_state = int(
            np.searchsorted(self._cumulative_P[state, action], self.np_random.random(), "right")
        )
        reward = float(self.mdp.R[state, action, next_state])
        self._state = next_state
        terminated = bool(self.mdp.terminal[next_state])
        return next_state, reward, terminated, False, {"cell": self.state_name(next_state)}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        geometry = self.mdp.grid
        assert geometry is not None
        agent_cell = geometry.cells[self._state] if self._state is not None else None
        lines = []
        for row in range(geometry.n_rows):
            tokens = []
            for col in range(geometry.n_cols):
                token = geometry.tiles.get((row, col), ".")
                tokens.append("A" if (row, col) == agent_cell else token)
            lines.append(" ".join(f"{t:>3}" for t in tokens))
        if self._state is not None and self.mdp.terminal[self._state]:
            lines.append("(episode over: terminal state)")
        return "\n".join(lines) + "\n"
