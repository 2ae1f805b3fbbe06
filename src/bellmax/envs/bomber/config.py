"""The Bomber arena's constants and its game configuration.

Codes shared by the reference game (`reference.py`), the batched engine (`engine.py`), the
observations and the opponents. Rows and columns index the board as arrays do: (row, col), row 0
at the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bellmax.errors import ConfigError

# actions
STOP, UP, DOWN, LEFT, RIGHT, BOMB = range(6)
ACTION_NAMES = ("stop", "up", "down", "left", "right", "bomb")
# (d_row, d_col) of each action; STOP and BOMB do not move
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))

# board cells
PASSAGE, RIGID, WOOD = 0, 1, 2
# power-ups (hidden while wood covers them)
NO_ITEM, EXTRA_BOMB, RANGE, KICK = 0, 1, 2, 3
ITEM_NAMES = ("none", "extra_bomb", "range", "kick")

BOMB_LIFE = 10  # a bomb explodes on the 10th step after the step it is laid in
FLAME_LIFE = 2  # flames burn during the step of the explosion and the next one
START_AMMO = 1
START_BLAST = 2  # a bomb of blast strength s burns its own cell and s - 1 cells in each direction

# the standard boards: (size, agents, rigid walls, wooden walls, power-ups)
FFA_BOARD = (11, 4, 36, 36, 20)
DUEL_BOARD = (8, 2, 16, 16, 10)


@dataclass
class Rewards:
    """Reward terms; the defaults are Pommerman's (+1 to the winner, -1 to everyone else, once).
    The lecture's shaping is Rewards(step=-2, kill=100)."""

    win: float = 1.0
    """To each agent of the winning side when the game is decided."""
    lose: float = -1.0
    """To an agent when its side loses: when it dies (free-for-all), when its team is eliminated,
    or to everyone still alive at the step limit."""
    step: float = 0.0
    """To every living agent at every step."""
    kill: float = 0.0
    """To the owner of a bomb whose explosion kills an enemy (once per enemy and owner)."""
    powerup: float = 0.0
    """To an agent for each power-up it picks up."""
    wood: float = 0.0
    """To the owner of a bomb for each wooden wall its explosion destroys."""


@dataclass
class BomberConfig:
    """One Bomber game: the board, the mode, what agents see and how they are rewarded."""

    size: int = 11
    """Board side (the board is size x size)."""
    num_agents: int = 4
    """Agents: 4 (corners) or 2 (opposite corners)."""
    rigid: int = 36
    """Rigid (indestructible) walls, placed symmetrically about the main diagonal."""
    wood: int = 36
    """Wooden walls, destroyed by flames, placed symmetrically about the main diagonal."""
    items: int = 20
    """Power-ups hidden under wooden walls (extra bomb, range, kick in equal chance)."""
    mode: Literal["ffa", "team"] = "ffa"
    """ffa: the last agent alive wins; team: agents 0 and 2 against 1 and 3, the last team alive wins."""
    max_steps: int = 800
    """Step limit: a game not decided by then ends with -1 for everyone still alive."""
    partial: bool = False
    """Each agent sees only the cells within view_radius of itself (on by default in team mode)."""
    view_radius: int = 4
    """With partial observation: the window is (2 r + 1) x (2 r + 1) cells centred on the agent."""
    rewards: Rewards = field(default_factory=Rewards)

    @classmethod
    def ffa(cls, **changes: object) -> BomberConfig:
        """The 11x11 four-agent free-for-all (fully observed)."""
        return cls(**changes)  # type: ignore[arg-type]

    @classmethod
    def team(cls, **changes: object) -> BomberConfig:
        """The 11x11 two-against-two team game (partially observed)."""
        return cls(**{"mode": "team", "partial": True, **changes})  # type: ignore[arg-type]

    @classmethod
    def duel(cls, **changes: object) -> BomberConfig:
        """The 8x8 two-agent duel (partially observed)."""
        size, agents, rigid, wood, items = DUEL_BOARD
        return cls(**{"size": size, "num_agents": agents, "rigid": rigid, "wood": wood, "items": items,
                      "partial": True, **changes})  # type: ignore[arg-type]

    def start_positions(self) -> list[tuple[int, int]]:
        """Agents start in the corners one cell in from the edge: agents 0 and 2 (a team) diagonally
        opposite, as agents 1 and 3; with two agents, 0 and 1 diagonally opposite."""
        far = self.size - 2
        if self.num_agents == 2:
            return [(1, 1), (far, far)]
        return [(1, 1), (far, 1), (far, far), (1, far)]

    def teams(self) -> list[int]:
        """The side of each agent: its own index in free-for-all, 0 or 1 in team mode."""
        if self.mode == "team":
            return [agent % 2 for agent in range(self.num_agents)]
        return list(range(self.num_agents))

    def validate(self) -> None:
        """One clear error for a board the agents or walls do not fit on."""
        if self.mode not in ("ffa", "team"):
            raise ConfigError(f"unknown Bomber mode {self.mode!r}: use 'ffa' (free-for-all) or 'team' (2 against 2)")
        if self.num_agents not in (2, 4):
            raise ConfigError(f"invalid num_agents={self.num_agents}: Bomber has 2 or 4 agents")
        if self.mode == "team" and self.num_agents != 4:
            raise ConfigError("team mode needs num_agents=4 (agents 0 and 2 against 1 and 3)")
        if self.size < 5:
            raise ConfigError(f"invalid size={self.size}: the board must be at least 5x5 for agents in its corners")
        reserved = len(reserved_cells(self))
        free = self.size * self.size - reserved
        if min(self.rigid, self.wood, self.items) < 0:
            raise ConfigError("rigid, wood and items must be >= 0")
        if self.rigid + self.wood > free:
            raise ConfigError(f"rigid={self.rigid} + wood={self.wood} walls do not fit: a {self.size}x{self.size} "
                              f"board has {free} cells outside the agents' corners")
        if self.items > self.wood:
            raise ConfigError(f"invalid items={self.items}: power-ups hide under wooden walls, "
                              f"so at most wood={self.wood}")
        if self.max_steps < 1:
            raise ConfigError(f"invalid max_steps={self.max_steps}: must be at least 1")
        if self.view_radius < 1:
            raise ConfigError(f"invalid view_radius={self.view_radius}: must be at least 1")


def reserved_cells(config: BomberConfig) -> set[tuple[int, int]]:
    """Cells kept free of walls: each start cell and its four neighbours."""
    cells = set()
    for row, col in config.start_positions():
        for d_row, d_col in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + d_row, col + d_col
            if 0 <= r < config.size and 0 <= c < config.size:
                cells.add((r, c))
    return cells
