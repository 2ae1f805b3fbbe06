"""Built-in Bomber players, acting on a whole batch of games at once like the engine.

An opponent chooses the actions of some agents in some games of a `BomberEngine`:
`act(engine, games, agents, rng) -> actions` gets two equally long index arrays (the i-th controlled
agent is agent `agents[i]` of game `games[i]`) and returns one action per pair, computed with array
operations over all pairs together (no loop over games), so training against them runs at the
engine's speed. With partial observation they use only what their agent can see (`danger.py`).

- random: uniformly random actions.
- filtered: random among the actions that do not walk into a blast it can see coming.
- rule: a rule-based player in the manner of Pommerman's SimpleAgent: it escapes blasts, lays bombs
  next to wood and enemies when it can get away, collects power-ups, and heads for wood or enemies.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from bellmax.envs.bomber.config import BOMB, STOP, WOOD, BomberConfig
from bellmax.envs.bomber.danger import (
    NEVER,
    PairView,
    action_outcomes,
    at_cells,
    blast_zone,
    burn_schedule,
    burns_at,
    escape_steps,
    neighbour_any,
    observe_pairs,
    spread_over_blasts,
    steps_to_nearest,
    with_own_bomb,
)
from bellmax.envs.bomber.engine import BomberEngine
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
    """Random among the actions that do not step into a blast it can see coming: never onto a cell
    that burns at the next step, never from outside every seen bomb's blast zone into one, a bomb
    only with a way out of its blast; uniformly random among all actions when none is safe."""

    name = "filtered"

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        view = observe_pairs(engine, games, agents)
        return random_among(filtered_actions(view), rng)


class RuleOpponent:
    """A rule-based player, one rule after the other for all pairs at once:
    1. threatened by a blast (its cell will burn): head for the nearest cell it can reach in time
       that never burns again (bomb timers and chain reactions counted);
    2. a bomb here would burn wood or an enemy and it could get out of the blast: lay it;
    3. otherwise walk toward the nearest seen power-up, or else toward wood or an enemy, or else
       toward the middle of the board, without entering any blast zone; now and then a random safe
       move instead, so that it does not get stuck.
    It never steps onto a cell that burns at the next step when it has a choice."""

    name = "rule"
    wander = 0.1
    """Chance, each step, of a random safe move instead of heading for the target."""

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        view = observe_pairs(engine, games, agents)
        return rule_actions(view, rng, self.wander)


OPPONENTS: dict[str, type] = {"random": RandomOpponent, "filtered": FilteredRandomOpponent, "rule": RuleOpponent}


def make_opponent(name: str) -> Opponent:
    """The built-in opponent called `name`."""
    if name not in OPPONENTS:
        raise unknown_name("Bomber opponent", name, list(OPPONENTS))
    opponent: Opponent = OPPONENTS[name]()
    return opponent


# -- the filtered random player ---------------------------------------------------------------
def filtered_actions(view: PairView) -> np.ndarray:
    """(P, 6) bool: the actions the filtered player may take."""
    pair = np.arange(view.num_pairs)
    schedule = burn_schedule(view)
    planned, _ = action_outcomes(view)  # where each move leads, unless it bounces off another agent
    burns = at_cells(burns_at(schedule, 1), planned)
    zone = blast_zone(view)
    enters_zone = ~zone[pair, view.row, view.col][:, None] & at_cells(zone, planned)
    bomb = own_bomb_escape(view) < NEVER
    return np.concatenate([~burns & ~enters_zone, bomb[:, None]], axis=1)


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


# -- the rule-based player --------------------------------------------------------------------
def rule_actions(view: PairView, rng: np.random.Generator, wander: float) -> np.ndarray:
    """(P,) the rule player's actions (the rules are in `RuleOpponent`'s docstring)."""
    schedule, passable = burn_schedule(view), view.passable()
    planned, bounced = action_outcomes(view)  # (P, 5) for STOP and the four moves: where it may end up
    threatened = schedule[np.arange(view.num_pairs), view.row, view.col] != 0
    escape_table = escape_steps(schedule, passable)
    escape = at_cells(escape_table, planned)
    sure_escape = np.maximum(escape, at_cells(escape_table, bounced))  # whether or not the move bounces
    usable = usable_moves(schedule, planned, bounced, escape, sure_escape, threatened)

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
    """(P, 5) bool: the moves the rule player considers, the safest kind that exists: with a way out
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
