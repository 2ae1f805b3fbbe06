"""A2C, PPO-Clip and TRPO: the losses are the lecture's equations, terminal and truncated
transitions are bootstrapped differently under Gymnasium's autoreset, and each agent learns."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import toy_envs  # noqa: F401  (registers bellmax-test/Corridor-v0 and Frames-v0)
from bellmax.algos import A2C, PPO, TRPO, PPOConfig, TRPOConfig
from bellmax.algos.a2c import a2c_loss
from bellmax.algos.ppo import ppo_loss
from bellmax.algos.trpo import conjugate_gradient
from bellmax.core.rollout import advantages_and_returns, valid_samples

EPS = 0.2


def clip_gradient(ratio: float, advantage: float) -> float:
    """d L_clip / d ratio for one sample (L_clip is maximized; ppo_loss returns -L_clip)."""
    old_log_prob = torch.zeros(1)
    new_log_prob = torch.tensor([np.log(ratio)], requires_grad=True)
    zeros = torch.zeros(1)
    terms = ppo_loss(new_log_prob, old_log_prob, torch.tensor([advantage]), zeros, zeros, zeros, zeros,
                     clip_range=EPS, clip_range_vf=None, vf_coef=0.0, ent_coef=0.0)
    (-terms["loss_policy"]).backward()
    return new_log_prob.grad.item() / ratio  # chain rule: dL/dlogr = dL/dr * r


def test_clip_stops_gradient_when_ratio_above_one_plus_eps_and_advantage_positive():
    assert clip_gradient(1.5, advantage=2.0) == 0.0


def test_clip_keeps_gradient_when_ratio_below_one_minus_eps_and_advantage_positive():
    # min(r A, clip(r) A) = r A here: the objective still pulls the ratio back up
    assert clip_gradient(0.5, advantage=2.0) == pytest.approx(2.0)


def test_clip_stops_gradient_when_ratio_below_one_minus_eps_and_advantage_negative():
    assert clip_gradient(0.5, advantage=-2.0) == 0.0


def test_clip_keeps_gradient_when_ratio_above_one_plus_eps_and_advantage_negative():
    assert clip_gradient(1.5, advantage=-2.0) == pytest.approx(-2.0)


@pytest.mark.parametrize("advantage", [2.0, -2.0])
def test_inside_the_clip_range_the_gradient_is_the_advantage(advantage):
    assert clip_gradient(1.1, advantage) == pytest.approx(advantage)


def test_ppo_loss_terms_match_hand_computation():
    new_lp, old_lp = torch.log(torch.tensor([1.5, 0.9])), torch.zeros(2)
    adv = torch.tensor([1.0, -1.0])
    values, returns = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])
    terms = ppo_loss(new_lp, old_lp, adv, values, values, returns, torch.tensor([0.5, 0.7]),
                     clip_range=EPS, clip_range_vf=None, vf_coef=0.5, ent_coef=0.01)
    # sample 1: min(1.5, 1.2) = 1.2; sample 2: min(-0.9, -0.9) = -0.9
    assert terms["loss_policy"].item() == pytest.approx(-(1.2 - 0.9) / 2)
    assert terms["loss_value"].item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    assert terms["entropy"].item() == pytest.approx(0.6)  # mean H; the loss subtracts ent_coef times it
    assert terms["clip_fraction"].item() == pytest.approx(0.5)
    expected_kl = ((1.5 - 1) - np.log(1.5) + (0.9 - 1) - np.log(0.9)) / 2
    assert terms["approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)


def test_value_clipping_takes_the_larger_error():
    new_v, old_v, ret = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([3.0])
    zero = torch.zeros(1)
    clipped = ppo_loss(zero, zero, zero, new_v, old_v, ret, zero, EPS, clip_range_vf=0.5, vf_coef=1, ent_coef=0)
    # unclipped error 0, clipped prediction 1.5 -> error 1.5^2
    assert clipped["loss_value"].item() == pytest.approx(0.5 * 1.5**2)


def test_a2c_loss_is_policy_gradient_with_advantage_weights():
    log_prob = torch.tensor([-0.5, -1.0], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    terms = a2c_loss(log_prob, adv, torch.zeros(2), torch.ones(2), torch.zeros(2), vf_coef=0.5, ent_coef=0.0)
    terms["loss"].backward()
    assert log_prob.grad.tolist() == pytest.approx([-1.0, 0.5])  # -A / N
    assert terms["loss_value"].item() == pytest.approx(0.5)


def test_ppo_target_kl_stops_before_the_step_that_would_start_past_the_bound():
    # A large first step moves pi far from pi_old; the second minibatch measures that KL before its
    # own step, finds it past 1.5 target_kl and is not stepped: the update ends on the first step.
    agent = PPO(PPOConfig(seed=0, num_envs=2, n_steps=32, batch_size=32, n_epochs=4, learning_rate=0.05,
                          target_kl=1e-4, hidden_sizes=(16,), eval_episodes=0))
    agent.collect_rollout(agent.buffer, 32, agent.value)
    advantages, returns = advantages_and_returns(agent.buffer, agent.config.gamma, agent.config.gae_lambda)
    batch = valid_samples(agent.buffer, advantages=advantages, returns=returns)
    assert len(batch["obs"]) > 32  # at least two minibatches an epoch

    after_each_step = []
    step = agent.optimizer.step

    def recording_step():
        step()
        after_each_step.append([p.detach().clone() for p in agent.policy.parameters()])

    agent.optimizer.step = recording_step
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.update(batch, agent.config.clip_range)
    assert metrics["losses/updates"] == len(after_each_step) == 1
    assert metrics["losses/approx_kl"] <= 1.5e-4  # the step taken started inside the bound
    final = list(agent.policy.parameters())
    assert all(torch.equal(a, b) for a, b in zip(after_each_step[0], final))
    assert not all(torch.equal(a, b) for a, b in zip(before, final))
    with torch.no_grad():  # and the refused step would have started past it
        dist = agent.policy.distribution(batch["obs"])
        log_ratio = agent.policy.log_prob(dist, batch["actions"]) - batch["log_probs"]
        assert ((log_ratio.exp() - 1) - log_ratio).mean() > 1.5e-4


def test_ppo_target_kl_bound_is_one_and_a_half_times_target_kl():
    agent = PPO(PPOConfig(seed=0, num_envs=2, n_steps=32, batch_size=8, n_epochs=1, target_kl=0.01,
                          hidden_sizes=(8,), eval_episodes=0))
    agent.collect_rollout(agent.buffer, 32, agent.value)
    advantages, returns = advantages_and_returns(agent.buffer, agent.config.gamma, agent.config.gae_lambda)
    batch = valid_samples(agent.buffer, advantages=advantages, returns=returns)
    measured = iter([0.0, 0.014, 0.0149, 0.0151, 0.0])  # pre-step KLs the minibatches report
    loss = agent.minibatch_loss

    def loss_with_measured_kl(mb, clip_range):
        return {**loss(mb, clip_range), "approx_kl": torch.tensor(next(measured))}

    agent.minibatch_loss = loss_with_measured_kl
    assert agent.update(batch, agent.config.clip_range)["losses/updates"] == 3  # 0.0151 > 0.015: not stepped


def test_conjugate_gradient_solves_a_positive_definite_system():
    torch.manual_seed(0)
    m = torch.randn(6, 6)
    a = m @ m.T + 6 * torch.eye(6)
    b = torch.randn(6)
    x = conjugate_gradient(lambda v: a @ v, b, iterations=20)
    assert torch.allclose(a @ x, b, atol=1e-4)


# A constructed trust-region problem with a closed-form answer: one state, a 1-D Gaussian policy
# with mean 0 (zero observation, zero biases) and sigma = 1, and four sampled actions placed
# symmetrically (+-0.5 and +-2), so the surrogate's gradient has no component along the mean and
# the step moves log sigma alone. Along log sigma, with d = change of log sigma,
#     KL(N(0, 1) || N(0, e^{2d})) = d + e^{-2d} / 2 - 1/2,   whose second derivative at 0 is F = 2,
# so the natural-gradient step sqrt(2 delta / (x F x)) x has length |d| = sqrt(delta) exactly. The
# exact KL grows faster than its quadratic model when sigma shrinks (d < 0) and slower when sigma
# grows (d > 0): shrinking overshoots the trust region, growing stays inside it.
TRPO_ACTIONS = np.array([0.5, -0.5, 2.0, -2.0])


def gaussian_kl_after_log_std_step(d: float) -> float:
    return d + np.exp(-2 * d) / 2 - 0.5


def surrogate_after_log_std_step(d: float, advantages: np.ndarray) -> float:
    """E[pi_new(a) / pi_old(a) A] for the mean-0 Gaussian going from sigma 1 to e^d."""
    ratio = np.exp(-d) * np.exp(-TRPO_ACTIONS**2 / 2 * (np.exp(-2 * d) - 1))
    return float(np.mean(ratio * advantages))


def trpo_step_on_the_constructed_problem(max_kl: float, advantages: list[float], line_search_steps: int = 10):
    agent = TRPO(TRPOConfig(env="Pendulum-v1", seed=0, hidden_sizes=(8,), max_kl=max_kl, cg_damping=0.0,
                            line_search_shrink=0.8, line_search_steps=line_search_steps))
    policy = agent.policy
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    obs = torch.zeros(4, 3)
    actions = torch.tensor(TRPO_ACTIONS, dtype=torch.float32)[:, None]
    old_log_prob = torch.tensor(-TRPO_ACTIONS**2 / 2 - 0.5 * np.log(2 * np.pi), dtype=torch.float32)
    metrics = agent.policy_step(obs, actions, old_log_prob, torch.tensor(advantages))
    d = policy.log_std.item() - before["log_std"].item()
    others_unchanged = all(torch.equal(p, before[name]) for name, p in policy.named_parameters() if name != "log_std")
    return d, metrics, others_unchanged


def test_trpo_takes_the_full_natural_gradient_step_when_its_exact_kl_is_inside_the_trust_region():
    # Advantages favour the far actions: the step widens sigma, by exactly sqrt(delta).
    advantages = np.array([-1.0, -1.0, 1.0, 1.0])
    d, metrics, others_unchanged = trpo_step_on_the_constructed_problem(0.01, advantages.tolist())
    assert d == pytest.approx(np.sqrt(0.01), rel=1e-5)
    assert others_unchanged, "the surrogate has no gradient along the mean, so the step has no component there"
    assert gaussian_kl_after_log_std_step(d) <= 0.01
    assert surrogate_after_log_std_step(d, advantages) > surrogate_after_log_std_step(0.0, advantages)
    assert metrics["losses/step_accepted"] == 1.0 and metrics["losses/line_search_tries"] == 1
    assert metrics["losses/kl"] == pytest.approx(gaussian_kl_after_log_std_step(d), rel=1e-4)


def test_trpo_backtracks_by_the_shrink_factor_when_the_full_step_leaves_the_trust_region():
    # Advantages favour the near actions: the step narrows sigma. With delta = 0.5 the full step
    # d = -sqrt(0.5) has exact KL 0.85 > delta; 0.8 of it has KL 0.48, inside, and improves L.
    advantages = np.array([1.0, 1.0, -1.0, -1.0])
    full = -np.sqrt(0.5)
    assert gaussian_kl_after_log_std_step(full) > 0.5 >= gaussian_kl_after_log_std_step(0.8 * full)
    d, metrics, others_unchanged = trpo_step_on_the_constructed_problem(0.5, advantages.tolist())
    assert d == pytest.approx(0.8 * full, rel=1e-5)
    assert others_unchanged
    assert gaussian_kl_after_log_std_step(d) <= 0.5
    assert surrogate_after_log_std_step(d, advantages) > surrogate_after_log_std_step(0.0, advantages)
    assert metrics["losses/step_accepted"] == 1.0 and metrics["losses/line_search_tries"] == 2


def test_trpo_leaves_the_policy_unchanged_when_no_backtracking_step_is_inside_the_trust_region():
    d, metrics, others_unchanged = trpo_step_on_the_constructed_problem(0.5, [1.0, 1.0, -1.0, -1.0],
                                                                        line_search_steps=1)
    assert d == 0.0 and others_unchanged
    assert metrics["losses/step_accepted"] == 0.0 and metrics["losses/kl"] == 0.0


def test_trpo_trust_region_bounds_the_kl_of_the_whole_action_distribution():
    # KL of a diagonal Gaussian sums over the action dimensions: d = 6 dims shifted by 0.1 each (unit
    # std) give 6 x 0.1^2 / 2 = 0.03. sb3-contrib averages over the dimensions instead (0.005 here),
    # so its target_kl bounds a d times smaller quantity; the HalfCheetah preset's max_kl says so.
    import gymnasium as gym

    from bellmax.core.nets import Policy

    policy = Policy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (6,)), (8,))
    old = torch.distributions.Normal(torch.zeros(4, 6), torch.ones(4, 6))
    new = torch.distributions.Normal(torch.full((4, 6), 0.1), torch.ones(4, 6))
    assert torch.allclose(policy.kl(old, new), torch.full((4,), 0.03))


def test_trpo_steps_a_nature_cnn_policy_inside_the_trust_region_on_image_observations():
    # the Nature CNN's weights are channels-last: flattening them for CG must not need a view
    agent = TRPO(TRPOConfig(env="bellmax-test/CnnFrames-v0", num_envs=2, n_steps=16, batch_size=32, value_epochs=1,
                            seed=0, eval_episodes=0))
    assert not all(p.is_contiguous() for p in agent.policy.parameters())
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.train_iteration(10**9)
    assert metrics["losses/step_accepted"] == 1.0 and 0 < metrics["losses/kl"] <= agent.config.max_kl
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


def test_trpo_flat_parameter_vector_round_trips_through_channels_last_weights():
    from bellmax.algos.trpo import flat_vector, set_flat_params
    from bellmax.core.nets import NatureCNN

    params = list(NatureCNN(gym.spaces.Box(0, 255, (1, 36, 36), np.uint8)).parameters())
    conv = params[2]  # the second convolution's (64, 32, 4, 4) weight, channels-last in memory
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    numbered = torch.arange(sum(p.numel() for p in params), dtype=torch.float32)
    set_flat_params(params, numbered)
    assert torch.equal(flat_vector(params), numbered)
    start = params[0].numel() + params[1].numel()
    assert torch.equal(conv.detach(), numbered[start: start + conv.numel()].reshape(conv.shape))  # logical order
    assert conv.is_contiguous(memory_format=torch.channels_last)  # written in place, layout kept


def test_trpo_value_fit_leaves_the_policy_bit_identical_on_image_observations():
    # with one torso under both heads the critic's Adam steps would move pi_theta after the
    # trust-region step, with no KL check: each head has its own CNN
    agent = TRPO(TRPOConfig(env="bellmax-test/CnnFrames-v0", num_envs=2, n_steps=16, batch_size=32, value_epochs=2,
                            seed=0, eval_episodes=0))
    agent.collect_rollout(agent.buffer, 16, agent.value)
    advantages, returns = advantages_and_returns(agent.buffer, agent.config.gamma, agent.config.gae_lambda)
    batch = valid_samples(agent.buffer, advantages=advantages, returns=returns)
    policy_before = [p.detach().clone() for p in agent.policy.parameters()]
    value_before = [p.detach().clone() for p in agent.value.parameters()]
    agent.fit_value(batch["obs"], batch["returns"] + 5.0)  # targets far from V: a large step
    assert all(torch.equal(a, b) for a, b in zip(policy_before, agent.policy.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(value_before, agent.value.parameters()))


# ------------------------------------------------------------------ termination vs truncation


@pytest.mark.parametrize("terminate", [True, False])
def test_terminal_transitions_do_not_bootstrap_but_time_limit_truncations_do(terminate):
    from bellmax.envs.make import make_vec_env

    # terminating corridors get a longer time limit, so the two flags never coincide
    env = make_vec_env("bellmax-test/Corridor-v0", 1, seed=0, terminate=terminate,
                       max_episode_steps=4 if terminate else 3)
    agent = PPO(PPOConfig(env="bellmax-test/Corridor-v0", num_envs=1, n_steps=8, batch_size=8, gamma=0.5,
                          gae_lambda=1.0, hidden_sizes=(8,)), env=env)
    torch.nn.init.zeros_(agent.value.net[-1].weight)
    torch.nn.init.constant_(agent.value.net[-1].bias, 10.0)  # V(s) = 10 everywhere
    agent.collect_rollout(agent.buffer, 8, agent.value)
    b = agent.buffer
    _, returns = advantages_and_returns(b, 0.5, 1.0)
    # steps 0,1,2 are the episode, step 3 the autoreset filler, steps 4,5,6 the next episode
    assert b.valid[:, 0].tolist() == [True, True, True, False, True, True, True, False]
    assert b.terminated[2, 0].item() == terminate and b.truncated[2, 0].item() == (not terminate)
    tail = 0.0 if terminate else 10.0  # V(final obs) only after a time limit
    assert returns[2, 0].item() == pytest.approx(1 + 0.5 * tail)
    assert returns[0, 0].item() == pytest.approx(1 + 0.5 * (1 + 0.5 * (1 + 0.5 * tail)))
    assert agent.tracker.recent_returns[0] == 3.0


# ------------------------------------------------------------------ wiring


class PickTwo(gym.Env):
    """MultiDiscrete([2, 3]) actions; reward 1 exactly for the action (1, 2)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(action[0] == 1 and action[1] == 2), True, False, {}


gym.register("bellmax-test/PickTwo-v0", entry_point=PickTwo)


def test_ppo_learns_a_multi_discrete_action():
    agent = PPO(PPOConfig(env="bellmax-test/PickTwo-v0", num_envs=4, n_steps=32, batch_size=32, n_epochs=4,
                          learning_rate=3e-3, hidden_sizes=(16,), seed=0, eval_episodes=0))
    agent.learn(3000)
    assert agent.predict(np.zeros((1, 1), np.float32)).tolist() == [[1, 2]]


def test_dqn_refuses_multi_discrete_actions_it_has_no_single_argmax_over():
    from bellmax.algos import DQN, DQNConfig
    from bellmax.errors import BellmaxError

    with pytest.raises(BellmaxError, match=r"dqn needs Discrete actions .* MultiDiscrete"):
        DQN(DQNConfig(env="bellmax-test/PickTwo-v0", num_envs=1))


@pytest.mark.parametrize("algo", [A2C, PPO, TRPO])
def test_one_iteration_updates_every_trainable_parameter(algo):
    agent = algo(algo.config_class(seed=1, num_envs=2, n_steps=32, hidden_sizes=(16,),
                                   **({"batch_size": 32} if algo is not A2C else {})))
    before = {name: p.detach().clone() for name, p in
              ((f"{m}.{n}", p) for m, mod in agent.modules().items() for n, p in mod.named_parameters())}
    agent.train_iteration(10**9)
    after = dict((f"{m}.{n}", p) for m, mod in agent.modules().items() for n, p in mod.named_parameters())
    assert [k for k in before if torch.equal(before[k], after[k])] == []


def test_reported_returns_stay_raw_under_reward_and_observation_normalization():
    agent = PPO(PPOConfig(seed=0, num_envs=4, n_steps=64, batch_size=64, normalize_obs=True,
                          normalize_reward=True, hidden_sizes=(16,)))
    agent.learn(2048)
    returns = list(agent.tracker.recent_returns)
    assert returns and all(r == int(r) and r >= 8 for r in returns)  # CartPole pays exactly 1 per step
    assert np.abs(agent.obs_normalizer.stats.mean).max() > 0
    assert agent.buffer.rewards.abs().max() < 1.0  # what learning saw was scaled


def test_total_steps_is_exact_and_annealing_reaches_zero():
    agent = PPO(PPOConfig(seed=0, num_envs=4, n_steps=64, batch_size=64, hidden_sizes=(16,), total_steps=1000,
                          anneal_lr=True))
    agent.learn()
    assert agent.global_step == 1000
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * (1 - 768 / 1000))


@pytest.mark.slow
@pytest.mark.parametrize("algo", [PPO, A2C])
def test_solves_cartpole_v1_with_its_preset(algo):
    config = algo.config_class.from_preset("CartPole-v1").replace(seed=0)
    agent = algo(config).learn()
    assert agent.last_eval is not None and agent.last_eval.mean() >= 475, agent.last_eval
    assert agent.global_step < config.total_steps  # stopped early, once solved


@pytest.mark.slow
def test_trpo_clearly_improves_pendulum():
    # 60k steps: at 40k the return depends on the seed (-500 to -720 over seeds 0-3), at 60k -170 to -280
    config = TRPOConfig.from_preset("Pendulum-v1").replace(seed=0, total_steps=60_000)
    agent = TRPO(config)
    before = agent.evaluate(10).mean()
    agent.learn()
    after = agent.evaluate(10).mean()
    assert before < -900 and after > -600, (before, after)


def test_evaluation_reuses_its_envs_and_gives_the_same_returns_as_fresh_ones():
    agent = PPO(PPOConfig(env="Pendulum-v1", num_envs=2, n_steps=32, batch_size=32, hidden_sizes=(8,), seed=1))
    first = agent.evaluate(3)
    env = agent._eval_env
    assert np.array_equal(agent.evaluate(3), first) and agent._eval_env is env
    agent._eval_env = None  # a fresh set of envs, seeded the same way
    assert np.array_equal(agent.evaluate(3), first)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4),
                                   gym.spaces.MultiDiscrete([2, 3])])
def test_rollout_sampling_log_prob_is_the_distributions(space):
    from bellmax.core.nets import Policy

    torch.manual_seed(0)
    policy = Policy(gym.spaces.Box(-1, 1, (5,)), space, (16,), log_std_init=-0.5)
    obs = torch.randn(4096, 5)
    with torch.no_grad():
        actions, log_prob = policy.sample(obs)
        dist = policy.distribution(obs)
        torch.testing.assert_close(log_prob, policy.log_prob(dist, actions), rtol=1e-5, atol=1e-5)
        if space.shape == (3,):  # a = mu + sigma eps: right mean and spread
            z = (actions - dist.mean) / dist.stddev
            assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05


def test_discrete_rollout_sampling_and_greedy_action_are_torchs_categorical_written_out():
    from torch.distributions import Categorical

    from bellmax.core.nets import Policy

    policy = Policy(gym.spaces.Box(-1, 1, (5,)), gym.spaces.Discrete(4), (16,))
    torch.nn.init.normal_(policy.net[-1].weight, std=1.0)  # logits far from uniform
    obs = torch.randn(2, 512, 5)
    with torch.no_grad():
        logits = policy.net(obs)
        torch.manual_seed(3)
        actions, log_prob = policy.sample(obs)
        torch.manual_seed(3)
        dist = Categorical(logits=logits)
        expected = dist.sample()
        assert actions.shape == (2, 512) and torch.equal(actions, expected)  # the same draw from the RNG
        assert torch.equal(log_prob, dist.log_prob(expected))
        assert torch.equal(policy.act(obs, deterministic=True), dist.mode)
