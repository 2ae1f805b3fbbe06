"""The built-in Bomber opponents: batched, deterministic per seed, safe in hand-made positions, and
as strong as promised against each other in short seeded duels."""

import numpy as np
import pytest

from bellmax.envs.bomber.config import (
    BOMB,
    BOMB_LIFE,
    DOWN,
    LEFT,
    MOVES,
    RANGE,
    RIGHT,
    RIGID,
    STOP,
    UP,
    WOOD,
    BomberConfig,
)
from bellmax.envs.bomber.danger import action_outcomes, burn_schedule, burns_at, observe_pairs
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.opponents import (
    OPPONENTS,
    FilteredRandomOpponent,
    RuleOpponent,
    filtered_actions,
    make_opponent,
    opponent_cost,
)
from bellmax.errors import BellmaxError

# -- hand-made positions ------------------------------------------------------------------------
# '#' rigid, 'W' wood, '.' passage, '*' a range power-up, '~' flames (2 steps of life), a digit d a
# bomb of life d (strength 2, agent 1's), 'a' agent 0 (the one under test), 'b' agent 1.
PICTURE_CONFIG = BomberConfig(size=9, num_agents=2, rigid=0, wood=0, items=0, partial=True, view_radius=4)


def position(picture: str, engine: BomberEngine) -> dict:
    """A state in the layout of `engine.state` drawn as a picture (one line per row)."""
    rows = [line.strip() for line in picture.strip().splitlines()]
    state = engine.state(0)
    cells = {(r, c): char for r, line in enumerate(rows) for c, char in enumerate(line)}
    assert len(rows) == engine.size and all(len(line) == engine.size for line in rows)
    for name in ("board", "items", "bomb_life", "bomb_strength", "flames"):
        state[name][:] = 0
    state["bomb_owner"][:] = -1
    for (r, c), char in cells.items():
        state["board"][r, c] = {"#": RIGID, "W": WOOD}.get(char, 0)
        state["items"][r, c] = RANGE if char == "*" else 0
        state["flames"][r, c] = 2 if char == "~" else 0
        if char.isdigit():
            state["bomb_owner"][r, c], state["bomb_life"][r, c], state["bomb_strength"][r, c] = 1, int(char), 2
    state["position"] = np.array([next(cell for cell, char in cells.items() if char == name) for name in "ab"])
    state["alive"] = np.array([True, True])
    return state


def games_in(picture: str, num_games: int = 200) -> BomberEngine:
    """`num_games` copies of the position drawn in `picture`."""
    engine = BomberEngine(PICTURE_CONFIG, num_games, seed=0)
    state = position(picture, engine)
    for game in range(num_games):
        engine.set_state(game, state)
    return engine


def actions_of(opponent, engine: BomberEngine, seed: int = 0) -> np.ndarray:
    """Agent 0's action in every game."""
    games = np.arange(engine.num_games)
    return opponent.act(engine, games, np.zeros_like(games), np.random.default_rng(seed))


def cell_after(engine: BomberEngine, action: int) -> int:
    """The flat cell agent 0 of game 0 moves to with `action` (in an open position)."""
    row, col = divmod(int(engine.position[0, 0]), engine.size)
    return (row + MOVES[action][0]) * engine.size + col + MOVES[action][1]


# agent a between flames (above), the blast of a bomb exploding next step (to its right) and the
# blast zone of a bomb with 8 steps to go (below); b far away, out of sight
THREATS = """
#########
#.......#
#.......#
#...~...#
#...a.1.#
#.......#
#...8...#
#......b#
#########
"""

OPEN = """
#########
#.......#
#.......#
#.......#
#...a...#
#.......#
#.......#
#......b#
#########
"""

# a corridor: wood at its left end, open to the right
CORRIDOR = """
#########
#########
#########
#Wa.....#
#########
#########
#########
#......b#
#########
"""

# the same, but the corridor ends one cell to the right: no way out of a bomb's blast
DEAD_END = """
#########
#########
#########
#Wa.#...#
#########
#########
#########
#......b#
#########
"""

POWER_UP = """
#########
#.......#
#.......#
#.......#
#...a*..#
#.......#
#.......#
#......b#
#########
"""


# -- the interface ------------------------------------------------------------------------------
def test_the_registry_holds_the_three_built_in_opponents():
    assert set(OPPONENTS) == {"random", "filtered", "rule"}
    for name in OPPONENTS:
        assert make_opponent(name).name == name
    with pytest.raises(BellmaxError, match="rule"):
        make_opponent("rules")


def play_some_steps(name: str, config: BomberConfig, seed: int, steps: int = 40) -> np.ndarray:
    """The actions (steps, N, A) of the opponent `name` in every seat of 16 games."""
    engine = BomberEngine(config, 16, seed=seed)
    opponent, rng = make_opponent(name), np.random.default_rng(seed)
    games = np.arange(16)
    history = []
    for _ in range(steps):
        actions = np.stack([opponent.act(engine, games, np.full(16, agent), rng)
                            for agent in range(engine.num_agents)], axis=1)
        history.append(actions)
        engine.step(actions)
        engine.reset(np.flatnonzero(engine.over))
    return np.array(history)


@pytest.mark.parametrize("name", ["random", "filtered", "rule"])
def test_same_seed_same_actions_and_actions_in_range(name):
    config = BomberConfig.ffa(partial=True)
    first, again, other = (play_some_steps(name, config, seed) for seed in (3, 3, 4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= BOMB


@pytest.mark.parametrize("name", ["random", "filtered", "rule"])
def test_act_answers_any_subset_of_pairs(name):
    engine = BomberEngine(BomberConfig.ffa(), 8, seed=1)
    opponent, rng = make_opponent(name), np.random.default_rng(0)
    for _ in range(5):  # a few steps, so that there are bombs and flames about
        engine.step(rng.integers(6, size=(8, 4)))
        engine.reset(np.flatnonzero(engine.over))
    for size in (0, 1, 5, 32):
        games, agents = rng.integers(8, size=size), rng.integers(4, size=size)  # repeats allowed
        actions = opponent.act(engine, games, agents, rng)
        assert actions.shape == (size,)
        assert np.all((actions >= 0) & (actions <= BOMB))


def test_what_a_pair_may_do_does_not_depend_on_the_other_pairs_asked():
    engine = BomberEngine(BomberConfig.duel(), 32, seed=2)
    rng = np.random.default_rng(2)
    for _ in range(12):
        engine.step(rng.integers(6, size=(32, 2)))
        engine.reset(np.flatnonzero(engine.over))
    games, agents = np.repeat(np.arange(32), 2), np.tile([0, 1], 32)
    everyone = filtered_actions(observe_pairs(engine, games, agents))
    some = rng.choice(64, size=10, replace=False)
    assert np.array_equal(filtered_actions(observe_pairs(engine, games[some], agents[some])), everyone[some])


def test_what_is_out_of_sight_changes_nothing():
    """With partial observation, bombs, flames, wood, power-ups and enemies beyond the view radius
    do not change what an opponent does (same seed, same actions)."""
    corner = OPEN.replace("#...a...#", "#.......#").replace("#.......#", "#a......#", 1)  # a at (1, 1)
    cluttered = corner.replace("#......b#", "#W~*..3b#")  # in row 7, 6 rows away: out of sight
    for opponent in (FilteredRandomOpponent(), RuleOpponent()):
        assert np.array_equal(actions_of(opponent, games_in(corner)), actions_of(opponent, games_in(cluttered)))
        seen = corner.replace("#.......#", "#.3.....#", 1)  # while a bomb in sight does change them
        assert not np.array_equal(actions_of(opponent, games_in(corner)), actions_of(opponent, games_in(seen)))


@pytest.mark.parametrize("opponent", [FilteredRandomOpponent(), RuleOpponent()], ids=["filtered", "rule"])
def test_no_step_into_a_cell_burning_next_when_another_action_avoids_it(opponent):
    engine = BomberEngine(BomberConfig.ffa(), 64, seed=3)
    rng = np.random.default_rng(3)
    engine.ammo[:], engine.blast[:] = 3, 3
    checked = 0
    for _ in range(40):
        engine.step(rng.choice(6, size=(64, 4), p=[0.1, 0.15, 0.15, 0.15, 0.15, 0.3]))
        engine.reset(np.flatnonzero(engine.over))
        games, agents = np.repeat(np.arange(64), 4), np.tile(np.arange(4), 64)
        living = engine.alive[games, agents]
        games, agents = games[living], agents[living]
        view = observe_pairs(engine, games, agents)
        burning_next = burns_at(burn_schedule(view), 1).reshape(len(games), -1)
        planned, _ = action_outcomes(view)
        burns = np.take_along_axis(burning_next, planned, axis=1)  # (P, 5)
        actions = opponent.act(engine, games, agents, rng)
        chosen = np.take_along_axis(burns, np.minimum(actions, STOP + 4)[:, None], axis=1)[:, 0]
        chosen[actions == BOMB] = burns[actions == BOMB, STOP]
        choice = ~burns.all(1)
        assert not chosen[choice].any()
        checked += (choice & burns.any(1)).sum()
    assert checked > 100  # positions where some move burns and another does not


# -- the danger map against the engine ---------------------------------------------------------
def burning_cells_ahead(engine: BomberEngine, steps: int) -> np.ndarray:
    """(steps, N, size, size): the cells each game of `engine` has burning after each of the next
    steps when nobody acts (played on a copy, every agent dead, so that only the bombs matter)."""
    copy = BomberEngine(engine.config, engine.num_games, seed=0)
    for game in range(engine.num_games):
        state = engine.state(game)
        state["alive"][:] = False
        copy.set_state(game, state)
    burning = []
    for _ in range(steps):
        copy.over[:] = False  # the games are over for the agents, not for the bombs
        copy.step(np.zeros((engine.num_games, engine.num_agents), np.int64))
        burning.append(copy.flames.reshape(-1, engine.size, engine.size) > 0)
    return np.array(burning)


@pytest.mark.parametrize("wood", [0, 36])
def test_the_burn_schedule_is_what_the_engine_burns(wood):
    """Without wood the schedule (timers, blasts, chain reactions, flames) is exactly what burns.
    With wood, a wall burnt by an early blast lets a later one further: the schedule may miss those
    cells, but never marks a cell that does not burn."""
    config = BomberConfig.ffa(wood=wood, items=min(wood, 20))
    engine = BomberEngine(config, 32, seed=5)
    rng = np.random.default_rng(5)
    engine.ammo[:], engine.blast[:] = 3, 4  # many bombs, long blasts: chain reactions
    compared = 0
    for step in range(24):
        engine.step(rng.choice(6, size=(32, 4), p=[0.1, 0.15, 0.15, 0.15, 0.15, 0.3]))
        engine.reset(np.flatnonzero(engine.over))
        if step % 6 != 5:
            continue
        schedule = burn_schedule(observe_pairs(engine, np.arange(32), np.zeros(32, np.int64)))
        burning = burning_cells_ahead(engine, BOMB_LIFE + 2)
        for k in range(1, BOMB_LIFE + 3):
            expected, predicted = burning[k - 1], burns_at(schedule, k)
            if wood:
                assert not (predicted & ~expected).any(), k
            else:
                assert np.array_equal(predicted, expected), k
        compared += burning.any((0, 2, 3)).sum()
    assert compared > 50


# -- the filtered random player -----------------------------------------------------------------
def test_filtered_never_steps_into_flames_a_blast_about_to_burst_or_a_blast_zone():
    engine = games_in(THREATS)
    actions = actions_of(FilteredRandomOpponent(), engine)
    # up: flames; right: the bomb bursts next step; down: into a blast zone from outside
    assert set(actions) == {STOP, LEFT, BOMB}


def test_filtered_keeps_moving_in_open_positions():
    actions = actions_of(FilteredRandomOpponent(), games_in(OPEN))
    assert set(actions) == {STOP, UP, DOWN, LEFT, RIGHT, BOMB}
    assert np.isin(actions, [UP, DOWN, LEFT, RIGHT]).mean() > 0.5


def test_filtered_lays_no_bomb_without_a_way_out():
    assert BOMB not in actions_of(FilteredRandomOpponent(), games_in(DEAD_END))
    assert BOMB in actions_of(FilteredRandomOpponent(), games_in(CORRIDOR))


# -- the rule-based player ----------------------------------------------------------------------
def test_rule_lays_a_bomb_next_to_wood_when_it_can_escape():
    assert np.all(actions_of(RuleOpponent(), games_in(CORRIDOR)) == BOMB)
    assert BOMB not in actions_of(RuleOpponent(), games_in(DEAD_END))


def test_rule_escapes_its_own_bomb_in_a_corridor():
    engine = games_in(CORRIDOR, num_games=64)
    opponent, rng = RuleOpponent(), np.random.default_rng(0)
    games = np.arange(64)
    wood = engine.board[:, 3 * engine.size + 1] == WOOD
    assert wood.all()
    for _ in range(15):  # the bomb, ten steps to its blast, the flames, and a little more
        actions = np.zeros((64, 2), np.int64)
        actions[:, 0] = opponent.act(engine, games, np.zeros(64, np.int64), rng)
        engine.step(actions)
        assert engine.alive[:, 0].all()
    assert not (engine.board[:, 3 * engine.size + 1] == WOOD).any()  # its bomb burnt the wood


def test_rule_picks_up_a_power_up_next_to_it():
    engine = games_in(POWER_UP)
    actions = actions_of(RuleOpponent(), engine)
    assert (actions == RIGHT).mean() > 0.8
    engine.step(np.stack([actions, np.zeros_like(actions)], axis=1))
    assert (engine.blast[:, 0] == 3).mean() > 0.8


def test_rule_runs_from_a_blast_it_is_in():
    engine = games_in(THREATS.replace("a.1", ".a1"))  # now next to the bomb that bursts next step
    actions = actions_of(RuleOpponent(), engine)
    after = np.array([cell_after(engine, action) for action in actions])
    schedule = burn_schedule(observe_pairs(engine, np.arange(engine.num_games), np.zeros(engine.num_games, int)))
    assert not burns_at(schedule, 1).reshape(engine.num_games, -1)[0, after].any()
    assert not np.isin(actions, [STOP, BOMB, RIGHT]).any()


# -- strength -----------------------------------------------------------------------------------
def duel_score(first: str, second: str, num_games: int = 256, seed: int = 0) -> float:
    """`first`'s score against `second` (a win 1, a draw 1/2) over num_games seeded duels, half of
    them from each corner: all games at once, each slot scoring its first game only."""
    config = BomberConfig.duel()
    engine = BomberEngine(config, num_games, seed=seed)
    rng = np.random.default_rng(seed)
    players = [make_opponent(first), make_opponent(second)]
    seat_of_first = np.arange(num_games) % 2  # agent 0 or 1
    playing = np.ones(num_games, bool)
    score = 0.0
    while playing.any():
        games = np.flatnonzero(playing)
        actions = np.full((num_games, 2), STOP)
        for agent in (0, 1):
            for player, plays_here in ((players[0], seat_of_first[games] == agent),
                                       (players[1], seat_of_first[games] != agent)):
                mine = games[plays_here]
                actions[mine, agent] = player.act(engine, mine, np.full(len(mine), agent), rng)
        engine.step(actions)
        for game in np.flatnonzero(engine.over & playing):
            winners = engine.winners(game)
            score += 0.5 if not winners else float(winners == [seat_of_first[game]])
        playing &= ~engine.over
        engine.reset(np.flatnonzero(engine.over))
    return score / num_games


def test_rule_beats_random_clearly():
    assert duel_score("rule", "random") >= 0.8


def test_filtered_beats_random():
    assert duel_score("filtered", "random") >= 0.7


def test_rule_beats_filtered():
    assert duel_score("rule", "filtered") >= 0.6


def test_opponent_cost_is_seconds_per_call():
    cost = opponent_cost("rule", BomberConfig.duel(), num_games=16, steps=3)
    assert 0.0 < cost < 1.0
