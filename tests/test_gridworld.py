"""The lecture's gridworld: its MDP (cells "x,y", walls, exits, slips) and its Gymnasium env."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bellmax.envs.gridworld import (
    ACTION_NAMES,
    LECTURE_LAYOUT,
    GridWorldEnv,
    gridworld_mdp,
    parse_layout,
)
from bellmax.errors import BellmaxError
from bellmax.tabular import value_iteration

UP, DOWN, LEFT, RIGHT = (ACTION_NAMES.index(name) for name in ("up", "down", "left", "right"))


@pytest.fixture(scope="module")
def lecture_mdp():
    return gridworld_mdp(noise=0.2, living_reward=0.0)


def p(mdp, cell, action, next_cell):
    return mdp.P[mdp.state_index(cell), action, mdp.state_index(next_cell)]


# --------------------------------------------------------------------------------- the MDP


def test_lecture_map_has_eleven_cells_plus_one_absorbing_terminal_state(lecture_mdp):
    assert lecture_mdp.n_states == 12 and lecture_mdp.n_actions == 4
    assert "2,2" not in lecture_mdp.state_names  # the wall
    assert lecture_mdp.state_names[-1] == "terminal"
    assert lecture_mdp.terminal.tolist() == [False] * 11 + [True]
    assert lecture_mdp.initial_distribution[lecture_mdp.state_index("1,1")] == 1.0


def test_cells_are_named_x_right_y_up_as_in_the_lecture(lecture_mdp):
    # Right from 3,3 reaches the +1 exit at 4,3; up from 4,1 reaches the -1 exit at 4,2;
    # down from 4,1 hits the bottom border and right from 1,2 hits the wall at 2,2.
    deterministic = gridworld_mdp(noise=0.0)
    assert p(deterministic, "3,3", RIGHT, "4,3") == 1.0
    assert p(deterministic, "4,1", UP, "4,2") == 1.0
    assert p(deterministic, "4,1", DOWN, "4,1") == 1.0
    assert p(deterministic, "1,2", RIGHT, "1,2") == 1.0


def test_action_succeeds_with_one_minus_noise_and_slips_perpendicular(lecture_mdp):
    # From 1,1 "up": 0.8 to 1,2; slip right 0.1 to 2,1; slip left 0.1 bumps the border (stay).
    assert p(lecture_mdp, "1,1", UP, "1,2") == pytest.approx(0.8)
    assert p(lecture_mdp, "1,1", UP, "2,1") == pytest.approx(0.1)
    assert p(lecture_mdp, "1,1", UP, "1,1") == pytest.approx(0.1)
    # From 3,3 "right": 0.8 to 4,3; slip up bumps the border (stay at 3,3); slip down to 3,2.
    assert p(lecture_mdp, "3,3", RIGHT, "4,3") == pytest.approx(0.8)
    assert p(lecture_mdp, "3,3", RIGHT, "3,3") == pytest.approx(0.1)
    assert p(lecture_mdp, "3,3", RIGHT, "3,2") == pytest.approx(0.1)


def test_every_action_in_an_exit_cell_collects_the_exit_reward_and_terminates(lecture_mdp):
    terminal = lecture_mdp.n_states - 1
    for cell, reward in (("4,3", 1.0), ("4,2", -1.0)):
        s = lecture_mdp.state_index(cell)
        assert np.all(lecture_mdp.P[s, :, terminal] == 1.0)
        assert np.all(lecture_mdp.R[s, :, terminal] == reward)
        assert not lecture_mdp.decision_states()[s]


def test_living_reward_is_received_on_every_move_from_a_non_exit_cell():
    mdp = gridworld_mdp(noise=0.2, living_reward=-0.04)
    exits = [mdp.state_index("4,3"), mdp.state_index("4,2")]
    non_exit = np.setdiff1d(np.flatnonzero(~mdp.terminal), exits)
    np.testing.assert_allclose(mdp.expected_reward[non_exit], -0.04)
    np.testing.assert_allclose(mdp.expected_reward[exits, 0], [1.0, -1.0])


def test_text_map_with_numeric_exits_and_custom_start():
    mdp = gridworld_mdp(noise=0.0, layout=["S . 10", ". # -2.5"])
    assert mdp.state_names == ("1,2", "2,2", "3,2", "1,1", "3,1", "terminal")
    assert mdp.initial_distribution[mdp.state_index("1,2")] == 1.0
    V = value_iteration(mdp, gamma=1.0).V
    assert V[mdp.state_index("3,2")] == 10.0
    assert V[mdp.state_index("3,1")] == -2.5
    assert V[mdp.state_index("1,1")] == 10.0
    # Compact form with "/" row separators parses the same as the lecture's tuple of rows.
    assert parse_layout("...+/.#.-/S...") == parse_layout(LECTURE_LAYOUT)


@pytest.mark.parametrize(
    "layout, message",
    [
        (["...+", ".#"], "same number of cells"),
        (["..x+"], "'x'"),
        (["S..S", "...+"], "start cells"),
        (["...."], "no exit"),
        (["...+", ".#.-"], "has 0 start cells 'S'; mark exactly one"),
        ([], "empty"),
    ],
)
def test_bad_text_map_raises_a_clear_error(layout, message):
    with pytest.raises(BellmaxError, match=message):
        gridworld_mdp(layout=layout)


@pytest.mark.parametrize("noise", [-0.1, 1.5, float("nan")])
def test_noise_outside_unit_interval_is_rejected(noise):
    with pytest.raises(BellmaxError, match="noise"):
        gridworld_mdp(noise=noise)


# ------------------------------------------------------------------------------- the env


@pytest.mark.filterwarnings("ignore:.*alternative render modes")  # needs gymnasium.make's spec
def test_env_passes_gymnasium_env_checker():
    check_env(GridWorldEnv(render_mode="ansi"), skip_render_check=False)


def test_env_maps_state_index_to_lecture_cell_names():
    env = GridWorldEnv()
    observation, info = env.reset(seed=0)
    assert env.state_name(observation) == "1,1" == info["cell"]
    assert env.state_index("4,3") == env.mdp.state_index("4,3")
    assert env.observation_space.n == env.mdp.n_states
    with pytest.raises(BellmaxError, match="did you mean"):
        env.state_index("4;3")


def test_exit_action_terminates_with_exit_reward():
    env = GridWorldEnv(noise=0.0, layout=["S+"])
    env.reset(seed=0)
    observation, reward, terminated, _, info = env.step(RIGHT)
    assert info["cell"] == "2,1" and reward == 0.0 and not terminated
    observation, reward, terminated, truncated, info = env.step(UP)
    assert reward == 1.0 and terminated and not truncated
    assert env.mdp.terminal[observation] and info["cell"] == "terminal"


def test_same_seed_gives_the_same_trajectory():
    def trajectory(seed):
        env = GridWorldEnv(noise=0.5, living_reward=-0.1)
        env.action_space.seed(seed)
        observation, _ = env.reset(seed=seed)
        steps = [observation]
        for _ in range(40):
            observation, reward, terminated, _, _ = env.step(env.action_space.sample())
            steps.append((observation, reward))
            if terminated:
                observation, _ = env.reset()
                steps.append(observation)
        return steps

    assert trajectory(3) == trajectory(3)
    assert trajectory(3) != trajectory(4)


def test_render_ansi_draws_agent_walls_and_exits():
    env = GridWorldEnv(render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.splitlines() == ["  .   .   .  +1", "  .   #   .  -1", "  A   .   .   ."]


def test_monte_carlo_return_of_optimal_policy_estimates_V_star():
    # Sampling from the env is sampling from the MDP: the mean discounted return of the greedy
    # optimal policy from 1,1 estimates V*(1,1) (within a few standard errors).
    gamma, episodes = 0.9, 3000
    env = GridWorldEnv(noise=0.2, living_reward=-0.02)
    solution = value_iteration(env.mdp, gamma=gamma)
    start = env.mdp.state_index("1,1")
    returns = np.empty(episodes)
    for episode in range(episodes):
        observation, _ = env.reset(seed=123 if episode == 0 else None)
        assert observation == start
        discounted_return, discount, terminated = 0.0, 1.0, False
        while not terminated and discount > 1e-8:
            observation, reward, terminated, _, _ = env.step(solution.policy[observation])
            discounted_return += discount * reward
            discount *= gamma
        returns[episode] = discounted_return
    standard_error = returns.std(ddof=1) / np.sqrt(episodes)
    assert abs(returns.mean() - solution.V[start]) < 4 * standard_error
