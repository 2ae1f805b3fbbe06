"""Built-in Bomber players, acting on a whole batch of games at once like the engine.

An opponent chooses the actions of some agents in some games of a `BomberEngine`:
`act(engine, games, agents, rng) -> actions` gets two equally long index arrays (the i-th controlled
agent is agent `agents[i]` of game `games[i]`) and returns one action per pair, computed with array
operations over all pairs together (no loop over games), so training against them runs at the
engine's speed. With partial observation they use only what their agent can see (`danger.py`).

- random: uniformly random actions.
- filtered: random among the actions that do not walk into a blast it can see coming.
- rule: a rule-based player in the manner of Pommerman's SimpleAgent: it escapes blasts (judging
  them by bomb positions and strengths only), bombs wood and nearby enemies, collects power-ups
  and wanders; it keeps a small memory per (game, agent). Four of them in the free-for-all win
  about as often as each other; the calibration is in `RuleOpponent`'s docstring.
- expert: a careful planner with exact bomb timings and chain reactions, stronger than the rule
  player (four experts mostly draw the free-for-all; filtered random hardly ever beats it).
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

import numpy as np

from bellmax.envs.bomber.config import BOMB, PASSAGE, RIGID, STOP, WOOD, BomberConfig
from bellmax.envs.bomber.danger import (
    DIRECTIONS,
    NEVER,
    PairView,
    action_outcomes,
    at_cells,
    burn_schedule,
    burns_at,
    distances_from_agents,
    escape_steps,
    neighbour_any,
    observe_pairs,
    spread_over_blasts,
    steps_to_nearest,
    with_own_bomb,
)
from bellmax.envs.bomber.engine import D_COL, D_ROW, BomberEngine
from bellmax.errors import unknown_name

NUM_ACTIONS = 6


class Opponent(Protocol):
    name: str

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        """Actions (len(games),) for agent agents[i] of game games[i]."""
        ...


class RandomOpponent:
    """Uniformly random actions."""

    name = "random"

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        return rng.integers(NUM_ACTIONS, size=len(games))


class FilteredRandomOpponent:
    """Random among the actions that do not step into a blast it can see coming (`filtered_actions`):
    when threatened, only moves that keep a way out in time; otherwise never into a seen bomb's blast
    zone; a bomb only with a way out of its blast; uniformly random among all actions when none is safe."""

    name = "filtered"

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        view = observe_pairs(engine, games, agents)
        return random_among(filtered_actions(view), rng)


class RuleOpponent:
    """A rule-based player in the manner of Pommerman's SimpleAgent (written anew from a description of
    its behaviour): it escapes blasts, bombs wood and nearby enemies, and collects power-ups.

    It knows what its agent sees (`observe_pairs`: with partial observation its window, and the rigid
    walls). Of the bombs it reads positions and blast strengths, never timers or chain reactions.
    Distances are breadth-first, up to SEARCH_DEPTH steps, over walkable cells (seen passages and
    power-ups, agents' cells included; walls, wood, bombs other than the one it stands on and flames
    stop the search but get a distance themselves). A bomb threatens it when it lies in its row or
    column no further (by that distance) than its blast strength; the move toward it is unsafe (every
    move when it stands on one). Each step it follows the first rule that applies:
    1. threatened: when every move is unsafe (as on a bomb), the first of up, down, left,
       right onto a walkable cell from where it is not stuck (`leaves_the_line`), else stop;
       otherwise a random move among those not unsafe onto a walkable or unseen cell, else among
       the unsafe ones that stay on the board, else stop;
    2. an enemy next to it, ammo and a way out (`can_get_away`): lay a bomb;
    3. an enemy within ENEMY_RADIUS: a step toward the nearest, but only every other time on average
       when it is the same move as its last step toward an enemy (it breaks standoffs);
    4. a seen power-up within POWER_UP_RADIUS: a step toward the nearest;
    5. wood next to it: lay a bomb if it has ammo and a way out, else stop;
    6. wood within WOOD_RADIUS: a step toward the nearest, unless that cell is in line of a seen
       bomb (`in_line_of_bombs`);
    7. a random move among stop, up, down, left, right onto a walkable cell, not in line of a seen
       bomb, and not onto one of its RECENT last cells (unless none is left then); stop only when
       it is all that remains, or nothing does. It remembers the cell it stands on.

    Ties: the nearest target is the first in row-major order among equally near ones; among the
    first moves of equally short paths to it, one is drawn with `rng`.

    It follows SimpleAgent's procedure, not its code: where the description leaves a detail open,
    the choice is the one in `leaves_the_line` (stuck) and in the docstrings of the helpers below.

    Memory: per (game, agent) of the engine it plays in (one instance serves one engine at a time),
    its RECENT last cells of rule 7 and its last step toward an enemy (plain NumPy arrays, pickled
    with the environment). A pair's memory is cleared when its game starts (engine step 0 or 1),
    when its step is neither the one of the last call nor the next (another engine, a game
    restarted), and all of it for an engine of another size. Its actions are a function of the
    engine's state, the draws of `rng` (a fixed number per call) and this memory, itself a function
    of the earlier calls: the same calls with the same `rng` give the same actions.

    Calibration (512 games per match, all at once, seats rotating, seeds 0 and 1): four of them in
    the 11x11 free-for-all win 18-24% each, with 17-23% draws (7-13% at the step limit, two
    survivors wandering apart; the rest two dying in the same step), as Pommerman's four SimpleAgents
    win about 20% each. One filtered random player against three wins 6-7%: it dies by its own bomb
    in four games of five (a variant that lays no bombs wins 38%, 400 games). Duels (8x8, partial): 0.99
    against random, 0.70-0.72 against filtered (0.25-0.26 lost), 0.04-0.08 against the expert."""

    name = "rule"

    def __init__(self) -> None:
        self.recent = np.zeros((0, 0, RECENT), np.int64)
        """(N, A, RECENT) flat cells of its last rule-7 steps, oldest first; -1: none."""
        self.enemy_move = np.zeros((0, 0), np.int64)
        """(N, A) its last step toward an enemy (an action); -1: none."""
        self.last_step = np.zeros((0, 0), np.int64)
        """(N, A) the engine's step count of the game at the last call for the pair."""
        self.cells = 0
        """The board's number of cells the memory was made for."""

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        games, agents = np.asarray(games, np.int64), np.asarray(agents, np.int64)
        self.forget_old_games(engine, games, agents)
        view = observe_pairs(engine, games, agents)
        actions, rule = rule_actions(view, self.recent[games, agents], self.enemy_move[games, agents], rng)
        chased = rule == CHASE
        self.enemy_move[games[chased], agents[chased]] = actions[chased]
        wandered = rule == WANDER
        recent = self.recent[games[wandered], agents[wandered]]
        self.recent[games[wandered], agents[wandered]] = np.concatenate(
            [recent[:, 1:], view.here[wandered, None]], axis=1)
        return actions

    def forget_old_games(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray) -> None:
        """Fit the memory to `engine` and clear it for the pairs whose game (re)started."""
        shape = (engine.num_games, engine.num_agents)
        if self.enemy_move.shape != shape or self.cells != engine.cells:
            self.recent = np.full((*shape, RECENT), -1, np.int64)
            self.enemy_move = np.full(shape, -1, np.int64)
            self.last_step = np.full(shape, -2, np.int64)
            self.cells = engine.cells
        steps, last = engine.steps[games], self.last_step[games, agents]
        restarted = (steps <= 1) | ((steps != last) & (steps != last + 1))
        self.recent[games[restarted], agents[restarted]] = -1
        self.enemy_move[games[restarted], agents[restarted]] = -1
        self.last_step[games, agents] = steps


class ExpertOpponent:
    """A careful planner with exact bomb timings and chain reactions, stronger than the rule player;
    one rule after the other for all pairs at once:
    1. threatened by a blast (its cell will burn): head for the nearest cell it can reach in time
       that never burns again (bomb timers and chain reactions counted);
    2. a bomb here would burn wood or an enemy and it could get out of the blast: lay it;
    3. otherwise walk toward the nearest seen power-up, or else toward wood or an enemy, or else
       toward the middle of the board, without entering any blast zone; now and then a random safe
       move instead, so that it does not get stuck.
    It never steps onto a cell that burns at the next step when it has a choice."""

    name = "expert"
    wander = 0.1
    """Chance, each step, of a random safe move instead of heading for the target."""

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        view = observe_pairs(engine, games, agents)
        return expert_actions(view, rng, self.wander)


OPPONENTS: dict[str, type] = {"random": RandomOpponent, "filtered": FilteredRandomOpponent, "rule": RuleOpponent,
                              "expert": ExpertOpponent}


def make_opponent(name: str) -> Opponent:
    """The built-in opponent called `name`."""
    if name not in OPPONENTS:
        raise unknown_name("Bomber opponent", name, list(OPPONENTS))
    opponent: Opponent = OPPONENTS[name]()
    return opponent


# -- the filtered random player ---------------------------------------------------------------
def filtered_actions(view: PairView) -> np.ndarray:
    """(P, 6) bool: the actions that do not walk into a blast the agent can see coming, the safest
    kind of move that exists (`usable_moves`: with a way out of every seen blast in time, whether or
    not the move bounces, and into no blast zone at all when not threatened; ...), and a bomb only
    with a way out of its blast. The filtered player draws among them; the expert chooses among
    them; a learner's actions pass through them when its environment has `action_filter` on."""
    bomb = own_bomb_escape(view) < NEVER
    return np.concatenate([safe_moves(view).usable, bomb[:, None]], axis=1)


class SafeMoves(NamedTuple):
    """What each agent's moves lead to, and which of them are safe (all (P, 5) for STOP and the four
    moves, but `threatened` (P,) and `passable` (P, size, size))."""

    passable: np.ndarray
    planned: np.ndarray  # where each move leads, unless it bounces off another agent
    bounced: np.ndarray  # where it leads if it bounces
    threatened: np.ndarray  # the agent's cell will burn
    escape: np.ndarray  # steps to a cell that never burns again, after the move (NEVER: none)
    usable: np.ndarray  # the safest kind of move that exists (`usable_moves`)


def safe_moves(view: PairView) -> SafeMoves:
    schedule, passable = burn_schedule(view), view.passable()
    planned, bounced = action_outcomes(view)
    threatened = schedule[np.arange(view.num_pairs), view.row, view.col] != 0
    escape_table = escape_steps(schedule, passable)
    escape = at_cells(escape_table, planned)
    sure_escape = np.maximum(escape, at_cells(escape_table, bounced))  # whether or not the move bounces
    usable = usable_moves(schedule, planned, bounced, escape, sure_escape, threatened)
    return SafeMoves(passable, planned, bounced, threatened, escape, usable)


def random_among(allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(P,) one action drawn uniformly among the allowed ones of each row of (P, 6), among all when none is."""
    draw = rng.random(allowed.shape)
    return np.argmax(np.where(allowed, draw + 1.0, draw), axis=1)


def own_bomb_escape(view: PairView, wanted: np.ndarray | None = None) -> np.ndarray:
    """(P,): after laying a bomb where it stands, the fewest steps for each agent to a cell that never
    burns again; NEVER when it cannot lay one (no ammo, a bomb already there) or could not get away,
    or is not among the `wanted` (P,) pairs (default all)."""
    pair = np.arange(view.num_pairs)
    can_lay = (view.ammo > 0) & ~view.has_bomb[pair, view.row, view.col]
    if wanted is not None:
        can_lay &= wanted
    escape = np.full(view.num_pairs, NEVER)
    if can_lay.any():
        laid = with_own_bomb(view.select(can_lay))
        steps = escape_steps(burn_schedule(laid), laid.passable())
        escape[can_lay] = steps[np.arange(laid.num_pairs), laid.row, laid.col]
    return escape


# -- the rule-based player ----------------------------------------------------------------------
SEARCH_DEPTH = 10  # steps of the breadth-first search from the agent
ENEMY_RADIUS, POWER_UP_RADIUS, WOOD_RADIUS = 3, 2, 2  # steps within which it heads for each target
RECENT = 6  # last cells of rule 7 it avoids
FLEE, ATTACK, CHASE, POWER_UP, BOMB_WOOD, TO_WOOD, WANDER = range(1, 8)  # the rules, in order


def rule_actions(view: PairView, recent: np.ndarray, enemy_move: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(P,) the rule player's actions and (P,) the rule each follows (FLEE .. WANDER), given each
    pair's `recent` cells (P, RECENT) and last step toward an enemy (P,). The rules are in
    `RuleOpponent`'s docstring."""
    num_pairs = view.num_pairs
    move_keys, path_keys, coin = rng.random((num_pairs, 5)), rng.random((3, num_pairs, 4)), rng.random(num_pairs)
    walkable = walkable_cells(view)
    steps, first_moves = distances_from_agents(view, walkable, SEARCH_DEPTH)
    unsafe = unsafe_ranges(view, steps)
    get_away = can_get_away(view, steps)
    armed = get_away & (view.ammo > 0)
    in_line = in_line_of_bombs(view)
    cells, inside = next_cells(view)
    wood = view.board == WOOD  # unseen wood reads as a passage

    to_enemy = step_toward_nearest(view.enemies, steps, first_moves, ENEMY_RADIUS, path_keys[0])
    power_ups = view.items & (view.flames == 0)  # flames hide a power-up they are about to burn
    to_power_up = step_toward_nearest(power_ups, steps, first_moves, POWER_UP_RADIUS, path_keys[1])
    to_wood = step_toward_nearest(wood, steps, first_moves, WOOD_RADIUS, path_keys[2])
    wood_step_safe = ~np.take_along_axis(at_cells(in_line, cells), to_wood[:, None], axis=1)[:, 0]
    # the rules in order, each as (applies, action): the first that applies wins
    rules = [
        ((unsafe > 0).any(1), flee_actions(view, walkable, unsafe, move_keys[:, 1:])),
        ((view.enemies & (steps == 1)).any((1, 2)) & armed, np.full(num_pairs, BOMB)),
        ((to_enemy != STOP) & ((to_enemy != enemy_move) | (coin < 0.5)), to_enemy),
        (to_power_up != STOP, to_power_up),
        ((wood & (steps == 1)).any((1, 2)), np.where(armed, BOMB, STOP)),
        ((to_wood != STOP) & wood_step_safe, to_wood),
    ]
    applies = [condition for condition, _ in rules]
    wander = wander_actions(walkable, in_line, recent, cells, inside, move_keys)
    actions = np.select(applies, [action for _, action in rules], wander)
    rule = np.select(applies, [FLEE, ATTACK, CHASE, POWER_UP, BOMB_WOOD, TO_WOOD], WANDER)
    return actions, rule


def walkable_cells(view: PairView) -> np.ndarray:
    """(P, size, size) bool: seen passages and power-ups without bombs or flames, agents' cells included."""
    return view.seen & (view.board == PASSAGE) & ~view.has_bomb & (view.flames == 0)


def next_cells(view: PairView) -> tuple[np.ndarray, np.ndarray]:
    """(P, 5) flat cells after STOP, UP, DOWN, LEFT, RIGHT (clipped to the board) and whether each is on it."""
    size = view.size
    rows, cols = view.row[:, None] + D_ROW[:5], view.col[:, None] + D_COL[:5]
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    return np.clip(rows, 0, size - 1) * size + np.clip(cols, 0, size - 1), inside


def unsafe_ranges(view: PairView, steps: np.ndarray) -> np.ndarray:
    """(P, 4): for each move (up, down, left, right), the largest blast strength of the seen bombs that
    threaten the agent from that side (in its row or column, within `steps` <= their strength), 0
    for none; a bomb under the agent threatens from every side. Walls and timers are ignored."""
    strength = np.where(view.has_bomb & (steps <= view.bomb_strength), view.bomb_strength, 0)
    grid_row, grid_col = np.indices(view.board.shape[1:])
    row, col = view.row[:, None, None], view.col[:, None, None]
    same_col, same_row = grid_col == col, grid_row == row
    sides = (same_col & (grid_row < row), same_col & (grid_row > row), same_row & (grid_col < col),
             same_row & (grid_col > col))
    ranges = np.stack([np.where(side, strength, 0).max((1, 2)) for side in sides], axis=1)
    underfoot = strength[np.arange(view.num_pairs), view.row, view.col]
    return np.maximum(ranges, underfoot[:, None])


def flee_actions(view: PairView, walkable: np.ndarray, unsafe: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(P,) rule 1: away from the bombs that threaten the agent (`unsafe`, from `unsafe_ranges`)."""
    cells, inside = next_cells(view)
    cells, inside = cells[:, 1:], inside[:, 1:]  # the four moves
    unseen = ~at_cells(view.seen, cells) & (at_cells(view.board, cells) != RIGID)
    safe = inside & (unsafe == 0) & (at_cells(walkable, cells) | unseen)
    allowed = inside & (unsafe > 0)
    moves = np.where(safe.any(1), random_move(safe, keys), np.where(allowed.any(1), random_move(allowed, keys), STOP))
    cornered = np.asarray((unsafe > 0).all(1))
    if cornered.any():
        moves[cornered] = unstuck_moves(view.select(cornered), walkable[cornered], unsafe[cornered])
    return moves


def random_move(allowed: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(P,) the action (UP .. RIGHT) of a move drawn among the allowed ones of (P, 4) with `keys` (P, 4)."""
    return 1 + np.argmax(np.where(allowed, keys + 1.0, keys), axis=1)


def unstuck_moves(view: PairView, walkable: np.ndarray, unsafe: np.ndarray) -> np.ndarray:
    """(P,) for agents with every move unsafe: the first of up, down, left, right onto a walkable
    cell from where it is not stuck (`leaves_the_line`, with its own cell blocked as if a bomb were
    there); STOP when there is none."""
    pair = np.arange(view.num_pairs)
    open_cells = walkable.copy()
    open_cells[pair, view.row, view.col] = False
    moves = np.full(view.num_pairs, STOP)
    for index, (d_row, d_col) in enumerate(DIRECTIONS):
        free = leaves_the_line(open_cells, view.row + d_row, view.col + d_col, d_row, d_col, unsafe[:, index])
        moves = np.where((moves == STOP) & free, 1 + index, moves)
    return moves


def leaves_the_line(open_cells: np.ndarray, row: np.ndarray, col: np.ndarray, d_row: int, d_col: int,
                    reach: np.ndarray) -> np.ndarray:
    """(P,) whether (row, col) is an open cell of `open_cells` (P, size, size) from where, going on
    straight in the direction (d_row, d_col) through open cells, the agent can step off that line
    (into an open cell beside it) or get more than `reach` (P,) cells away. Otherwise it is stuck:
    the way goes on straight and short."""
    pair, size = np.arange(len(row)), open_cells.shape[-1]

    def is_open(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        return inside & open_cells[pair, np.clip(r, 0, size - 1), np.clip(c, 0, size - 1)]

    going, leaves = np.ones(len(row), bool), np.zeros(len(row), bool)
    for distance in range(size):
        r, c = row + d_row * distance, col + d_col * distance
        going &= is_open(r, c)
        if not going.any():
            break
        beside = is_open(r + d_col, c + d_row) | is_open(r - d_col, c - d_row)
        leaves |= going & (beside | (distance > reach))
    return leaves


def can_get_away(view: PairView, steps: np.ndarray) -> np.ndarray:
    """(P,) whether the agent reaches a free passage (no power-up, bomb, flames or agent) more than
    its blast strength away or off its row and column: where it would go after laying a bomb."""
    passage = (view.seen & (view.board == PASSAGE) & ~view.items & ~view.has_bomb & (view.flames == 0)
               & ~view.others & (steps < NEVER))
    grid_row, grid_col = np.indices(view.board.shape[1:])
    off_the_lines = (grid_row != view.row[:, None, None]) & (grid_col != view.col[:, None, None])
    far = steps > view.blast[:, None, None]
    return (passage & (far | off_the_lines)).any((1, 2))


def in_line_of_bombs(view: PairView) -> np.ndarray:
    """(P, size, size) bool: cells in the row or column of a seen bomb, no further than its blast
    strength, walls ignored (a blast of strength s + 1 over an empty board reaches s cells)."""
    empty_board = np.full_like(view.board, PASSAGE)
    return spread_over_blasts(view.has_bomb, view.has_bomb, view.bomb_strength + 1, empty_board,
                              np.logical_or, False)


def step_toward_nearest(targets: np.ndarray, steps: np.ndarray, first_moves: np.ndarray, radius: int,
                        keys: np.ndarray) -> np.ndarray:
    """(P,) the action of a first step toward the nearest of the `targets` (P, size, size) within
    `radius` steps (the first in row-major order among equally near ones; among the first moves of
    its shortest paths, one drawn with `keys` (P, 4)); 0 (STOP) when there is none."""
    num_pairs, cells = len(targets), targets.shape[1] * targets.shape[2]
    distance = np.where(targets & (steps <= radius), steps, NEVER).reshape(num_pairs, cells)
    nearest = np.argmin(distance, axis=1)
    pair = np.arange(num_pairs)
    moves = np.where(distance[pair, nearest] < NEVER, first_moves.reshape(num_pairs, cells)[pair, nearest], 0)
    options = (moves[:, None] >> np.arange(4)) & 1 == 1
    return np.where(options.any(1), random_move(options, keys), STOP)


def wander_actions(walkable: np.ndarray, in_line: np.ndarray, recent: np.ndarray, cells: np.ndarray,
                   inside: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(P,) rule 7: random among STOP and the moves (to `cells` (P, 5)) onto walkable cells out of
    line of seen bombs, avoiding the `recent` cells (P, RECENT) while it can; STOP only when nothing
    else remains."""
    allowed = inside & at_cells(walkable, cells) & ~at_cells(in_line, cells)
    allowed[:, STOP] = ~at_cells(in_line, cells[:, :1])[:, 0]  # its own cell is always walkable to it
    fresh = allowed & ~(cells[:, :, None] == recent[:, None, :]).any(2)
    allowed = np.where(fresh.any(1, keepdims=True), fresh, allowed)
    allowed[:, STOP] &= allowed.sum(1) == 1
    return np.where(allowed.any(1), np.argmax(np.where(allowed, keys + 1.0, keys), axis=1), STOP)


# -- the expert --------------------------------------------------------------------------------
def expert_actions(view: PairView, rng: np.random.Generator, wander: float) -> np.ndarray:
    """(P,) the expert's actions (the rules are in `ExpertOpponent`'s docstring)."""
    passable, planned, bounced, threatened, escape, usable = safe_moves(view)

    draw = rng.random(escape.shape) * 0.4  # breaks ties, never outweighs half a step
    # two agents heading for the same cell bounce back, again and again if both insist: a move that
    # may bounce waits a step at random (a coin per step, so that one of them soon goes first)
    may_bounce = (planned != bounced) & (rng.random(escape.shape) < 0.5)
    flee = escape + 1.5 * may_bounce + draw  # the fastest way out
    to_target = steps_to_target(view, passable, planned) + 1.5 * may_bounce + draw
    explore = np.where(np.arange(5) == STOP, 1.0, 0.0) + draw  # any move, rather than standing still
    no_target = (to_target >= NEVER).all(1)
    score = np.where(threatened[:, None], flee, np.where(no_target[:, None], explore, to_target))
    wandering = rng.random(view.num_pairs) < wander  # now and then any usable action, against getting stuck
    score = np.where(wandering[:, None], draw, score)
    move = np.argmin(np.where(usable, score, np.inf), axis=1)

    wanted = ~threatened & worth_a_bomb(view)
    bomb = own_bomb_escape(view, wanted) < NEVER
    return np.where(bomb, BOMB, move)


def usable_moves(schedule: np.ndarray, planned: np.ndarray, bounced: np.ndarray, escape: np.ndarray,
                 sure_escape: np.ndarray, threatened: np.ndarray) -> np.ndarray:
    """(P, 5) bool: the moves the expert considers, the safest kind that exists: with a way out
    whether or not the move bounces (and, when not threatened, into no blast zone at all); with a
    way out if it does not bounce; surviving the next step either way; surviving it if it does not
    bounce; anything."""
    calm = (at_cells(schedule, planned) == 0) & (at_cells(schedule, bounced) == 0)
    burning_next = burns_at(schedule, 1)
    survives, survives_bounce = ~at_cells(burning_next, planned), ~at_cells(burning_next, bounced)
    return first_usable((sure_escape < NEVER) & (threatened[:, None] | calm), sure_escape < NEVER,
                        escape < NEVER, survives & survives_bounce, survives)


def first_usable(*tiers: np.ndarray) -> np.ndarray:
    """(P, K): per row, the first of the tiers (P, K) that allows any action; all actions if none does."""
    usable = np.ones_like(tiers[0])
    for tier in reversed(tiers):
        usable = np.where(tier.any(1, keepdims=True), tier, usable)
    return usable


def steps_to_target(view: PairView, passable: np.ndarray, planned: np.ndarray) -> np.ndarray:
    """(P, 5): after each of STOP and the four moves (leading to the cells `planned`), the steps to
    the nearest seen power-up if one is reachable; else to the nearest cell next to seen wood or to
    a seen enemy; else to the middle of the board, where the others are met (NEVER: none reachable)."""
    goals = [view.items, (neighbour_any(view.board == WOOD) & passable) | view.enemies,
             middle_of_board(view.size) & passable]
    steps = np.full(planned.shape, NEVER)
    for targets in goals:
        undecided = np.flatnonzero((steps >= NEVER).all(1))
        to_targets = steps_to_nearest(targets[undecided], passable[undecided], planned[undecided])
        steps[undecided] = to_targets
    return steps


def middle_of_board(size: int) -> np.ndarray:
    """(size, size) bool: the board's central cells (2 x 2 or 3 x 3)."""
    from_middle = np.abs(np.arange(size) - (size - 1) / 2)
    return np.maximum(from_middle[:, None], from_middle[None, :]) <= 1.0


def worth_a_bomb(view: PairView) -> np.ndarray:
    """(P,): whether a bomb laid where the agent stands would burn seen wood or reach a seen enemy."""
    mine = np.zeros_like(view.has_bomb)
    mine[np.arange(view.num_pairs), view.row, view.col] = True
    blast = spread_over_blasts(mine, mine, view.blast[:, None, None], view.board, np.logical_or, False)
    return (blast & ((view.board == WOOD) | view.enemies)).any((1, 2))


# -- cost ---------------------------------------------------------------------------------------
def opponent_cost(name: str, config: BomberConfig, num_games: int = 256, steps: int = 50, seed: int = 0) -> float:
    """Seconds per call of `act` for one agent in each of `num_games` games, averaged over `steps`
    steps of games in which this opponent plays every seat (games that end start anew)."""
    engine = BomberEngine(config, num_games, seed)
    opponent, rng = make_opponent(name), np.random.default_rng(seed)
    games = np.arange(num_games)
    seconds = 0.0
    for _ in range(steps):
        actions = np.zeros((num_games, engine.num_agents), np.int64)
        for agent in range(engine.num_agents):
            start = time.perf_counter()
            actions[:, agent] = opponent.act(engine, games, np.full(num_games, agent), rng)
            seconds += time.perf_counter() - start
        engine.step(actions)
        engine.reset(np.flatnonzero(engine.over))
    return seconds / (steps * engine.num_agents)
