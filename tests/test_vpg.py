"""Vanilla policy gradient: the weightings are what the lecture says, updates really update,
same seed gives the same numbers, and the agent learns CartPole."""

import numpy as np
import pytest
import torch

from bellmax.algos import VPG, VPGConfig
from bellmax.core.returns import discounted_returns
from bellmax.errors import ConfigError

SMALL = dict(num_envs=2, n_steps=64, batch_size=64, total_steps=256, hidden_sizes=(16,))
WEIGHTINGS = ["total_return", "reward_to_go", "reward_to_go_baseline", "q_estimate", "advantage",
              "td_residual", "gae"]


# A hand-made rollout, one environment, gamma = lambda = 0.5: an episode of two steps that
# terminates at t = 1 (its V(s_2) = 9 must not be used), then an episode the rollout window cuts
# after t = 3 (it bootstraps from V(s_4) = 6).
GAMMA = LAMBDA = 0.5
HAND_ROLLOUT = dict(
    obs=torch.tensor([[[0.0]], [[1.0]], [[2.0]], [[3.0]]]),  # (T, N, obs_dim)
    actions=torch.tensor([[1], [0], [1], [0]]),
    rewards=torch.tensor([[1.0], [2.0], [3.0], [4.0]]),
    values=torch.tensor([[0.5], [1.0], [1.5], [2.0]]),
    next_values=torch.tensor([[1.0], [9.0], [2.0], [6.0]]),
    terminated=torch.tensor([[False], [True], [False], [False]]),
    cut=torch.tensor([[False], [True], [False], [True]]),
)
# R_3 = 4 + 0.5 * 6 = 7, R_2 = 3 + 0.5 * 7 = 6.5, R_1 = 2 (terminal), R_0 = 1 + 0.5 * 2 = 2
HAND_REWARD_TO_GO = [2.0, 2.0, 6.5, 7.0]
# delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
HAND_TD_RESIDUALS = [1 + 0.5 * 1.0 - 0.5, 2 - 1.0, 3 + 0.5 * 2.0 - 1.5, 4 + 0.5 * 6.0 - 2.0]  # 1, 1, 2.5, 5
# A_t = delta_t + gamma lambda A_{t+1} within an episode: A_3 = 5, A_2 = 2.5 + 0.25 * 5, A_1 = 1, A_0 = 1 + 0.25 * 1
HAND_GAE = [1.25, 1.0, 3.75, 5.0]
# Q_phi(s, a) = 10 s + a at the steps' (s_t, a_t): 1, 10, 21, 30
HAND_Q = [1.0, 10.0, 21.0, 30.0]
HAND_WEIGHTS = {
    "total_return": [2.0, 2.0, 6.5, 6.5],  # R(tau): each episode's return at every one of its steps
    "reward_to_go": HAND_REWARD_TO_GO,
    "reward_to_go_baseline": [2.0 - 0.5, 2.0 - 1.0, 6.5 - 1.5, 7.0 - 2.0],
    "q_estimate": HAND_Q,
    "advantage": [1.0 - 0.5, 10.0 - 1.0, 21.0 - 1.5, 30.0 - 2.0],
    "td_residual": HAND_TD_RESIDUALS,
    "gae": HAND_GAE,
}


class KnownQ(torch.nn.Module):
    def forward(self, obs, actions):
        return 10 * obs[..., 0] + actions.float()


def test_reward_to_go_of_the_hand_rollout_stops_at_termination_and_bootstraps_at_the_cut():
    r = HAND_ROLLOUT
    reward_to_go = discounted_returns(r["rewards"], r["next_values"], r["terminated"], r["cut"], GAMMA)
    assert reward_to_go[:, 0].tolist() == HAND_REWARD_TO_GO


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_each_weighting_gives_the_lectures_psi_on_a_hand_computed_rollout(weighting):
    agent = VPG(VPGConfig(weighting=weighting, gamma=GAMMA, gae_lambda=LAMBDA, seed=0, **SMALL))
    if agent.q_value is not None:
        agent.q_value = KnownQ()
    r = HAND_ROLLOUT
    weights = agent.policy_weights(r["obs"], r["actions"], r["rewards"], r["values"], r["next_values"],
                                   r["terminated"], r["cut"], torch.tensor(HAND_REWARD_TO_GO)[:, None])
    assert weights[:, 0].tolist() == pytest.approx(HAND_WEIGHTS[weighting])


# ------------------------------------------------- the estimator against the true gradient
# A two-armed bandit: pi = softmax(z) over known logits z, rewards r(a). J = sum_a pi_a r_a and
# dJ/dz_k = pi_k (r_k - J). The policy's last layer has zero weights and bias z, so its logits are
# z for every observation and the gradient of VPG's loss with respect to that bias is -dJ/dz.
BANDIT_LOGITS = [0.3, -0.4]
BANDIT_REWARDS = torch.tensor([1.0, -0.5])


def bandit_policy_gradient(actions: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of J estimated by VPG's own policy loss, analytic dJ/dz)."""
    agent = VPG(VPGConfig(scale_weights=False, ent_coef=0.0, seed=0, **SMALL))  # CartPole: 2 actions
    out = agent.policy.net[-1]
    with torch.no_grad():
        out.weight.zero_()
        out.bias.copy_(torch.tensor(BANDIT_LOGITS))
    agent.update_policy(torch.zeros(len(actions), 4), actions, weights)
    pi = torch.softmax(torch.tensor(BANDIT_LOGITS), 0)
    J = (pi * BANDIT_REWARDS).sum()
    return -out.bias.grad, pi * (BANDIT_REWARDS - J)


def test_policy_gradient_over_both_arms_weighted_by_their_probabilities_is_the_exact_gradient():
    pi = torch.softmax(torch.tensor(BANDIT_LOGITS), 0)
    # E_a[grad log pi(a) r(a)] = sum_a pi_a grad log pi(a) r(a); the loss averages over the two
    # samples, so each carries weight 2 pi_a r_a
    estimate, analytic = bandit_policy_gradient(torch.tensor([0, 1]), 2 * pi * BANDIT_REWARDS)
    assert torch.allclose(estimate, analytic, atol=1e-6)
    assert analytic[0] > 0 > analytic[1]


@pytest.mark.parametrize("baseline", [0.0, 0.25])
def test_policy_gradient_from_sampled_arms_estimates_the_exact_gradient(baseline):
    # Any constant baseline leaves the estimator unbiased. 200,000 samples: standard error < 0.002.
    generator = torch.Generator().manual_seed(0)
    pi = torch.softmax(torch.tensor(BANDIT_LOGITS), 0)
    actions = torch.multinomial(pi, 200_000, replacement=True, generator=generator)
    estimate, analytic = bandit_policy_gradient(actions, BANDIT_REWARDS[actions] - baseline)
    assert torch.allclose(estimate, analytic, atol=0.01)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_one_iteration_changes_every_trainable_parameter(weighting):
    agent = VPG(VPGConfig(weighting=weighting, seed=0, **SMALL))
    before = {f"{m}.{n}": t.detach().clone() for m, mod in agent.modules().items()
              for n, t in mod.named_parameters()}
    agent.train_iteration(10**9)
    after = {f"{m}.{n}": t for m, mod in agent.modules().items() for n, t in mod.named_parameters()}
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert ("q_value" in agent.modules()) == (weighting in ("q_estimate", "advantage"))


def test_same_seed_same_parameters_different_seed_different():
    def final(seed):
        agent = VPG(VPGConfig(seed=seed, **SMALL))
        agent.learn(512)
        return agent.params_sha256()

    assert final(5) == final(5)
    assert final(5) != final(6)


def test_total_steps_is_an_exact_budget_up_to_one_vector_step():
    agent = VPG(VPGConfig(seed=0, **SMALL))
    agent.learn(300)  # 2 envs x 64 steps = 128 per iteration: 128 + 128 + 44
    assert agent.global_step == 300


def test_continuous_actions_use_a_gaussian_and_are_clipped_to_bounds():
    agent = VPG(VPGConfig(env="Pendulum-v1", seed=0, **SMALL))
    assert not agent.policy.discrete
    log_std_before = agent.policy.log_std.detach().clone()
    agent.train_iteration(10**9)
    assert not torch.equal(agent.policy.log_std, log_std_before)
    wild = agent.env_actions(torch.tensor([[10.0], [-10.0]]))
    assert wild.tolist() == [[2.0], [-2.0]]


def test_discrete_observations_are_one_hot_encoded_for_the_gridworld():
    agent = VPG(VPGConfig(env="bellmax/GridWorld-v0", seed=0, **SMALL))
    agent.train_iteration(10**9)
    assert agent.global_step == 128


def test_on_image_observations_each_step_moves_only_its_own_network():
    # the policy and V_phi have their own optimizers, so each needs its own CNN torso: with one
    # torso under both, the critic regression would move the policy and the policy step V_phi
    import toy_envs  # noqa: F401  (registers bellmax-test/CnnFrames-v0)

    agent = VPG(VPGConfig(env="bellmax-test/CnnFrames-v0", num_envs=2, n_steps=16, batch_size=32, seed=0,
                          eval_episodes=0))
    agent.collect_rollout(agent.buffer, 16, agent.value)
    obs, actions = agent.buffer.view("obs"), agent.buffer.view("actions")
    policy_before = [p.detach().clone() for p in agent.policy.parameters()]
    value_before = [p.detach().clone() for p in agent.value.parameters()]
    agent.fit_critics(obs, actions, torch.full(actions.shape, 5.0))
    assert all(torch.equal(a, b) for a, b in zip(policy_before, agent.policy.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(value_before, agent.value.parameters()))
    value_before = [p.detach().clone() for p in agent.value.parameters()]
    agent.update_policy(obs, actions, torch.randn(actions.shape))
    assert all(torch.equal(a, b) for a, b in zip(value_before, agent.value.parameters()))


def test_batch_larger_than_rollout_is_rejected_with_the_field_name():
    with pytest.raises(ConfigError, match="batch_size"):
        VPG(VPGConfig(n_steps=10, num_envs=2, batch_size=64))


@pytest.mark.slow
def test_vpg_solves_cartpole_v1_with_its_preset():
    """The foundation issue's learning test: mean return >= 195 within a short seeded run."""

    config = VPGConfig.from_preset("CartPole-v1").replace(seed=0)
    agent = VPG(config).learn()
    eval_returns = agent.evaluate(20)
    assert agent.global_step <= 60_000
    assert eval_returns.mean() >= 195, eval_returns
    assert agent.tracker.mean_return() >= 195
    assert np.all(eval_returns > 0)


@pytest.mark.slow
def test_vpg_on_the_lecture_gridworld_finds_a_policy_worth_v_star():
    """Sampling meets exact DP: the learned greedy policy, evaluated exactly on the MDP, is
    worth V*(1,1) from value iteration (gamma 0.9, noise 0.2)."""
    from bellmax.envs.gridworld import gridworld_mdp
    from bellmax.tabular import policy_evaluation, value_iteration

    mdp = gridworld_mdp()
    agent = VPG(VPGConfig(env="bellmax/GridWorld-v0", gamma=0.9, seed=0, num_envs=8, n_steps=64,
                          batch_size=128, hidden_sizes=(32,), learning_rate=1e-2))
    agent.learn(20_000)
    learned = agent.predict(np.arange(mdp.n_states))
    start = mdp.state_index("1,1")
    v_learned = policy_evaluation(mdp, learned, gamma=0.9).V[start]
    v_star = value_iteration(mdp, gamma=0.9).V[start]
    assert v_learned == pytest.approx(v_star, abs=1e-3)
