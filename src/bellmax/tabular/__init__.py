"""Exact methods on finite MDPs: `TabularMDP` and dynamic programming (see the lecture's slides
on value iteration, Q-value iteration and policy iteration).

    from bellmax.tabular import from_gymnasium, value_iteration
    result = value_iteration(from_gymnasium("FrozenLake-v1"), gamma=0.99)
    result.V, result.policy, result.history

The gridworld MDP lives with its environment: `bellmax.envs.gridworld.gridworld_mdp`.
Nothing here imports torch, and gymnasium loads only when `from_gymnasium` is called.
"""

from bellmax.tabular.dp import (
    DPResult,
    bellman_optimality_residual,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    proper_policy,
    q_from_v,
    q_value_iteration,
    value_iteration,
)
from bellmax.tabular.mdp import GridGeometry, TabularMDP, from_gymnasium, resolve_gymnasium_id

__all__ = [
    "DPResult",
    "GridGeometry",
    "TabularMDP",
    "bellman_optimality_residual",
    "from_gymnasium",
    "greedy_policy",
    "policy_evaluation",
    "policy_iteration",
    "proper_policy",
    "q_from_v",
    "q_value_iteration",
    "resolve_gymnasium_id",
    "value_iteration",
]
