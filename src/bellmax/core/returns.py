"""The lecture's return and advantage estimators, as pure functions of (T, N) tensors (time by
environment), so each can be tested against its equation on hand-made numbers. Conventions:

- `next_values[t]` is V(s_{t+1}) for the *true* next state (the final observation when the
  episode ended), so time-limit truncation bootstraps from it and true termination does not:
  the bootstrap is multiplied by (1 - terminated_t).
- `cut[t]` is True where the recursion must not look at step t+1: the episode ended at t
  (terminated or truncated), step t is the filler step of Gymnasium's NEXT_STEP autoreset,
  or t is the last step of the rollout (then the bootstrap V(s_{t+1}) stands in for the rest).
"""

from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                       cut: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go R_t = r_t + gamma (1 - d_t) [(1 - cut_t) R_{t+1} + cut_t V(s_{t+1})]."""
    returns = torch.zeros_like(rewards)
    following = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        tail = torch.where(cut[t], next_values[t], following)
        following = rewards[t] + gamma * (1.0 - terminated[t].float()) * tail
        returns[t] = following
    return returns


def td_residuals(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                 terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)."""
    return rewards + gamma * (1.0 - terminated.float()) * next_values - values


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        cut: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """GAE(gamma, lambda): A_t = delta_t + gamma lambda (1 - cut_t) A_{t+1}.

    lambda = 0 gives the TD residual; lambda = 1 gives reward-to-go minus V(s_t).
    """
    deltas = td_residuals(rewards, values, next_values, terminated, gamma)
    advantages = torch.zeros_like(rewards)
    following = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        following = deltas[t] + gamma * lam * (~cut[t]).float() * following
        advantages[t] = following
    return advantages


def segment_start_values(per_step: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Broadcast each episode segment's first value to all its steps.

    With `per_step` the reward-to-go, this is the whole trajectory's return R(tau) at every t
    (for a trajectory cut by the rollout window: the part inside it, bootstrapped at the cut).
    """
    out = torch.empty_like(per_step)
    current = per_step[0]
    for t in range(per_step.shape[0]):
        if t > 0:
            current = torch.where(cut[t - 1], per_step[t], current)
        out[t] = current
    return out


def standardize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std, for advantages; a single value is returned unchanged."""
    if x.numel() <= 1:
        return x
    return (x - x.mean()) / (x.std() + 1e-8)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is perfect, 0 no better than a constant."""
    var = target.var()
    return float("nan") if var == 0 else float(1.0 - (target - predicted).var() / var)
