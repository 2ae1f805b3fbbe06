"""Random boards: walls symmetric about the main diagonal, the agents' corners free, power-ups
hidden under wood, and every agent able to reach every other once the wood is burnt away.

`random_layouts(config, rng, count)` draws `count` boards at once with array operations (a
training run starts dozens of games per step); the reference game and a seeded reset draw one
with the same function, so the same generator state gives the same board to both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from bellmax.envs.bomber.config import EXTRA_BOMB, KICK, PASSAGE, RANGE, RIGID, WOOD, BomberConfig, reserved_cells


@dataclass
class Layout:
    board: np.ndarray  # (size, size) int8: PASSAGE, RIGID or WOOD
    items: np.ndarray  # (size, size) int8: the power-up under each wooden wall (NO_ITEM elsewhere)


@functools.cache
def _candidates(size: int, reserved: frozenset[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells (r <= c) a wall may take with its mirror image: rows, cols, and whether on the diagonal."""
    cells = [(r, c) for r in range(size) for c in range(r, size) if (r, c) not in reserved and (c, r) not in reserved]
    rows, cols = (np.array([cell[i] for cell in cells], dtype=np.int64) for i in (0, 1))
    return rows, cols, rows == cols


def _place_symmetric(boards: np.ndarray, count: int, value: int, candidates: tuple[np.ndarray, ...],
                     rng: np.random.Generator) -> None:
    """Put `count` cells of `value` on each board, on free candidate cells in random order, each
    off-diagonal one together with its mirror image (c, r), so the boards stay symmetric."""
    rows, cols, diagonal = candidates
    k = len(boards)
    free = boards[:, rows, cols] == PASSAGE  # (k, m)
    keys = np.where(free, rng.random(free.shape), 2.0)  # occupied candidates sort last
    order = np.argsort(keys, axis=1)
    weight = np.where(diagonal[order], 1, 2) * free[np.arange(k)[:, None], order]
    chosen = (np.cumsum(weight, axis=1) <= count) & (weight > 0)  # take cells in order while they fit
    placed = (weight * chosen).sum(1)
    for row in np.flatnonzero(placed == count - 1):  # one short: the next free diagonal cell, or a trade
        diagonal_left = np.flatnonzero(~chosen[row] & (weight[row] == 1))
        if len(diagonal_left):
            chosen[row, diagonal_left[0]] = True
            continue
        taken_diagonal = np.flatnonzero(chosen[row] & (weight[row] == 1))
        pairs_left = np.flatnonzero(~chosen[row] & (weight[row] == 2))
        if len(taken_diagonal) and len(pairs_left):  # swap a diagonal cell for a pair
            chosen[row, taken_diagonal[-1]] = False
            chosen[row, pairs_left[0]] = True
    game, index = np.nonzero(chosen)
    cells = order[game, index]
    boards[game, rows[cells], cols[cells]] = value
    boards[game, cols[cells], rows[cells]] = value


def _connected(boards: np.ndarray, starts: list[tuple[int, int]]) -> np.ndarray:
    """(k,): whether on each board every start reaches every other through cells that are not rigid."""
    passable = boards != RIGID
    reach = np.zeros_like(passable)
    reach[:, starts[0][0], starts[0][1]] = True
    for sweep in range(boards.shape[1] * boards.shape[2]):
        before = reach.copy() if sweep % 4 == 3 else None  # checking every sweep costs more than it saves
        reach[:, 1:] |= reach[:, :-1] & passable[:, 1:]
        reach[:, :-1] |= reach[:, 1:] & passable[:, :-1]
        reach[:, :, 1:] |= reach[:, :, :-1] & passable[:, :, 1:]
        reach[:, :, :-1] |= reach[:, :, 1:] & passable[:, :, :-1]
        if before is not None and np.array_equal(before, reach):
            break
    return np.all([reach[:, r, c] for r, c in starts], axis=0)


def random_layouts(config: BomberConfig, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` boards for `config` drawn with `rng`: (boards, items), each (count, size, size) int8.
    A board whose agents cannot reach each other is drawn again."""
    size = config.size
    candidates = _candidates(size, frozenset(reserved_cells(config)))
    boards = np.full((count, size, size), PASSAGE, dtype=np.int8)
    todo = np.arange(count)
    while len(todo):
        fresh = np.full((len(todo), size, size), PASSAGE, dtype=np.int8)
        _place_symmetric(fresh, config.rigid, RIGID, candidates, rng)
        boards[todo] = fresh
        todo = todo[~_connected(fresh, config.start_positions())]
    _place_symmetric(boards, config.wood, WOOD, candidates, rng)
    items = np.zeros_like(boards)
    wood = (boards == WOOD).reshape(count, -1)
    keys = np.where(wood, rng.random(wood.shape), 2.0)
    hidden = np.argsort(keys, axis=1)[:, : config.items]  # the first `items` wood cells in random order
    game = np.repeat(np.arange(count), hidden.shape[1])
    kinds = rng.choice(np.array([EXTRA_BOMB, RANGE, KICK], dtype=np.int8), size=hidden.size)
    flat_items = items.reshape(count, -1)
    flat_items[game, hidden.ravel()] = np.where(wood[game, hidden.ravel()], kinds, 0)
    return boards, items


def random_layout(config: BomberConfig, rng: np.random.Generator) -> Layout:
    """One board for `config` drawn with `rng`."""
    boards, items = random_layouts(config, rng, 1)
    return Layout(boards[0], items[0])
