"""Exact methods on finite MDPs, checked against the lecture's worked gridworld examples, the
Bellman equations, Gymnasium's toy-text envs, and the `bellmax solve` command."""

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from bellmax.commands.solve import main as solve_main
from bellmax.envs.gridworld import gridworld_mdp
from bellmax.errors import BellmaxError
from bellmax.tabular import (
    TabularMDP,
    bellman_optimality_residual,
    from_gymnasium,
    policy_evaluation,
    policy_iteration,
    q_value_iteration,
    resolve_gymnasium_id,
    value_iteration,
)

GAMMA = 0.9


@pytest.fixture(scope="module")
def gridworld():
    """The lecture's stochastic case: actions succeed with probability 0.8."""
    return gridworld_mdp(noise=0.2, living_reward=0.0)


@pytest.fixture(scope="module")
def frozen_lake():
    return from_gymnasium("FrozenLake-v1")  # slippery 4x4


def values_by_name(mdp, V):
    return {name: V[mdp.state_index(name)] for name in mdp.state_names}


# ----------------------------------------------------------------- the lecture's gridworld


@pytest.mark.parametrize("solver", [value_iteration, q_value_iteration])
def test_deterministic_gridworld_gamma_one_horizon_100_matches_lecture(solver):
    # Slide: actions deterministically successful, gamma = 1, H = 100.
    mdp = gridworld_mdp(noise=0.0)
    V = values_by_name(mdp, solver(mdp, gamma=1.0, horizon=100).V)
    assert V["4,3"] == 1.0 and V["3,3"] == 1.0 and V["2,3"] == 1.0 and V["1,1"] == 1.0
    assert V["4,2"] == -1.0


@pytest.mark.parametrize("solver", [value_iteration, q_value_iteration])
def test_deterministic_gamma_one_policy_heads_for_plus_one_by_a_shortest_path(solver):
    # With gamma = 1 every route to +1 is worth 1, even bumping into a wall first; the greedy
    # policy breaks such ties towards the action that reaches the value soonest (the slide's
    # "moving right" at 3,3), and following it from every cell reaches +1.
    mdp = gridworld_mdp(noise=0.0)
    result = solver(mdp, gamma=1.0, horizon=100)
    names = mdp.action_names
    assert names[result.policy[mdp.state_index("3,3")]] == "right"
    assert names[result.policy[mdp.state_index("2,3")]] == "right"
    assert names[result.policy[mdp.state_index("3,2")]] == "up"
    for start in ["1,1", "2,1", "3,1", "4,1", "1,2", "3,2", "1,3", "2,3", "3,3"]:
        s, steps = mdp.state_index(start), 0
        while mdp.state_names[s] not in ("4,3", "4,2"):
            s = int(np.argmax(mdp.P[s, result.policy[s]]))
            steps += 1
            assert steps <= 6, f"policy from {start} does not reach an exit"
        assert mdp.state_names[s] == "4,3"


def test_value_iteration_to_convergence_terminates_for_gamma_one():
    for noise in (0.0, 0.2):
        result = value_iteration(gridworld_mdp(noise=noise), gamma=1.0)
        assert result.iterations < 1000
        assert bellman_optimality_residual(gridworld_mdp(noise=noise), result.V, 1.0) < 1e-8


def test_value_iteration_matches_bellman_fixed_point(gridworld):
    result = value_iteration(gridworld, gamma=GAMMA)
    # V*(s) = max_a sum_s' P(s'|s,a) (R(s,a,s') + gamma V*(s'))
    assert bellman_optimality_residual(gridworld, result.V, GAMMA) < 1e-8
    assert result.V[-1] == 0.0  # the absorbing terminal state bootstraps nothing


def test_value_q_value_and_policy_iteration_agree(gridworld):
    vi = value_iteration(gridworld, gamma=GAMMA)
    qvi = q_value_iteration(gridworld, gamma=GAMMA)
    pi = policy_iteration(gridworld, gamma=GAMMA)
    for result in (vi, qvi, pi):
        assert bellman_optimality_residual(gridworld, result.V, GAMMA) < 1e-8
        np.testing.assert_allclose(result.V, vi.V, atol=1e-6)
        np.testing.assert_array_equal(result.policy[:-1], vi.policy[:-1])
    # Q* = r + gamma P V*, and V* = max_a Q*
    np.testing.assert_allclose(qvi.Q, vi.Q, atol=1e-6)
    np.testing.assert_allclose(qvi.Q.max(axis=1), qvi.V)


def test_stochastic_gridworld_value_of_3_3_is_its_bellman_backup(gridworld):
    V = values_by_name(gridworld, value_iteration(gridworld, gamma=GAMMA).V)
    assert V["4,3"] == 1.0 and V["4,2"] == -1.0  # a terminal cell's value is its exit reward
    # Best action from 3,3 is "right": 0.8 reaches 4,3, 0.1 slips down to 3,2 and 0.1 slips up.
    # One slide writes V*(2,3) for the up-slip, but slipping up from 3,3 hits the border and
    # leaves the agent at 3,3, so the term is V*(3,3) (as the later slide has it).
    expected = 0.8 * 0.9 * V["4,3"] + 0.1 * 0.9 * V["3,3"] + 0.1 * 0.9 * V["3,2"]
    assert V["3,3"] == pytest.approx(expected, abs=1e-10)


LECTURE_V_STAR = {  # the lecture's values for noise 0.2, gamma 0.9, living reward 0, to three decimals
    "1,3": 0.645, "2,3": 0.744, "3,3": 0.848, "4,3": 1.0,
    "1,2": 0.566, "3,2": 0.572, "4,2": -1.0,
    "1,1": 0.491, "2,1": 0.431, "3,1": 0.475, "4,1": 0.277,
}


@pytest.mark.parametrize("solve", [
    lambda mdp: value_iteration(mdp, gamma=GAMMA, horizon=100),
    lambda mdp: q_value_iteration(mdp, gamma=GAMMA, horizon=100),
    lambda mdp: value_iteration(mdp, gamma=GAMMA),
    lambda mdp: policy_iteration(mdp, gamma=GAMMA),
], ids=["value-iteration-H100", "q-value-iteration-H100", "value-iteration", "policy-iteration"])
def test_stochastic_gridworld_values_match_the_lectures_three_decimals(gridworld, solve):
    # The slide's setting: actions succeed with probability 0.8, gamma = 0.9, H = 100; with gamma < 1
    # the values after 100 backups and at convergence agree far below the third decimal.
    result = solve(gridworld)
    V = values_by_name(gridworld, result.V)
    assert {name: round(float(V[name]), 3) for name in LECTURE_V_STAR} == LECTURE_V_STAR
    assert set(V) - set(LECTURE_V_STAR) == {"terminal"}  # and nothing else: the wall 2,2 is no state


def test_first_backup_is_zero_everywhere_but_the_exits(gridworld):
    # V_1(s) = max_a sum_s' P (R + gamma V_0), V_0 = 0: only exits pay within one step.
    V1 = values_by_name(gridworld, value_iteration(gridworld, gamma=GAMMA, horizon=1).V)
    assert V1.pop("4,3") == 1.0 and V1.pop("4,2") == -1.0
    assert all(v == 0.0 for v in V1.values())


def test_finite_horizon_history_holds_V_1_to_V_H(gridworld):
    H = 7
    result = value_iteration(gridworld, gamma=GAMMA, horizon=H)
    assert result.iterations == H and len(result.history) == H
    for k in (1, 4, H):  # V_k does not depend on how many more backups follow
        np.testing.assert_array_equal(
            result.history[k - 1], value_iteration(gridworld, gamma=GAMMA, horizon=k).V
        )
    assert value_iteration(gridworld, gamma=GAMMA, horizon=0).history == []
    # Q-value iteration's V_k = max_a Q_k(., a) is the same sequence.
    q_history = q_value_iteration(gridworld, gamma=GAMMA, horizon=H).history
    np.testing.assert_allclose(np.array(q_history), np.array(result.history), atol=1e-14)


def test_value_iteration_history_converges_monotonically_to_V_star(gridworld):
    result = value_iteration(gridworld, gamma=GAMMA)
    errors = [np.max(np.abs(V_k - result.V)) for V_k in result.history]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(errors, errors[1:]))


@pytest.mark.parametrize("method", ["iterative", "exact"])
def test_policy_evaluation_of_optimal_policy_returns_V_star(gridworld, method):
    optimal = value_iteration(gridworld, gamma=GAMMA)
    evaluation = policy_evaluation(gridworld, optimal.policy, GAMMA, method=method)
    np.testing.assert_allclose(evaluation.V, optimal.V, atol=1e-8)
    # V^pi for a stochastic policy given as pi(a|s): one-hot of the same policy, same values.
    one_hot = np.eye(gridworld.n_actions)[optimal.policy]
    np.testing.assert_allclose(
        policy_evaluation(gridworld, one_hot, GAMMA, method=method).V, optimal.V, atol=1e-8
    )


def test_uniform_random_policy_is_worse_than_optimal(gridworld):
    uniform = np.full((gridworld.n_states, gridworld.n_actions), 0.25)
    V_random = policy_evaluation(gridworld, uniform, GAMMA, method="exact").V
    V_star = value_iteration(gridworld, gamma=GAMMA).V
    assert np.all(V_random <= V_star + 1e-12) and V_random[0] < V_star[0]


def test_policy_iteration_converges_in_few_iterations(gridworld):
    result = policy_iteration(gridworld, gamma=GAMMA)
    assert result.iterations <= 6
    assert len(result.history) == result.iterations


def test_policy_iteration_with_gamma_one_and_negative_living_reward():
    # An improper start (looping forever at -0.04 per step) would have no finite value; the
    # default gamma = 1 start is a policy that reaches an exit.
    mdp = gridworld_mdp(noise=0.2, living_reward=-0.04)
    pi = policy_iteration(mdp, gamma=1.0)
    vi = value_iteration(mdp, gamma=1.0)
    np.testing.assert_allclose(pi.V, vi.V, atol=1e-6)


def test_divergent_values_raise_instead_of_looping_forever():
    mdp = gridworld_mdp(noise=0.2, living_reward=0.5)  # staying forever pays
    with pytest.raises(BellmaxError, match="did not converge"):
        value_iteration(mdp, gamma=1.0, max_iterations=500)


@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.01])
def test_gamma_outside_zero_one_is_rejected(gridworld, gamma):
    with pytest.raises(BellmaxError, match="gamma"):
        value_iteration(gridworld, gamma=gamma)


def test_tabular_mdp_validates_probabilities_and_shapes():
    P = np.zeros((2, 1, 2))
    P[:, 0, 1] = 1.0
    R = np.zeros_like(P)
    TabularMDP(P, R, [False, True], ("a", "end"), ("go",))
    bad = P.copy()
    bad[0, 0, 1] = 0.9
    with pytest.raises(BellmaxError, match="sums to 0.9"):
        TabularMDP(bad, R, [False, True], ("a", "end"), ("go",))
    with pytest.raises(BellmaxError, match="same shape"):
        TabularMDP(P, R[:, :, :1], [False, True], ("a", "end"), ("go",))
    with pytest.raises(BellmaxError, match="absorbing"):
        TabularMDP(P, R, [True, False], ("a", "end"), ("go",))


# -------------------------------------------------------------------- Gymnasium toy-text


def test_frozen_lake_done_transitions_lead_to_the_absorbing_state(frozen_lake):
    absorbing = frozen_lake.n_states - 1
    assert frozen_lake.n_states == 17 and frozen_lake.terminal[absorbing]
    assert frozen_lake.action_names == ("left", "down", "right", "up")
    # From 14 (left of the goal) "right" reaches the goal with 1/3 (it slips up or down
    # otherwise); that done=True transition goes to the absorbing state and keeps its reward 1.
    right = frozen_lake.action_names.index("right")
    assert frozen_lake.P[14, right, absorbing] == pytest.approx(1 / 3)
    assert frozen_lake.R[14, right, absorbing] == 1.0
    assert frozen_lake.P[14, right, 15] == 0.0  # the goal cell itself is never entered
    hole = 5
    np.testing.assert_array_equal(frozen_lake.P[hole, :, absorbing], 1.0)
    np.testing.assert_array_equal(frozen_lake.expected_reward[hole], 0.0)


def test_frozen_lake_solution_satisfies_bellman_and_matches_monte_carlo(frozen_lake):
    gamma = 0.99
    result = value_iteration(frozen_lake, gamma=gamma)
    assert bellman_optimality_residual(frozen_lake, result.V, gamma) < 1e-8
    np.testing.assert_allclose(policy_iteration(frozen_lake, gamma=gamma).V, result.V, atol=1e-6)
    assert result.V[0] == pytest.approx(0.542, abs=1e-3)  # known optimum of the 4x4 lake

    # Greedy policy rolled out in the real env (no 100-step time limit, so no truncation bias).
    env = gym.make("FrozenLake-v1").unwrapped
    episodes, returns = 2000, []
    for episode in range(episodes):
        state, _ = env.reset(seed=7 if episode == 0 else None)
        discounted_return, discount, terminated = 0.0, 1.0, False
        while not terminated and discount > 1e-4:
            state, reward, terminated, _, _ = env.step(int(result.policy[state]))
            discounted_return += discount * reward
            discount *= gamma
        returns.append(discounted_return)
    standard_error = np.std(returns, ddof=1) / np.sqrt(episodes)
    assert abs(np.mean(returns) - result.V[0]) < 4 * standard_error + 0.01


def test_non_slippery_frozen_lake_reaches_goal_in_six_steps():
    mdp = from_gymnasium("FrozenLake-v1", is_slippery=False)
    result = value_iteration(mdp, gamma=0.9)
    assert result.V[0] == pytest.approx(0.9**5)  # reward 1 arrives on the 6th move


def test_frozen_lake_8x8_builds_with_map_name():
    mdp = from_gymnasium("FrozenLake-v1", map_name="8x8")
    assert mdp.n_states == 65 and mdp.grid.n_rows == 8


def test_taxi_and_cliff_walking_build_and_solve():
    taxi = from_gymnasium("Taxi-v3")  # resolves to the installed Taxi version
    assert taxi.n_states == 501 and taxi.action_names[4:] == ("pickup", "dropoff")
    taxi_solution = value_iteration(taxi, gamma=GAMMA)
    assert bellman_optimality_residual(taxi, taxi_solution.V, GAMMA) < 1e-8

    cliff = from_gymnasium("CliffWalking-v0")  # v1 in Gymnasium 1.x
    solution = policy_iteration(cliff, gamma=GAMMA)
    start = 36
    # Shortest safe path along the cliff edge: 13 moves at -1 each.
    assert solution.V[start] == pytest.approx(-(1 - GAMMA**13) / (1 - GAMMA))
    np.testing.assert_allclose(value_iteration(cliff, gamma=GAMMA).V, solution.V, atol=1e-6)


def test_gymnasium_version_resolution_and_unknown_ids():
    assert resolve_gymnasium_id("FrozenLake-v1") == "FrozenLake-v1"
    assert resolve_gymnasium_id("CliffWalking-v0").startswith("CliffWalking-v")
    with pytest.raises(BellmaxError, match="did you mean FrozenLake"):
        from_gymnasium("FrozenLak-v1")
    with pytest.raises(BellmaxError, match="no transition table"):
        from_gymnasium("CartPole-v1")


# --------------------------------------------------------------------------- bellmax solve


def solve_json(capsys, *argv):
    assert solve_main([*argv, "--json"]) == 0
    output = capsys.readouterr().out
    assert output.count("\n") == 1  # exactly one JSON object
    return json.loads(output)


def test_solve_json_schema_and_lecture_values(capsys):
    out = solve_json(capsys, "gridworld", "--noise", "0", "--gamma", "1", "--horizon", "100")
    assert set(out) == {"method", "gamma", "noise", "iterations", "values", "policy"}
    assert out["method"] == "value-iteration" and out["gamma"] == 1.0 and out["noise"] == 0.0
    assert out["iterations"] == 100
    values = out["values"]
    assert len(values) == 11 and "terminal" not in values and "2,2" not in values
    assert values["4,3"] == values["3,3"] == values["2,3"] == values["1,1"] == 1.0
    assert values["4,2"] == -1.0
    # Exit cells have no decision to make, so they appear in "values" but not in "policy".
    assert set(out["policy"]) == set(values) - {"4,3", "4,2"}
    assert set(out["policy"].values()) <= {"up", "down", "left", "right"}


@pytest.mark.parametrize("method", ["value-iteration", "q-value-iteration", "policy-iteration"])
def test_solve_defaults_give_the_stochastic_lecture_solution(capsys, gridworld, method):
    out = solve_json(capsys, "gridworld", "--method", method)
    assert out["gamma"] == 0.9 and out["noise"] == 0.2 and out["method"] == method
    expected = value_iteration(gridworld, gamma=GAMMA)
    for name, value in out["values"].items():
        assert value == pytest.approx(expected.V[gridworld.state_index(name)], abs=1e-6)
    assert out["policy"]["3,3"] == "right" and out["policy"]["1,1"] == "up"


def test_solve_frozen_lake_json_is_keyed_by_state_index(capsys):
    out = solve_json(capsys, "FrozenLake-v1", "--gamma", "0.99", "--no-slippery")
    assert out["noise"] is None
    assert list(out["values"]) == [str(s) for s in range(16)]
    assert set(out["policy"].values()) <= {"left", "down", "right", "up"}
    assert "5" not in out["policy"] and "15" not in out["policy"]  # hole and goal
    assert out["values"]["0"] == pytest.approx(0.99**5)


def test_solve_prints_a_grid_of_values_and_arrows(capsys):
    assert solve_main(["gridworld"]) == 0
    text = capsys.readouterr().out
    assert "x=1" in text and "y=3" in text and "→" in text and "+1" in text
    assert solve_main(["Taxi-v3", "--horizon", "3"]) == 0
    assert "pickup" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gridworlds"], "did you mean gridworld"),
        (["NoSuchEnv-v0"], "unknown environment id"),
        (["gridworld", "--gamma", "0"], "gamma"),
        (["gridworld", "--gamma", "1.5"], "gamma"),
        (["gridworld", "--noise", "-0.1"], "noise"),
        (["gridworld", "--noise", "1.2"], "noise"),
        (["gridworld", "--horizon", "-1"], "horizon"),
        (["gridworld", "--method", "sarsa"], "invalid choice"),
        (["gridworld", "--gamma", "abc"], "invalid float"),
        (["FrozenLake-v1", "--noise", "0.1"], "only to the gridworld"),
        (["gridworld", "--map-name", "8x8"], "toy-text"),
        (["FrozenLake-v1", "--map-name", "9x9"], "9x9"),
    ],
)
def test_solve_bad_input_raises_bellmax_error(argv, message):
    with pytest.raises(BellmaxError, match=message):
        solve_main(argv)


def test_solve_does_not_import_torch():
    code = (
        "import sys; from bellmax.commands.solve import main; main(['gridworld', '--json']); "
        "assert 'torch' not in sys.modules, 'bellmax solve imported torch'"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env={"PYTHONPATH": "src", "PATH": ""}, cwd=_repo_root())
    assert completed.returncode == 0, completed.stderr


def _repo_root():
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])
