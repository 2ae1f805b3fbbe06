"""The built-in Bomber opponents: batched, deterministic per seed, following their rules in hand-made
positions, and as strong as promised against each other in short seeded duels."""

import pickle

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
from bellmax.envs.bomber.danger import (
    NEVER,
    action_outcomes,
    burn_schedule,
    burns_at,
    distances_from_agents,
    observe_pairs,
)
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.opponents import (
    OPPONENTS,
    RECENT,
    ExpertOpponent,
    FilteredRandomOpponent,
    RuleOpponent,
    filtered_actions,
    make_opponent,
    opponent_cost,
    walkable_cells,
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
def test_the_registry_holds_the_four_built_in_opponents():
    assert set(OPPONENTS) == {"random", "filtered", "rule", "expert"}
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


@pytest.mark.parametrize("name", ["random", "filtered", "rule", "expert"])
def test_same_seed_same_actions_and_actions_in_range(name):
    config = BomberConfig.ffa(partial=True)
    first, again, other = (play_some_steps(name, config, seed) for seed in (3, 3, 4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= BOMB


@pytest.mark.parametrize("name", ["random", "filtered", "rule", "expert"])
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
    for opponent in (FilteredRandomOpponent(), RuleOpponent(), ExpertOpponent()):
        assert np.array_equal(actions_of(opponent, games_in(corner)), actions_of(opponent, games_in(cluttered)))
        seen = corner.replace("#.......#", "#.3.....#", 1)  # while a bomb in sight does change them
        assert not np.array_equal(actions_of(opponent, games_in(corner)), actions_of(opponent, games_in(seen)))


@pytest.mark.parametrize("opponent", [FilteredRandomOpponent(), ExpertOpponent()], ids=["filtered", "expert"])
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


def breadth_first(start: tuple[int, int], walkable: np.ndarray, seen: np.ndarray, depth: int) -> dict:
    """{cell: steps} from `start` by a plain queue: every seen cell next to a cell it can leave (the
    start or a walkable one), up to `depth` steps."""
    size = walkable.shape[0]
    steps, queue = {start: 0}, [start]
    for row, col in queue:
        if steps[(row, col)] == depth or ((row, col) != start and not walkable[row, col]):
            continue
        for d_row, d_col in MOVES[1:5]:
            cell = (row + d_row, col + d_col)
            if 0 <= cell[0] < size and 0 <= cell[1] < size and seen[cell] and cell not in steps:
                steps[cell] = steps[(row, col)] + 1
                queue.append(cell)
    return steps


@pytest.mark.parametrize("partial", [False, True])
def test_distances_from_agents_are_breadth_first_and_first_moves_start_shortest_paths(partial):
    engine = BomberEngine(BomberConfig.ffa(partial=partial), 8, seed=4)
    rng = np.random.default_rng(4)
    for _ in range(15):
        engine.step(rng.choice(6, size=(8, 4), p=[0.1, 0.15, 0.15, 0.15, 0.15, 0.3]))
        engine.reset(np.flatnonzero(engine.over))
    games, agents = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    view = observe_pairs(engine, games, agents)
    walkable = walkable_cells(view)
    steps, first_moves = distances_from_agents(view, walkable, 6)
    for pair in range(len(games)):
        here = (int(view.row[pair]), int(view.col[pair]))
        expected = np.full(steps.shape[1:], NEVER)
        for cell, distance in breadth_first(here, walkable[pair], view.seen[pair], 6).items():
            expected[cell] = distance
        assert np.array_equal(steps[pair], expected)
        # a first move starts a shortest path: from the cell it leads to, the rest is one step shorter
        for bit, (d_row, d_col) in enumerate(MOVES[1:5]):
            start = (here[0] + d_row, here[1] + d_col)
            if not (0 <= start[0] < engine.size and 0 <= start[1] < engine.size) or expected[start] != 1:
                continue
            onward = breadth_first(start, walkable[pair], view.seen[pair], 5) if walkable[pair][start] else {start: 0}
            for cell in zip(*np.nonzero(expected < NEVER)):
                on_a_shortest_path = expected[cell] >= 1 and onward.get(cell, NEVER) == expected[cell] - 1
                assert bool(first_moves[pair][cell] >> bit & 1) == on_a_shortest_path


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


# -- the expert ---------------------------------------------------------------------------------
def test_expert_lays_a_bomb_next_to_wood_when_it_can_escape():
    assert np.all(actions_of(ExpertOpponent(), games_in(CORRIDOR)) == BOMB)
    assert BOMB not in actions_of(ExpertOpponent(), games_in(DEAD_END))


def test_expert_escapes_its_own_bomb_in_a_corridor():
    engine = games_in(CORRIDOR, num_games=64)
    opponent, rng = ExpertOpponent(), np.random.default_rng(0)
    games = np.arange(64)
    wood = engine.board[:, 3 * engine.size + 1] == WOOD
    assert wood.all()
    for _ in range(15):  # the bomb, ten steps to its blast, the flames, and a little more
        actions = np.zeros((64, 2), np.int64)
        actions[:, 0] = opponent.act(engine, games, np.zeros(64, np.int64), rng)
        engine.step(actions)
        assert engine.alive[:, 0].all()
    assert not (engine.board[:, 3 * engine.size + 1] == WOOD).any()  # its bomb burnt the wood


def test_expert_picks_up_a_power_up_next_to_it():
    engine = games_in(POWER_UP)
    actions = actions_of(ExpertOpponent(), engine)
    assert (actions == RIGHT).mean() > 0.8
    engine.step(np.stack([actions, np.zeros_like(actions)], axis=1))
    assert (engine.blast[:, 0] == 3).mean() > 0.8


def test_expert_runs_from_a_blast_it_is_in():
    engine = games_in(THREATS.replace("a.1", ".a1"))  # now next to the bomb that bursts next step
    actions = actions_of(ExpertOpponent(), engine)
    after = np.array([cell_after(engine, action) for action in actions])
    schedule = burn_schedule(observe_pairs(engine, np.arange(engine.num_games), np.zeros(engine.num_games, int)))
    assert not burns_at(schedule, 1).reshape(engine.num_games, -1)[0, after].any()
    assert not np.isin(actions, [STOP, BOMB, RIGHT]).any()


# -- the rule-based player ----------------------------------------------------------------------
def rule_games(picture: str, steps: int = 10) -> BomberEngine:
    """Copies of the position in `picture`, in the middle of a game (so that the rule player's
    memory carries over from one step to the next)."""
    engine = games_in(picture)
    engine.steps[:] = steps
    return engine


def with_own_bomb_under_a(engine: BomberEngine) -> BomberEngine:
    """The position with agent 0 on a bomb it has just laid (strength 2)."""
    cell = engine.position[:, 0]
    games = np.arange(engine.num_games)
    engine.bomb_owner[games, cell], engine.bomb_life[games, cell], engine.bomb_strength[games, cell] = 0, 9, 2
    engine.ammo[:, 0] = 0
    return engine


def test_rule_flees_a_bomb_in_line_whatever_its_timer():
    actions = actions_of(RuleOpponent(), rule_games(OPEN.replace("#...a...#", "#...a.9.#")))
    assert set(actions) == {UP, DOWN, LEFT}  # any move but toward the bomb; it does not wait
    # three cells away the bomb's strength (2) does not reach: it wanders, but not into its line
    actions = actions_of(RuleOpponent(), rule_games(OPEN.replace("#...a...#", "#...a..9#")))
    assert set(actions) == {UP, DOWN, LEFT}


def test_rule_on_its_own_bomb_leaves_by_the_first_way_that_is_not_a_short_straight_dead_end():
    assert np.all(actions_of(RuleOpponent(), with_own_bomb_under_a(rule_games(CORRIDOR))) == RIGHT)
    short = CORRIDOR.replace("#Wa.....#", "#Wa..#..#")  # two cells, then a wall: stuck there
    assert np.all(actions_of(RuleOpponent(), with_own_bomb_under_a(rule_games(short))) == STOP)
    side_exit = short.splitlines()
    side_exit[3] = "####.####"  # a way off the line, next to the second cell
    assert np.all(actions_of(RuleOpponent(), with_own_bomb_under_a(rule_games("\n".join(side_exit)))) == RIGHT)


def test_rule_bombs_an_adjacent_enemy_only_with_ammo_and_a_way_out():
    next_to_enemy = OPEN.replace("#...a...#", "#...ab..#").replace("#......b#", "#.......#")
    assert np.all(actions_of(RuleOpponent(), rule_games(next_to_enemy)) == BOMB)
    engine = rule_games(next_to_enemy)
    engine.ammo[:, 0] = 0
    assert BOMB not in actions_of(RuleOpponent(), engine)
    cornered = DEAD_END.replace("#Wa.#", "#Wab#").replace("#......b#", "#.......#")  # no free cell to go to
    assert np.all(actions_of(RuleOpponent(), rule_games(cornered)) == RIGHT)  # it walks at the enemy instead


def test_rule_approaches_an_enemy_within_three_steps_and_breaks_standoffs():
    engine = rule_games(OPEN.replace("#...a...#", "#...a..b#").replace("#......b#", "#.......#"))
    opponent = RuleOpponent()
    assert np.all(actions_of(opponent, engine) == RIGHT)
    again = actions_of(opponent, engine, seed=1)  # the same move toward it again: only every other time
    assert 0.45 < (again == RIGHT).mean() < 0.85 and LEFT in again
    farther = rule_games(OPEN.replace("#...a...#", "#..a...b#").replace("#......b#", "#.......#"))
    assert (actions_of(RuleOpponent(), farther) == RIGHT).mean() < 0.5  # four steps away: it wanders


def test_rule_takes_a_power_up_within_two_steps():
    assert np.all(actions_of(RuleOpponent(), rule_games(POWER_UP)) == RIGHT)
    assert np.all(actions_of(RuleOpponent(), rule_games(POWER_UP.replace("a*.", "a.*"))) == RIGHT)
    three_away = POWER_UP.replace("#...a*..#", "#...a..*#")
    assert (actions_of(RuleOpponent(), rule_games(three_away)) == RIGHT).mean() < 0.5


def test_rule_bombs_adjacent_wood_with_a_way_out_and_else_waits():
    assert np.all(actions_of(RuleOpponent(), rule_games(CORRIDOR)) == BOMB)
    assert np.all(actions_of(RuleOpponent(), rule_games(DEAD_END)) == STOP)


def test_rule_heads_for_wood_two_steps_away_unless_the_step_is_in_line_of_a_bomb():
    wood = OPEN.replace("#...a...#", "#...a.W.#")
    assert np.all(actions_of(RuleOpponent(), rule_games(wood)) == RIGHT)
    bomb_above = wood.splitlines()
    bomb_above[3] = "#....9..#"  # two rows above the step toward the wood: that cell is in its line
    actions = actions_of(RuleOpponent(), rule_games("\n".join(bomb_above)))
    assert RIGHT not in actions and set(actions) <= {UP, DOWN, LEFT, STOP}


WALK = CORRIDOR.replace("#Wa.....#", "#a......#")


def walk_the_corridor(steps: int, seed: int = 0) -> tuple[BomberEngine, RuleOpponent, np.random.Generator]:
    """Agent 0 of every game wanders `steps` steps from the left end of a corridor."""
    engine, opponent, rng = rule_games(WALK), RuleOpponent(), np.random.default_rng(seed)
    games = np.arange(engine.num_games)
    for _ in range(steps):
        actions = np.zeros((engine.num_games, 2), np.int64)
        actions[:, 0] = opponent.act(engine, games, np.zeros_like(games), rng)
        engine.step(actions)
    return engine, opponent, rng


def test_rule_avoids_its_recently_visited_cells():
    """With nothing to go for it wanders, but not back to its last cells: along a corridor it walks
    straight to the end (a random walk would turn back now and then) and waits there."""
    engine, opponent, rng = walk_the_corridor(6)
    assert np.all(engine.position[:, 0] == 3 * engine.size + 7)
    assert np.all(actions_of(opponent, engine) == STOP)


def test_rule_memory_is_cleared_when_a_game_restarts_and_fits_each_engine():
    engine, opponent, rng = walk_the_corridor(3)
    games = np.arange(engine.num_games)
    engine.reset(np.array([0]))
    opponent.act(engine, games, np.zeros_like(games), rng)
    remembered = (opponent.recent[:, 0] >= 0).sum(1)
    assert remembered[0] <= 1 and np.all(opponent.enemy_move[0] == -1)  # at most its cell of this step
    assert np.all(remembered[1:] == 4)  # the other games go on
    ffa = BomberEngine(BomberConfig.ffa(), 3, seed=0)
    opponent.act(ffa, np.arange(3), np.full(3, 2), rng)
    assert opponent.recent.shape == (3, 4, RECENT) and opponent.enemy_move.shape == (3, 4)


def test_rule_pickled_mid_game_goes_on_as_before():
    engine, opponent, rng = walk_the_corridor(2)
    copy, rng_copy = pickle.loads(pickle.dumps((opponent, rng)))
    games = np.arange(engine.num_games)
    for _ in range(3):
        actions = opponent.act(engine, games, np.zeros_like(games), rng)
        assert np.array_equal(copy.act(engine, games, np.zeros_like(games), rng_copy), actions)
        engine.step(np.stack([actions, np.zeros_like(actions)], axis=1))


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
    assert duel_score("rule", "random") >= 0.75


def test_filtered_beats_random():
    assert duel_score("filtered", "random") >= 0.7


def test_filtered_outlives_rule():
    # as in the original game, where a random player with an action filter wins more free-for-all
    # games against rule-based agents than they do: the rule agent dies by its own bombs
    assert duel_score("filtered", "rule", num_games=128) >= 0.55


def test_expert_beats_filtered():
    assert duel_score("expert", "filtered", num_games=128) >= 0.75


def test_expert_beats_rule():
    assert duel_score("expert", "rule", num_games=32) >= 0.75


@pytest.mark.parametrize("name", ["rule", "expert"])
def test_opponent_cost_is_seconds_per_call(name):
    cost = opponent_cost(name, BomberConfig.duel(), num_games=16, steps=3)
    assert 0.0 < cost < 1.0
