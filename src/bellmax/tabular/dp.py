"""Exact dynamic programming on a TabularMDP: policy evaluation, value iteration, Q-value
iteration and policy iteration, as in the lecture's "Exact methods" slides.

Every backup is one vectorized NumPy expression over all states at once. With
r(s, a) = sum_s' P(s'|s,a) R(s,a,s') (`mdp.expected_reward`), the one-step look-ahead is

    Q(s, a) = sum_s' P(s'|s,a) (R(s,a,s') + gamma V(s')) = r(s, a) + gamma (P V)(s, a)

and each method is a different way of iterating it. Terminal states are absorbing with zero
reward, so V(terminal) = 0 throughout and nothing is bootstrapped past the end of an episode.

Each function returns a `DPResult` with V, Q, the greedy policy, the iteration count and the
history of V_k (one array per iteration, so V_k converging can be plotted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bellmax.errors import BellmaxError
from bellmax.tabular.mdp import TabularMDP

DEFAULT_TOL = 1e-10
DEFAULT_MAX_ITERATIONS = 10_000


@dataclass(eq=False)
class DPResult:
    """What an exact method computed.

    V: (n_states,) state values; V[terminal] = 0.
    Q: (n_states, n_actions) action values, Q(s,a) = r(s,a) + gamma sum_s' P(s'|s,a) V(s')
       (for a finite horizon H: the Q_H whose max is V_H).
    policy: (n_states,) greedy action index per state, argmax_a Q(s, a) (first on ties).
    iterations: Bellman backups (value / Q-value iteration), evaluation sweeps (iterative
       policy evaluation; 1 for the exact solve) or evaluate-improve rounds (policy iteration).
    history: V_k after each iteration k = 1..iterations (V_0 = 0 is not stored).

    Iterating "to convergence" either meets its tolerance or raises BellmaxError, so a returned
    result is always converged (or exactly H backups for a finite horizon).
    """

    V: np.ndarray
    Q: np.ndarray
    policy: np.ndarray
    iterations: int
    history: list[np.ndarray] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _check_gamma(gamma: float) -> None:
    if not 0.0 < gamma <= 1.0:
        raise BellmaxError(f"gamma={gamma} is outside (0, 1]; use a discount such as 0.9.")


def _check_horizon(horizon: int | None) -> None:
    if horizon is not None and (int(horizon) != horizon or horizon < 0):
        raise BellmaxError(
            f"horizon={horizon} must be a whole number >= 0 (or None to iterate to convergence)."
        )


def _check_tolerances(tol: float, max_iterations: int) -> None:
    if not tol > 0:
        raise BellmaxError(f"tol={tol} must be > 0.")
    if max_iterations < 1:
        raise BellmaxError(f"max_iterations={max_iterations} must be >= 1.")


def q_from_v(mdp: TabularMDP, V: np.ndarray, gamma: float) -> np.ndarray:
    """One-step look-ahead: Q(s,a) = sum_s' P(s'|s,a) (R(s,a,s') + gamma V(s')); shape (S, A)."""
    return mdp.expected_reward + gamma * (mdp.P @ V)


def greedy_policy(mdp: TabularMDP, V: np.ndarray, gamma: float) -> np.ndarray:
    """pi(s) = argmax_a sum_s' P(s'|s,a) (R(s,a,s') + gamma V(s')); first action on ties."""
    return q_from_v(mdp, V, gamma).argmax(axis=1)


def greedy_policy_fastest(mdp: TabularMDP, Q: np.ndarray, history: list[np.ndarray], gamma: float,
                          tie_tol: float = 1e-9) -> np.ndarray:
    """argmax_a Q(s, a), breaking ties in favour of the action that became optimal with the
    fewest steps left.

    With gamma = 1 and no living reward (the lecture's deterministic case) every action that
    does not fall into the -1 exit is worth 1 at 3,3, including bumping into the wall; the
    first-index argmax would print "up" there. Among the tied actions we compare Q_1, Q_2, ...
    (Q_k from V_{k-1} of `history`) and keep the first that is strictly best, i.e. the action
    that reaches the value soonest. The result is always optimal for Q: only ties are broken.
    """
    tied = Q >= Q.max(axis=1, keepdims=True) - tie_tol
    for V_before in [np.zeros(mdp.n_states), *history[:-1]]:  # V_0, V_1, ..., V_{K-1}
        if tied.sum(axis=1).max() == 1:
            break
        Q_k = np.where(tied, q_from_v(mdp, V_before, gamma), -np.inf)
        tied &= Q_k >= Q_k.max(axis=1, keepdims=True) - tie_tol
    return tied.argmax(axis=1)


def bellman_optimality_residual(mdp: TabularMDP, V: np.ndarray, gamma: float) -> float:
    """max_s |max_a sum_s' P(s'|s,a) (R(s,a,s') + gamma V(s')) - V(s)|: zero exactly at V*."""
    return float(np.max(np.abs(q_from_v(mdp, V, gamma).max(axis=1) - V)))


def _policy_matrix(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """pi(a|s) as an (S, A) matrix, from action indices (S,) or probabilities (S, A)."""
    policy = np.asarray(policy)
    if policy.shape == (mdp.n_states,):
        if not np.issubdtype(policy.dtype, np.integer) and not np.all(policy == policy.round()):
            raise BellmaxError("a deterministic policy must hold one action index per state.")
        actions = policy.astype(np.int64)
        if actions.min() < 0 or actions.max() >= mdp.n_actions:
            raise BellmaxError(
                f"policy holds action indices outside 0..{mdp.n_actions - 1}."
            )
        return np.eye(mdp.n_actions)[actions]
    if policy.shape == (mdp.n_states, mdp.n_actions):
        pi = policy.astype(np.float64)
        if np.any(pi < 0) or np.any(np.abs(pi.sum(axis=1) - 1.0) > 1e-9):
            raise BellmaxError(
                "a stochastic policy's rows pi(.|s) must be probabilities summing to 1."
            )
        return pi
    raise BellmaxError(
        f"policy has shape {policy.shape}; give action indices ({mdp.n_states},) or "
        f"probabilities ({mdp.n_states}, {mdp.n_actions})."
    )


def _solve_policy_values(P_pi: np.ndarray, r_pi: np.ndarray, terminal: np.ndarray,
                         gamma: float) -> np.ndarray:
    """Exact V^pi from (I - gamma P_pi) V = r_pi, with V = 0 on terminal states.

    With gamma = 1 the system is singular for states that never reach a terminal state under pi
    (an improper policy). Those states keep V = 0 when every reward they can collect is 0 (e.g.
    bumping into a wall forever with living reward 0); otherwise their value diverges and this
    raises BellmaxError.
    """
    n_states = len(r_pi)
    solve_mask = ~terminal
    if gamma == 1.0:
        # States that reach a terminal state with positive probability: backward reachability.
        reaches_terminal = terminal.copy()
        while True:
            grown = reaches_terminal | ((P_pi[:, reaches_terminal].sum(axis=1) > 0) & ~terminal)
            if np.array_equal(grown, reaches_terminal):
                break
            reaches_terminal = grown
        trapped = ~reaches_terminal  # they only ever visit each other
        if np.any(np.abs(r_pi[trapped]) > 0):
            raise BellmaxError(
                "with gamma=1 this policy loops forever in states with nonzero reward, so its "
                "value diverges; use gamma < 1 or a policy that reaches a terminal state."
            )
        solve_mask = reaches_terminal & ~terminal
    V = np.zeros(n_states)
    idx = np.flatnonzero(solve_mask)
    # V = r_pi + gamma P_pi V  <=>  (I - gamma P_pi) V = r_pi, on the non-terminal states
    A = np.eye(len(idx)) - gamma * P_pi[np.ix_(idx, idx)]
    try:
        V[idx] = np.linalg.solve(A, r_pi[idx])
    except np.linalg.LinAlgError:
        raise BellmaxError(
            "policy evaluation's linear system is singular; use gamma < 1."
        ) from None
    return V


# ---------------------------------------------------------------------------------------------
# Policy evaluation
# ---------------------------------------------------------------------------------------------


def policy_evaluation(
    mdp: TabularMDP,
    policy: np.ndarray,
    gamma: float = 0.9,
    tol: float = DEFAULT_TOL,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    method: Literal["iterative", "exact"] = "iterative",
) -> DPResult:
    """V^pi for a fixed policy (action indices (S,) or probabilities pi(a|s) of shape (S, A)).

    method="iterative": V_{i+1}(s) = sum_s' P(s'|s,pi(s)) [R(s,pi(s),s') + gamma V_i(s')] from
    V_0 = 0 until max_s |V_{i+1} - V_i| < tol. method="exact": one linear solve.
    The result's `policy` is greedy with respect to V^pi, i.e. the improved policy of one
    policy-iteration step; `Q` is Q^pi.
    """
    _check_gamma(gamma)
    _check_tolerances(tol, max_iterations)
    pi = _policy_matrix(mdp, policy)  # (S, A)
    # P_pi(s'|s) = sum_a pi(a|s) P(s'|s,a);  r_pi(s) = sum_a pi(a|s) r(s,a)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.expected_reward)
    if method == "exact":
        V = _solve_policy_values(P_pi, r_pi, mdp.terminal, gamma)
        Q = q_from_v(mdp, V, gamma)
        return DPResult(V=V, Q=Q, policy=Q.argmax(axis=1), iterations=1, history=[V.copy()])
    if method != "iterative":
        raise BellmaxError(f"policy evaluation method={method!r}; use 'iterative' or 'exact'.")

    V = np.zeros(mdp.n_states)
    history: list[np.ndarray] = []
    for iteration in range(1, max_iterations + 1):
        # V_{i+1} = r_pi + gamma P_pi V_i
        V_next = r_pi + gamma * (P_pi @ V)
        history.append(V_next)
        change = np.max(np.abs(V_next - V))
        V = V_next
        if change < tol:
            Q = q_from_v(mdp, V, gamma)
            return DPResult(V=V, Q=Q, policy=Q.argmax(axis=1), iterations=iteration,
                            history=history)
    raise BellmaxError(
        f"policy evaluation did not converge in {max_iterations} sweeps at gamma={gamma} (last "
        f"change {change:.3g}); with gamma=1 a policy that never ends diverges -- use gamma < 1, "
        "method='exact' or a larger max_iterations."
    )


# ---------------------------------------------------------------------------------------------
# Value iteration and Q-value iteration
# ---------------------------------------------------------------------------------------------


def _not_converged(name: str, max_iterations: int, gamma: float, change: float) -> BellmaxError:
    return BellmaxError(
        f"{name} did not converge in {max_iterations} iterations at gamma={gamma} (last change "
        f"{change:.3g}); with gamma=1 values diverge when an episode can go on forever with "
        "nonzero reward -- use gamma < 1, a finite --horizon, or more iterations."
    )


def value_iteration(
    mdp: TabularMDP,
    gamma: float = 0.9,
    horizon: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> DPResult:
    """Optimal values by repeated Bellman backups from V_0 = 0.

    horizon=H: exactly H backups, so V is V*_H, the optimal value with H steps left, and
    `history` holds V_1..V_H. horizon=None: back up until max_s |V_k - V_{k-1}| < tol (for
    gamma < 1 then ||V_k - V*|| <= gamma tol / (1 - gamma)); this also ends for gamma = 1 when
    every optimal episode terminates, as in the gridworld.
    """
    _check_gamma(gamma)
    _check_horizon(horizon)
    _check_tolerances(tol, max_iterations)
    # V_0(s) = 0 for all s
    V = np.zeros(mdp.n_states)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    history: list[np.ndarray] = []
    limit = int(horizon) if horizon is not None else max_iterations
    change = np.inf
    for _k in range(1, limit + 1):
        # Q_k(s,a) = sum_s' P(s'|s,a) (R(s,a,s') + gamma V_{k-1}(s'))
        Q = q_from_v(mdp, V, gamma)
        # V_k(s) = max_a Q_k(s,a);  pi_k(s) = argmax_a Q_k(s,a)
        V_next = Q.max(axis=1)
        history.append(V_next)
        change = np.max(np.abs(V_next - V))
        V = V_next
        if horizon is None and change < tol:
            break
    else:
        if horizon is None:
            raise _not_converged("value iteration", max_iterations, gamma, change)
    policy = greedy_policy_fastest(mdp, Q, history, gamma)
    return DPResult(V=V, Q=Q, policy=policy, iterations=len(history), history=history)


def q_value_iteration(
    mdp: TabularMDP,
    gamma: float = 0.9,
    horizon: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> DPResult:
    """Optimal action values by Q-value iteration from Q_0 = 0 (same horizon rules as VI).

    `history` holds V_k = max_a Q_k(., a) so it compares directly with value iteration's.
    """
    _check_gamma(gamma)
    _check_horizon(horizon)
    _check_tolerances(tol, max_iterations)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    history: list[np.ndarray] = []
    limit = int(horizon) if horizon is not None else max_iterations
    change = np.inf
    for _k in range(1, limit + 1):
        # Q_{k+1}(s,a) = sum_s' P(s'|s,a) (R(s,a,s') + gamma max_a' Q_k(s',a'))
        Q_next = mdp.expected_reward + gamma * (mdp.P @ Q.max(axis=1))
        history.append(Q_next.max(axis=1))
        change = np.max(np.abs(Q_next - Q))
        Q = Q_next
        if horizon is None and change < tol:
            break
    else:
        if horizon is None:
            raise _not_converged("Q-value iteration", max_iterations, gamma, change)
    policy = greedy_policy_fastest(mdp, Q, history, gamma)
    return DPResult(V=Q.max(axis=1), Q=Q, policy=policy, iterations=len(history),
                    history=history)


# ---------------------------------------------------------------------------------------------
# Policy iteration
# ---------------------------------------------------------------------------------------------


def proper_policy(mdp: TabularMDP) -> np.ndarray:
    """A policy that reaches a terminal state with probability 1 wherever any policy can.

    Breadth-first backwards from the terminal states: each state takes an action with positive
    probability of moving one layer closer. Policy iteration starts here when gamma = 1, where
    an improper start (looping forever with negative reward) would have no finite value.
    """
    policy = np.zeros(mdp.n_states, dtype=np.int64)
    reached = mdp.terminal.copy()
    while True:
        # prob. of landing in the already-reached set, per (s, a): (S, A)
        into_reached = mdp.P[:, :, reached].sum(axis=2)
        newly = ~reached & (into_reached.max(axis=1) > 0)
        if not newly.any():
            return policy
        policy[newly] = into_reached[newly].argmax(axis=1)
        reached |= newly


def policy_iteration(
    mdp: TabularMDP,
    gamma: float = 0.9,
    initial_policy: np.ndarray | None = None,
    evaluation: Literal["exact", "iterative"] = "exact",
    tol: float = DEFAULT_TOL,
    max_iterations: int = 1_000,
) -> DPResult:
    """Alternate policy evaluation and greedy improvement until the policy stops changing.

    Start: `initial_policy`, else the one-step greedy policy argmax_a r(s,a) (gamma < 1) or
    `proper_policy(mdp)` (gamma = 1). `history` holds V^{pi_k} for each evaluated policy.
    """
    _check_gamma(gamma)
    _check_tolerances(tol, max_iterations)
    if initial_policy is not None:
        policy = np.asarray(initial_policy, dtype=np.int64).copy()
        _policy_matrix(mdp, policy)  # validates shape and range
    elif gamma < 1.0:
        policy = mdp.expected_reward.argmax(axis=1)
    else:
        policy = proper_policy(mdp)
    states = np.arange(mdp.n_states)
    history: list[np.ndarray] = []
    for k in range(1, max_iterations + 1):
        # Policy evaluation:
        #   V^{pi_k}(s) = sum_s' P(s'|s,pi_k(s)) [R(s,pi_k(s),s') + gamma V^{pi_k}(s')]
        V = policy_evaluation(mdp, policy, gamma, tol=tol, method=evaluation).V
        history.append(V)
        # Policy improvement:
        #   pi_{k+1}(s) = argmax_a sum_s' P(s'|s,a) [R(s,a,s') + gamma V^{pi_k}(s')]
        Q = q_from_v(mdp, V, gamma)
        best = Q.argmax(axis=1)
        # Switch only on a strict improvement, so ties between equally good actions cannot cycle.
        margin = 1e-12 * np.maximum(1.0, np.abs(Q[states, policy]))
        improves = Q[states, best] > Q[states, policy] + margin
        if not improves.any():
            return DPResult(V=V, Q=Q, policy=policy, iterations=k, history=history)
        policy = np.where(improves, best, policy)
    raise BellmaxError(
        f"policy iteration did not stabilise in {max_iterations} rounds; raise max_iterations."
    )
