"""Return and advantage estimators against the equations, on hand-made numbers."""

import torch

from bellmax.core.returns import discounted_returns, gae, segment_start_values, td_residuals
from bellmax.core.rollout import EpisodeTracker

GAMMA = 0.9


def col(*xs):  # (T,) -> (T, 1): one environment
    return torch.tensor(xs, dtype=torch.float32)[:, None]


def flags(*xs):
    return torch.tensor(xs, dtype=torch.bool)[:, None]


def test_reward_to_go_matches_hand_computation_with_termination():
    rewards = col(1, 2, 3)
    next_values = col(10, 10, 10)  # ignored: no bootstrap after termination, none before the cut
    terminated = flags(0, 0, 1)
    cut = flags(0, 0, 1)
    returns = discounted_returns(rewards, next_values, terminated, cut, GAMMA)
    # R_2 = 3, R_1 = 2 + 0.9 * 3, R_0 = 1 + 0.9 * R_1
    assert torch.allclose(returns[:, 0], torch.tensor([1 + 0.9 * (2 + 0.9 * 3), 2 + 0.9 * 3, 3.0]))


def test_truncation_bootstraps_from_final_state_value_but_termination_does_not():
    rewards, next_values = col(1.0), col(5.0)
    truncated = discounted_returns(rewards, next_values, flags(0), flags(1), GAMMA)
    terminated = discounted_returns(rewards, next_values, flags(1), flags(1), GAMMA)
    assert truncated.item() == 1 + GAMMA * 5.0
    assert terminated.item() == 1.0


def test_gae_lambda_one_equals_reward_to_go_minus_baseline():
    torch.manual_seed(0)
    T, N = 7, 3
    rewards, values = torch.randn(T, N), torch.randn(T, N)
    next_values = torch.cat([values[1:], torch.randn(1, N)])
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[3, 0] = True
    truncated = torch.zeros(T, N, dtype=torch.bool)
    truncated[4, 1] = True
    next_values[4, 1] = 2.5  # V(final obs) of the truncated episode, not V(reset obs)
    cut = terminated | truncated
    cut[-1] = True
    advantages = gae(rewards, values, next_values, terminated, cut, GAMMA, lam=1.0)
    reward_to_go = discounted_returns(rewards, next_values, terminated, cut, GAMMA)
    assert torch.allclose(advantages, reward_to_go - values, atol=1e-6)


def test_gae_lambda_zero_equals_td_residual():
    torch.manual_seed(1)
    T, N = 5, 2
    rewards, values, next_values = torch.randn(T, N), torch.randn(T, N), torch.randn(T, N)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    cut = terminated.clone()
    cut[-1] = True
    advantages = gae(rewards, values, next_values, terminated, cut, GAMMA, lam=0.0)
    assert torch.allclose(advantages, td_residuals(rewards, values, next_values, terminated, GAMMA))


def test_gae_does_not_leak_across_episode_boundary():
    rewards = col(0, 0, 100)
    values = col(0, 0, 0)
    next_values = col(0, 0, 0)
    terminated = flags(0, 1, 0)
    cut = flags(0, 1, 1)
    advantages = gae(rewards, values, next_values, terminated, cut, GAMMA, lam=0.95)
    assert advantages[0].item() == 0.0 and advantages[1].item() == 0.0
    assert advantages[2].item() == 100.0


def test_total_return_weight_is_the_whole_segment_return_at_every_step():
    rewards = col(1, 1, 1, 1)
    zeros = col(0, 0, 0, 0)
    terminated = flags(0, 1, 0, 1)
    cut = flags(0, 1, 0, 1)
    reward_to_go = discounted_returns(rewards, zeros, terminated, cut, 1.0)
    total = segment_start_values(reward_to_go, cut)
    assert total[:, 0].tolist() == [2.0, 2.0, 2.0, 2.0]
    assert reward_to_go[:, 0].tolist() == [2.0, 1.0, 2.0, 1.0]


def test_episode_tracker_ignores_autoreset_filler_steps():
    import numpy as np

    tracker = EpisodeTracker(num_envs=2)
    tracker.update(np.array([1.0, 1.0]), np.array([False, True]), np.array([True, True]))
    assert tracker.recent_returns[-1] == 1.0
    # env 1's next step is the NEXT_STEP filler: not counted in its next episode
    tracker.update(np.array([1.0, 0.0]), np.array([True, False]), np.array([True, False]))
    assert list(tracker.recent_returns) == [1.0, 2.0]
    assert tracker.lengths.tolist() == [0, 0]
