"""What the built-in opponents know and fear: each controlled agent's view of its game, when every
cell burns, whether an escape exists, and how far targets are, for many (game, agent) pairs at once.

Every array here is a stack of boards, one per pair: (P, size, size) for P pairs, so that one array
operation answers a question for all pairs together. Time counts the steps to come: step k is the
k-th call of `engine.step` from now; "a cell burns at step k" means an agent standing on it after
that step dies.

The rules of `reference.py` give the danger map exactly, for the bombs and flames the agent sees
(bombs are assumed not to be kicked, no new bomb to be laid):
- flames of life f burn during steps 1 .. f - 1 (they age before anyone moves);
- a bomb of life L explodes at step L, earlier when the blast of a bomb exploding before reaches it
  (chain reaction) or at step 1 when it stands in flames that still burn then;
- a bomb exploding at step t burns its blast cells during steps t and t + 1 (FLAME_LIFE = 2).
The burn schedule of a cell is a bit set: bit k is set when the cell burns at step k.

With partial observation the agent knows only the cells within `view_radius` (Chebyshev distance):
bombs, flames, wood, power-ups and agents outside are unknown and treated as absent (so a blast
that leaves the window is assumed to keep going); rigid walls are known everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bellmax.envs.bomber.config import BOMB_LIFE, FLAME_LIFE, MOVES, NO_ITEM, PASSAGE, RIGID, WOOD
from bellmax.envs.bomber.engine import BomberEngine

NEVER = 10_000  # a step (or a distance) that does not come
STEPS = np.int16  # steps and distances (up to NEVER)
BITS = np.int16  # burn schedules: bits 1 .. BOMB_LIFE + 1
DIRECTIONS = MOVES[1:5]  # up, down, left, right


# -- neighbours ---------------------------------------------------------------------------------
def with_margin(grid: np.ndarray, fill: int | bool) -> np.ndarray:
    """The boards of `grid` (..., size, size) inside a one-cell margin of `fill`."""
    padded = np.full((*grid.shape[:-2], grid.shape[-2] + 2, grid.shape[-1] + 2), fill, grid.dtype)
    padded[..., 1:-1, 1:-1] = grid
    return padded


def neighbour_min(grid: np.ndarray) -> np.ndarray:
    """For every cell, the smallest value among its four neighbours (NEVER off the board)."""
    padded = with_margin(grid, NEVER)
    return np.minimum(np.minimum(padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]),
                      np.minimum(padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]))


def neighbour_any(grid: np.ndarray) -> np.ndarray:
    """For every cell, whether any of its four neighbours is marked."""
    padded = with_margin(grid, False)
    return (padded[..., :-2, 1:-1] | padded[..., 2:, 1:-1]) | (padded[..., 1:-1, :-2] | padded[..., 1:-1, 2:])


# -- what each agent sees ---------------------------------------------------------------------
@dataclass
class PairView:
    """What agent agents[i] of game games[i] knows of its game: boards (P, size, size), the rest (P,)."""

    board: np.ndarray  # PASSAGE, RIGID or WOOD; unseen wood counts as PASSAGE
    has_bomb: np.ndarray  # bool
    bomb_life: np.ndarray
    bomb_strength: np.ndarray
    flames: np.ndarray  # steps each seen cell still burns
    items: np.ndarray  # bool: a power-up lies there in sight
    others: np.ndarray  # bool: another living agent stands there in sight
    enemies: np.ndarray  # bool: an enemy stands there in sight
    seen: np.ndarray  # bool: within the agent's view (everywhere when fully observed)
    row: np.ndarray
    col: np.ndarray
    ammo: np.ndarray
    blast: np.ndarray
    can_kick: np.ndarray

    @property
    def num_pairs(self) -> int:
        return len(self.row)

    @property
    def size(self) -> int:
        return self.board.shape[-1]

    @property
    def here(self) -> np.ndarray:
        """(P,) the flat cell each agent stands on."""
        return self.row * self.size + self.col

    def passable(self) -> np.ndarray:
        """Cells an agent can walk into: known passages with no bomb and no other agent on them."""
        return (self.board == PASSAGE) & ~self.has_bomb & ~self.others

    def select(self, keep: np.ndarray) -> PairView:
        """The view of the pairs marked in `keep` (P,) only."""
        return PairView(**{name: value[keep] for name, value in vars(self).items()})


def observe_pairs(engine: BomberEngine, games: np.ndarray, agents: np.ndarray) -> PairView:
    """What agent agents[i] of game games[i] sees (everything, or its window with partial observation)."""
    cfg, size = engine.config, engine.size
    games, agents = np.asarray(games, np.int64), np.asarray(agents, np.int64)
    num_pairs = len(games)
    row, col = np.divmod(engine.position[games, agents], size)
    grid_row, grid_col = np.divmod(np.arange(size * size), size)
    if cfg.partial:  # Chebyshev distance <= view_radius
        seen = np.maximum(np.abs(grid_row - row[:, None]), np.abs(grid_col - col[:, None])) <= cfg.view_radius
    else:
        seen = np.ones((num_pairs, size * size), bool)
    board = engine.board[games]
    board = np.where((board == WOOD) & ~seen, PASSAGE, board)
    has_bomb = (engine.bomb_owner[games] >= 0) & seen
    others = np.zeros((num_pairs, size * size), bool)
    enemies = np.zeros_like(others)
    pair = np.arange(num_pairs)
    for other in range(engine.num_agents):
        cell = engine.position[games, other]
        shown = (agents != other) & engine.alive[games, other] & seen[pair, cell]
        others[pair[shown], cell[shown]] = True
        enemy = shown & (engine.sides[other] != engine.sides[agents])
        enemies[pair[enemy], cell[enemy]] = True
    grids = {
        "board": board, "has_bomb": has_bomb,
        "bomb_life": np.where(has_bomb, engine.bomb_life[games], 0).astype(STEPS),
        "bomb_strength": np.where(has_bomb, engine.bomb_strength[games], 0).astype(STEPS),
        "flames": np.where(seen, engine.flames[games], 0).astype(STEPS),
        "items": seen & (board == PASSAGE) & (engine.items[games] != NO_ITEM),
        "others": others, "enemies": enemies, "seen": seen,
    }
    return PairView(**{name: grid.reshape(num_pairs, size, size) for name, grid in grids.items()},
                    row=row, col=col, ammo=engine.ammo[games, agents], blast=engine.blast[games, agents],
                    can_kick=engine.can_kick[games, agents])


def with_own_bomb(view: PairView) -> PairView:
    """The view after each agent lays a bomb where it stands (life BOMB_LIFE, its blast strength)."""
    mine = np.zeros_like(view.has_bomb)
    mine[np.arange(view.num_pairs), view.row, view.col] = True
    fields = dict(vars(view))
    fields["has_bomb"] = view.has_bomb | mine
    fields["bomb_life"] = np.where(mine, BOMB_LIFE, view.bomb_life)
    fields["bomb_strength"] = np.where(mine, view.blast[:, None, None], view.bomb_strength).astype(STEPS)
    return PairView(**fields)


# -- when each cell burns ---------------------------------------------------------------------
def spread_over_blasts(value: np.ndarray, has_bomb: np.ndarray, strength: np.ndarray, board: np.ndarray,
                       combine: np.ufunc, empty: int) -> np.ndarray:
    """For every cell, `combine` (a ufunc: minimum, bitwise_or, ...) of the `value`s of all bombs whose
    blast reaches it, `empty` where none does. A blast of strength s covers its own cell and up to
    s - 1 cells each way, stopping before a rigid wall and at the first wooden wall (the engine's
    `blast_cells`). Bombs are few: this works on the list of bombs, (bomb, direction, distance)."""
    result = np.where(has_bomb, value, empty)
    pair, row, col = np.nonzero(has_bomb)
    if len(pair) == 0:
        return result
    size = has_bomb.shape[-1]
    reach = np.broadcast_to(strength, has_bomb.shape)[pair, row, col] - 1  # (K,) for K bombs
    distance = np.arange(1, max(int(reach.max()), 1) + 1)  # (D,)
    d_row, d_col = (np.array(deltas)[:, None] * distance for deltas in zip(*DIRECTIONS))  # (4, D)
    rows, cols = row[:, None, None] + d_row, col[:, None, None] + d_col  # (K, 4, D)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    rows, cols = np.clip(rows, 0, size - 1), np.clip(cols, 0, size - 1)
    cell = np.where(inside, board[pair[:, None, None], rows, cols], RIGID)
    # a ray stops before the first rigid wall (or the edge) and at the first wooden wall
    rigid_so_far = np.logical_or.accumulate(cell == RIGID, axis=2)
    wood_so_far = np.logical_or.accumulate(cell == WOOD, axis=2)
    wood_before = np.concatenate([np.zeros_like(wood_so_far[..., :1]), wood_so_far[..., :-1]], axis=2)
    burnt = (distance <= reach[:, None, None]) & ~rigid_so_far & ~wood_before
    bomb, _, _ = np.nonzero(burnt)
    combine.at(result, (pair[bomb], rows[burnt], cols[burnt]), value[pair, row, col][bomb])
    return result


def explosion_bits(view: PairView) -> np.ndarray:
    """(P, size, size) bit sets: bit t is set where the blast of a bomb exploding at step t reaches.
    A bomb explodes at t = min(its life, the step of the first blast reaching it), 1 in flames that
    still burn at step 1: the earliest bit reaching a bomb, repeated to a fixed point (chains)."""
    in_flames = view.flames > 1  # still burning at step 1, after ageing
    steps = np.where(in_flames, 1, np.clip(view.bomb_life, 1, BOMB_LIFE))
    own_bit = np.where(view.has_bomb, np.left_shift(1, steps), 0).astype(BITS)
    while True:
        reaching = spread_over_blasts(own_bit, view.has_bomb, view.bomb_strength, view.board, np.bitwise_or, 0)
        first_bit = np.where(view.has_bomb, reaching & -reaching, 0)  # x & -x: the lowest set bit of x
        if np.array_equal(first_bit, own_bit):
            return reaching
        own_bit = first_bit


def burn_schedule(view: PairView) -> np.ndarray:
    """(P, size, size) bit sets: bit k is set when the cell burns at step k (k >= 1)."""
    exploding = explosion_bits(view)
    assert FLAME_LIFE == 2  # a blast at step t burns during t and t + 1
    from_bombs = exploding | (exploding << 1)
    from_flames = np.where(view.flames > 0, np.left_shift(1, view.flames) - 2, 0)  # steps 1 .. f - 1
    return (from_bombs | from_flames).astype(BITS)


def burns_at(schedule: np.ndarray, step: int) -> np.ndarray:
    """Whether each cell burns at `step`."""
    return (schedule >> step) & 1 == 1


# -- getting away -----------------------------------------------------------------------------
def escape_steps(schedule: np.ndarray, passable: np.ndarray) -> np.ndarray:
    """(P, size, size): standing on a cell after step 1, the fewest further steps to a cell that never
    burns again, moving (or waiting) only through cells that do not burn when the agent is on them;
    NEVER when there is no way out. Backward induction over the steps, from the last burning one:
        h_k(c) = NEVER                                    if c burns at step k
               = 0                                        if c burns at no step >= k
               = 1 + min(h_{k+1}(c), min_{n next to c, passable} h_{k+1}(n))  otherwise."""
    result = np.zeros(schedule.shape, STEPS)
    threatened = np.flatnonzero(schedule.any((1, 2)))  # elsewhere every cell is safe: 0
    if len(threatened) == 0:
        return result
    schedule, passable = schedule[threatened], passable[threatened]
    horizon = int(schedule.max()).bit_length()  # the first step at which nothing burns any more
    from_step = schedule >> np.arange(horizon, dtype=BITS)[:, None, None, None]  # (horizon, P, size, size)
    burning, haven = (from_step & 1) == 1, from_step == 0
    steps_left = np.zeros(schedule.shape, STEPS)
    for step in range(horizon - 1, 0, -1):
        via_neighbour = neighbour_min(np.where(passable, steps_left, NEVER))
        steps_left = np.minimum(np.minimum(steps_left, via_neighbour) + 1, NEVER)
        steps_left[haven[step]] = 0
        steps_left[burning[step]] = NEVER
    result[threatened] = steps_left
    return result


def steps_to_nearest(targets: np.ndarray, passable: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(P, K): the steps from each of the flat `cells` (P, K) to the nearest of the `targets`
    (P, size, size), walking through passable cells; NEVER where no target can be reached.

    Breadth-first search from the targets for all pairs at once, one dilation per layer. The cells
    asked about lie next to each other (an agent's cell and its neighbours, at most 2 steps apart),
    so a pair's search ends 2 layers after the first of them is reached, or when it stops growing;
    pairs still searching are gathered into smaller arrays as the others finish."""
    size = targets.shape[-1]
    rows, cols = np.divmod(cells, size)
    answer = np.where(targets[np.arange(len(cells))[:, None], rows, cols], 0, NEVER).astype(STEPS)
    searching = np.flatnonzero(targets.any((1, 2)))  # pairs without targets stay at NEVER
    frontier = with_margin(targets[searching], False)  # the layer just reached, inside a margin
    unvisited = (passable & ~targets)[searching]
    first_reached = np.where((answer[searching] < NEVER).any(1), 0, NEVER)
    layer = 0
    while len(searching):
        layer += 1
        inner = frontier[..., 1:-1, 1:-1]
        inner[...] = (frontier[..., :-2, 1:-1] | frontier[..., 2:, 1:-1] | frontier[..., 1:-1, :-2]
                      | frontier[..., 1:-1, 2:]) & unvisited
        unvisited &= ~inner
        reached_now = inner[np.arange(len(searching))[:, None], rows[searching], cols[searching]]
        answer[searching] = np.where(reached_now & (answer[searching] == NEVER), layer, answer[searching])
        first_reached = np.where(reached_now.any(1), np.minimum(first_reached, layer), first_reached)
        going_on = inner.any((1, 2)) & (layer < first_reached + 2)
        if not going_on.all():
            searching, frontier = searching[going_on], frontier[going_on]
            unvisited, first_reached = unvisited[going_on], first_reached[going_on]
    return answer


def distances_from_agents(view: PairView, passable: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from each agent's cell, up to `depth` steps, for all pairs at once (one
    dilation per layer). Returns (P, size, size) arrays:
    - steps: the distance of every seen cell next to the searched area, whatever it is (a wall, wood
      or a bomb gets the distance of the step onto it), NEVER beyond; the search goes on only from
      `passable` cells and from the agent's own cell;
    - first_moves: for each cell reached, the first moves of its shortest paths as a bit set (bit i:
      DIRECTIONS[i]), 0 for the agent's own cell and cells not reached."""
    pair, size = np.arange(view.num_pairs), view.size
    steps = np.full(passable.shape, NEVER, STEPS)
    steps[pair, view.row, view.col] = 0
    first_moves = np.zeros(passable.shape, np.uint8)
    for bit, (d_row, d_col) in enumerate(DIRECTIONS):  # layer 1: each neighbour is its own first move
        row, col = view.row + d_row, view.col + d_col
        inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
        near, row, col = pair[inside], row[inside], col[inside]
        seen = view.seen[near, row, col]
        steps[near[seen], row[seen], col[seen]] = 1
        first_moves[near[seen], row[seen], col[seen]] = 1 << bit
    spreading = with_margin(np.zeros_like(first_moves), 0)  # first moves of the layer that spreads
    for layer in range(2, depth + 1):
        spreading[:, 1:-1, 1:-1] = np.where((steps == layer - 1) & passable, first_moves, 0)
        if not spreading.any():
            break
        # a cell inherits the first moves of every neighbour it is reached from
        moves = (spreading[:, :-2, 1:-1] | spreading[:, 2:, 1:-1]) | (spreading[:, 1:-1, :-2] | spreading[:, 1:-1, 2:])
        reached = (moves != 0) & (steps == NEVER) & view.seen
        steps[reached] = layer
        first_moves[reached] = moves[reached]
    return steps, first_moves


# -- where an action leads --------------------------------------------------------------------
def action_outcomes(view: PairView) -> tuple[np.ndarray, np.ndarray]:
    """(P, 5) flat cells where each agent may stand after STOP, UP, DOWN, LEFT, RIGHT: two cells per
    action, both possible: a move can bounce back when another agent stands on or next to the
    target (it may stay or move there too), a kick may fail; a refused move (edge, wall, bomb
    without kick) stays."""
    size, pair = view.size, np.arange(view.num_pairs)
    here = view.here
    contested = neighbour_any(view.others)
    first, second = [here], [here]
    for d_row, d_col in DIRECTIONS:
        row, col = view.row + d_row, view.col + d_col
        inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
        row, col = np.clip(row, 0, size - 1), np.clip(col, 0, size - 1)
        target = row * size + col
        open_cell = inside & (view.board[pair, row, col] == PASSAGE)
        bomb, bounce = view.has_bomb[pair, row, col], view.others[pair, row, col] | contested[pair, row, col]
        first.append(np.where(open_cell & (~bomb | view.can_kick), target, here))
        second.append(np.where(open_cell & ~bomb & ~bounce, target, here))
    return np.stack(first, 1), np.stack(second, 1)


def at_cells(grid: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """grid (P, size, size) read at flat cells (P, K) -> (P, K)."""
    return np.take_along_axis(grid.reshape(len(grid), grid.shape[1] * grid.shape[2]), cells, axis=1)
