"""The rules of Bomber on hand-made boards, each checked on the reference game and the batched engine
together: blasts at walls and edges, wood and power-ups, chain reactions, kicks, simultaneous
moves, deaths and rewards in both modes, the view window at the board's edge, the step limit."""

import numpy as np
import pytest

from bellmax.envs.bomber.config import (
    BOMB,
    DOWN,
    EXTRA_BOMB,
    KICK,
    LEFT,
    NO_ITEM,
    PASSAGE,
    RANGE,
    RIGHT,
    STOP,
    UP,
    WOOD,
    BomberConfig,
    Rewards,
)
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.layout import random_layout
from bellmax.envs.bomber.observe import CHANNELS, FOG, dict_observation, planes
from bellmax.envs.bomber.reference import Agent, Bomb, Game

CELL = {".": PASSAGE, "#": 1, "w": WOOD}


def position(rows: list[str], config: BomberConfig | None = None, bombs: dict | None = None,
             items: dict | None = None, **agent_changes: dict) -> tuple[Game, BomberEngine]:
    """A game from a map (one string per row, cells separated by spaces: `.` passage, `#` rigid,
    `w` wood, a digit: that agent on a passage); bombs {(r, c): (life, strength, owner)}, items
    {(r, c): kind}; agent_changes a{i}=dict(ammo=..., blast=..., can_kick=...). Agents not on the map
    are dead. Returns the reference game and a one-game engine holding the same state."""
    grid = [row.split() for row in rows]
    size = len(grid)
    config = config or BomberConfig(size=size, num_agents=2, rigid=0, wood=0, items=0)
    board = np.zeros((size, size), np.int8)
    agents = [Agent((0, 0), alive=False, done=True) for _ in range(config.num_agents)]
    for r, row in enumerate(grid):
        for c, token in enumerate(row):
            if token.isdigit():
                agents[int(token)] = Agent((r, c))
            else:
                board[r, c] = CELL[token]
    item_grid = np.zeros_like(board)
    for cell, kind in (items or {}).items():
        item_grid[cell] = kind
    for name, changes in agent_changes.items():
        for key, value in changes.items():
            setattr(agents[int(name[1:])], key, value)
    game = Game(config, board, item_grid, agents)
    for cell, (life, strength, owner) in (bombs or {}).items():
        game.bombs[cell] = Bomb(life, strength, owner)
    engine = BomberEngine(config, 1)
    engine.set_state(0, {**game.state(), "done": np.array([agent.done for agent in agents])})
    return game, engine


def step(game: Game, engine: BomberEngine, *actions: int) -> list[float]:
    """One step of both; they must agree on every array of the state and on the rewards."""
    expected = game.step(list(actions))
    rewards = engine.step(np.array([actions]))[0]
    assert np.allclose(rewards, expected)
    for key, value in game.state().items():
        assert np.array_equal(np.asarray(engine.state(0)[key]), np.asarray(value)), key
    return expected


def burning(game: Game) -> set[tuple[int, int]]:
    return set(game.flames)


def test_a_blast_reaches_strength_minus_one_cells_stops_before_rigid_walls_and_at_the_board_edge():
    game, engine = position([". . . . . .",
                             ". . # . . .",
                             ". . . . . 0",
                             ". . . . . .",
                             ". . . . . .",
                             ". . . . . 1"], bombs={(2, 2): (1, 3, 0)})
    step(game, engine, STOP, STOP)
    # strength 3: the bomb's cell and two cells each way; up is blocked at once by the rigid wall
    assert burning(game) == {(2, 2), (2, 0), (2, 1), (2, 3), (2, 4), (3, 2), (4, 2)}
    game, engine = position(["0 . . . .", ". . . . .", ". . . . .", ". . . . .", ". . . . 1"],
                            bombs={(0, 1): (1, 4, 0)})
    step(game, engine, STOP, STOP)  # the edge cuts the blast; agent 0 stands in it
    assert burning(game) == {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (2, 1), (3, 1)}
    assert not game.agents[0].alive and game.agents[1].alive


def test_flames_burn_the_first_wooden_wall_revealing_its_power_up_and_destroy_visible_power_ups():
    game, engine = position([". . . . . 0",
                             ". . . . . .",
                             ". w . . w .",
                             ". . . . . .",
                             ". . . . . .",
                             ". . . . . 1"], bombs={(2, 2): (1, 4, 0)},
                            items={(2, 1): RANGE, (2, 4): KICK, (3, 2): EXTRA_BOMB})
    step(game, engine, STOP, STOP)
    assert (2, 0) not in burning(game)  # stopped at the first wood
    assert game.board[2, 1] == PASSAGE and game.items[2, 1] == RANGE  # burnt down, power-up revealed
    assert game.board[2, 4] == PASSAGE and game.items[2, 4] == KICK
    assert (2, 5) not in burning(game)
    assert game.items[3, 2] == NO_ITEM  # a power-up lying in the open burns


def test_a_chain_reaction_sets_off_every_bomb_in_the_same_step_and_returns_ammo():
    game, engine = position([". . . . . . 0",
                             ". . . . . . .",
                             ". . . . . . .",
                             ". . . . . . .",
                             ". . . . . . .",
                             ". . . . . . .",
                             ". . . . . . 1"],
                            bombs={(3, 0): (1, 2, 0), (3, 1): (8, 3, 1), (5, 2): (9, 2, 0), (3, 3): (9, 2, 1)},
                            a0={"ammo": 0}, a1={"ammo": 0})
    step(game, engine, STOP, STOP)
    # (3,0) at life 0 reaches (3,1); that one (strength 3) reaches (3,3); (5,2) is out of reach
    assert set(game.bombs) == {(5, 2)}
    assert {(3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (1, 1), (5, 1), (2, 3), (4, 3)} <= burning(game)
    assert [agent.ammo for agent in game.agents] == [1, 2]


def test_flames_burn_for_two_steps_and_kill_whoever_walks_in():
    rows = [". . . . .", ". . . . .", ". . . . .", ". . . . .", "0 . . . 1"]
    game, engine = position(rows, bombs={(1, 1): (1, 2, 1)})
    step(game, engine, STOP, STOP)
    assert game.flames[(1, 1)] == 2
    step(game, engine, UP, STOP)  # agent 0 walks up to (3, 0), out of reach
    step(game, engine, STOP, STOP)
    assert game.flames == {}  # the flames lived two steps
    game, engine = position(rows, bombs={(2, 0): (1, 2, 1)})
    step(game, engine, STOP, STOP)
    rewards = step(game, engine, UP, STOP)  # into flames still burning
    assert not game.agents[0].alive and rewards == [-1.0, 1.0] and game.over


def test_laying_a_bomb_costs_ammo_needs_ammo_and_a_free_cell():
    game, engine = position([". . . . .", ". 0 . . .", ". . . . .", ". . . . .", ". . . . 1"])
    step(game, engine, BOMB, STOP)
    assert (1, 1) in game.bombs and game.agents[0].ammo == 0
    assert game.bombs[(1, 1)].life == 9  # laid with 10, one tick in its first step
    step(game, engine, BOMB, STOP)  # no ammo left: nothing happens
    assert len(game.bombs) == 1


def test_power_ups_raise_ammo_and_blast_and_give_the_kick():
    game, engine = position([". . . . .", "0 . . . .", ". . . . .", ". . . . .", ". . . . 1"],
                            items={(1, 1): EXTRA_BOMB, (0, 0): RANGE, (4, 3): KICK},
                            config=BomberConfig(size=5, num_agents=2, rigid=0, wood=0, items=0,
                                                rewards=Rewards(powerup=0.5)))
    rewards = step(game, engine, RIGHT, LEFT)
    assert rewards == [0.5, 0.5] and game.agents[0].ammo == 2 and game.agents[1].can_kick
    step(game, engine, UP, STOP)
    step(game, engine, LEFT, STOP)
    assert game.agents[0].blast == 3 and game.items[0, 0] == NO_ITEM


def test_a_kick_slides_the_bomb_to_the_last_free_cell_and_without_the_kick_the_move_is_refused():
    rows = ["0 . . . # .",
            ". . . . . .",
            ". . . . . .",
            ". . . . . .",
            ". . . . . .",
            ". . . . . 1"]
    game, engine = position(rows, bombs={(0, 1): (5, 2, 1)}, a0={"can_kick": True})
    step(game, engine, RIGHT, STOP)
    assert game.agents[0].position == (0, 1) and set(game.bombs) == {(0, 3)}  # stopped by the rigid wall
    game, engine = position(rows, bombs={(0, 1): (5, 2, 1)})
    step(game, engine, RIGHT, STOP)
    assert game.agents[0].position == (0, 0) and set(game.bombs) == {(0, 1)}
    game, engine = position(["0 . 1 . .", ". . . . .", ". . . . .", ". . . . .", ". . . . ."],
                            bombs={(0, 1): (5, 2, 1)}, a0={"can_kick": True})
    step(game, engine, RIGHT, STOP)  # an agent right behind the bomb: it cannot slide, no kick
    assert game.agents[0].position == (0, 0) and set(game.bombs) == {(0, 1)}


def test_kicked_bombs_whose_slides_overlap_both_fail():
    game, engine = position(["0 . . . . 1", ". . . . . .", ". . . . . .", ". . . . . .", ". . . . . .",
                             ". . . . . ."], bombs={(0, 1): (5, 2, 0), (0, 4): (5, 2, 1)},
                            a0={"can_kick": True}, a1={"can_kick": True})
    step(game, engine, RIGHT, LEFT)
    assert [a.position for a in game.agents] == [(0, 0), (0, 5)] and set(game.bombs) == {(0, 1), (0, 4)}


@pytest.mark.parametrize(("first_row", "actions", "after"), [
    ("0 1 . . .", (RIGHT, LEFT), [(0, 0), (0, 1)]),  # swapping cells: both stay
    ("0 . 1 . .", (RIGHT, LEFT), [(0, 0), (0, 2)]),  # the same target: both stay
    ("0 1 . . .", (RIGHT, STOP), [(0, 0), (0, 1)]),  # into an agent that stays
    ("0 1 . . .", (RIGHT, RIGHT), [(0, 1), (0, 2)]),  # following one that leaves
    ("0 1 # . .", (RIGHT, RIGHT), [(0, 0), (0, 1)]),  # ... who bounces off a wall
])
def test_simultaneous_moves_bounce_back_alike_for_everyone_involved(first_row, actions, after):
    game, engine = position([first_row] + [". . . . ."] * 4)
    step(game, engine, *actions)
    assert [agent.position for agent in game.agents] == after


def test_moves_into_bombs_walls_and_off_the_board_are_refused():
    game, engine = position(["0 w . . .", "# . . . .", ". . . . .", ". . . . .", ". . . . 1"])
    for action in (UP, LEFT, RIGHT, DOWN):
        step(game, engine, action, STOP)
        assert game.agents[0].position == (0, 0)
    game, engine = position(["0 . . . .", ". . . . .", ". . . . .", ". . . . .", ". . . . 1"],
                            bombs={(0, 1): (5, 2, 1)})
    step(game, engine, RIGHT, STOP)  # into a bomb (no kick)
    assert game.agents[0].position == (0, 0)


def test_free_for_all_rewards_the_last_agent_standing_and_punishes_each_death_once():
    config = BomberConfig(size=5, num_agents=4, rigid=0, wood=0, items=0)
    game, engine = position(["0 . . . 1", ". . . . .", ". . . . .", ". . . . .", "3 . . . 2"], config=config,
                            bombs={(0, 2): (1, 3, 1)})
    rewards = step(game, engine, STOP, STOP, STOP, STOP)
    assert rewards == [-1.0, -1.0, 0.0, 0.0] and not game.over  # both in the blast
    game.bombs[(4, 1)] = Bomb(1, 2, 2)
    engine.set_state(0, {**game.state(), "done": np.array([a.done for a in game.agents])})
    rewards = step(game, engine, STOP, STOP, STOP, STOP)
    assert rewards == [0.0, 0.0, 1.0, -1.0] and game.over and game.winners() == [2]


def test_a_simultaneous_death_of_the_last_agents_is_a_draw():
    game, engine = position(["0 . 1 . .", ". . . . .", ". . . . .", ". . . . .", ". . . . ."],
                            bombs={(0, 1): (1, 2, 0)})
    rewards = step(game, engine, STOP, STOP)
    assert rewards == [-1.0, -1.0] and game.over and game.winners() == []


def test_team_mode_settles_by_team_and_a_dead_agent_shares_its_teams_win():
    config = BomberConfig(size=5, num_agents=4, rigid=0, wood=0, items=0, mode="team")
    game, engine = position(["0 . . . 1", ". . . . .", ". . . . .", ". . . . .", "3 . . . 2"], config=config,
                            bombs={(0, 1): (1, 2, 0), (0, 3): (1, 2, 1)})  # kills agent 0 (team 0), agent 1 (team 1)
    rewards = step(game, engine, STOP, STOP, STOP, STOP)
    assert rewards == [0.0, 0.0, 0.0, 0.0] and not game.over  # both teams have an agent left
    game.bombs[(3, 0)] = Bomb(1, 2, 2)  # now agent 3, the last of team 1
    engine.set_state(0, {**game.state(), "done": np.array([a.done for a in game.agents])})
    rewards = step(game, engine, STOP, STOP, STOP, STOP)
    assert rewards == [1.0, -1.0, 1.0, -1.0] and game.over and game.winners() == [0, 2]


def test_kills_and_wood_are_credited_to_the_bombs_owner_with_shaping():
    config = BomberConfig(size=5, num_agents=4, rigid=0, wood=0, items=0, rewards=Rewards(kill=100.0, wood=0.5,
                                                                                          step=-2.0))
    game, engine = position(["0 . . . 1", ". . . . .", "w . . . .", ". . . . .", "3 . . . 2"], config=config,
                            bombs={(1, 0): (1, 3, 2)})
    rewards = step(game, engine, STOP, STOP, STOP, STOP)
    # agent 2's bomb kills agent 0 and burns one wooden wall; the living pay the step cost
    assert rewards == [-1.0, -2.0, 100.0 + 0.5 - 2.0, -2.0]


def test_the_step_limit_ends_the_game_with_a_loss_for_everyone_left():
    config = BomberConfig(size=5, num_agents=2, rigid=0, wood=0, items=0, max_steps=3)
    game, engine = position(["0 . . . .", ". . . . .", ". . . . .", ". . . . .", ". . . . 1"], config=config)
    assert step(game, engine, STOP, STOP) == [0.0, 0.0]
    step(game, engine, STOP, STOP)
    assert step(game, engine, STOP, STOP) == [-1.0, -1.0] and game.over and game.winners() == []


def test_the_view_window_marks_the_board_edge_as_walls_and_hides_what_is_out_of_sight():
    config = BomberConfig(size=8, num_agents=2, rigid=0, wood=0, items=0, partial=True, view_radius=2)
    rows = ["0 . . . . . . .", ". . . w . . . .", ". . . . . . .", ". . . . . . . .", ". . . . . . . .",
            ". . . . . . . .", ". . . . . . . .", ". . . . . . . 1"]
    rows[2] = ". . . . . . . ."
    game, engine = position(rows, config=config, bombs={(0, 2): (5, 2, 1), (0, 3): (5, 2, 1)})
    window = planes(engine)[0, 0]  # agent 0 at (0, 0), a 5x5 window centred on it
    rigid, wood, bomb = (window[CHANNELS.index(name)] for name in ("rigid", "wood", "bomb_life"))
    assert window.shape == (len(CHANNELS), 5, 5)
    assert rigid[:2].all() and rigid[:, :2].all() and not rigid[2:, 2:].any()  # off the board: walls
    assert bomb[2, 4] == 0.5 and bomb.sum() == 0.5  # the bomb at (0, 2) is seen, the one at (0, 3) is not
    assert not wood.any()  # the wood at (1, 3) is out of sight
    seen = dict_observation(engine, 0, 0)
    assert seen["board"][0, 3] == FOG and seen["board"][0, 2] == 3 and seen["board"][2, 2] == PASSAGE
    assert seen["bomb_life"][0, 3] == 0 and seen["position"] == (0, 0)
    full = planes(BomberEngine(BomberConfig.ffa(), 1, seed=0))[0, 0]
    assert full.shape == (len(CHANNELS), 21, 21)  # fully observed: the whole board from any cell


def test_the_same_seed_draws_the_same_boards_and_plays_the_same_games():
    def trajectory(seed):
        engine = BomberEngine(BomberConfig.ffa(), 8, seed=seed)
        rng = np.random.default_rng(seed)
        states = []
        for _ in range(60):
            engine.reset(np.flatnonzero(engine.over))
            engine.step(rng.integers(6, size=(8, 4)))
            states.append(engine.board.copy())
        return np.stack(states)

    assert np.array_equal(trajectory(5), trajectory(5)) and not np.array_equal(trajectory(5), trajectory(6))
    a, b = random_layout(BomberConfig.duel(), np.random.default_rng(3)), random_layout(BomberConfig.duel(),
                                                                                       np.random.default_rng(3))
    assert np.array_equal(a.board, b.board) and np.array_equal(a.items, b.items)
