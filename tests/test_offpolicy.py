"""DQN, DDPG, TD3 and SAC: TD targets as in the papers, the replay buffer keeps terminal and
truncated transitions apart, the squashed log-density is right, resume is exact, agents learn."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from bellmax.algos import DDPG, DQN, SAC, TD3, DQNConfig, SACConfig, load
from bellmax.algos.dqn import dqn_targets
from bellmax.core.nets import polyak_update, squashed_log_prob
from bellmax.errors import BellmaxError

TINY = dict(hidden_sizes=(16, 16), learning_starts=50, batch_size=32, buffer_size=5000, log_every=100)


def test_td_target_bootstraps_unless_terminated():
    rewards, terminated = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[2.0, 5.0], [2.0, 5.0]])
    y = dqn_targets(rewards, terminated, next_q, next_q, gamma=0.9, double_q=False)
    assert y.tolist() == pytest.approx([1 + 0.9 * 5.0, 1.0])


def test_double_dqn_target_picks_with_online_net_and_rates_with_target_net():
    rewards, terminated = torch.zeros(1), torch.zeros(1)
    online = torch.tensor([[1.0, 3.0, 2.0]])  # online argmax: action 1
    target = torch.tensor([[10.0, 4.0, 7.0]])  # target argmax would be action 0
    assert dqn_targets(rewards, terminated, online, target, 1.0, double_q=True).item() == 4.0
    assert dqn_targets(rewards, terminated, online, target, 1.0, double_q=False).item() == 10.0


def test_dueling_q_mean_over_actions_equals_value():
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a'): averaging over actions leaves V(s) exactly, and
    Q's differences between actions are the advantage stream's."""
    import gymnasium as gym

    from bellmax.core.nets import QHead

    torch.manual_seed(0)
    head = QHead(gym.spaces.Box(-1, 1, (4,)), n_actions=5, hidden_sizes=(16,), dueling=True)
    assert head.value[-1].out_features == 1 and head.advantage[-1].out_features == 5
    obs = torch.randn(7, 4)
    with torch.no_grad():
        q = head(obs)
        value = head.value(head.encoder(obs)).squeeze(-1)
        advantage = head.advantage(head.encoder(obs))
    assert q.shape == (7, 5)
    assert advantage.mean(-1).abs().min() > 1e-3  # a raw A with nonzero mean: V + A alone would fail
    assert torch.allclose(q.mean(-1), value, atol=1e-6)
    assert torch.allclose(q - q[:, :1], advantage - advantage[:, :1], atol=1e-6)
    dqn = DQN(DQNConfig(env="CartPole-v1", seed=0, dueling=True, **TINY))
    assert dqn.q.dueling and dqn.q_target.dueling


def test_epsilon_anneals_linearly_from_initial_to_final_over_the_exploration_fraction():
    agent = DQN(DQNConfig(env="CartPole-v1", seed=0, total_steps=10_000, exploration_initial=1.0,
                          exploration_final=0.05, exploration_fraction=0.2, **TINY))
    schedule = {}
    for step in (0, 500, 1000, 2000, 5000, 10_000):
        agent.global_step = step
        schedule[step] = agent.epsilon()
    assert schedule == pytest.approx({0: 1.0, 500: 0.7625, 1000: 0.525, 2000: 0.05, 5000: 0.05, 10_000: 0.05})


def test_dqn_regresses_with_huber_loss_clips_gradients_and_refreshes_the_target_every_interval():
    """Nature DQN: Huber loss of Q(s, a) against y (quadratic inside |delta| <= 1, linear outside),
    the global gradient norm clipped to max_grad_norm before Adam steps, and the target network a
    copy of the online one, refreshed once every target_update_interval env steps."""
    agent = DQN(DQNConfig(env="CartPole-v1", seed=0, target_update_interval=200, max_grad_norm=0.05,
                          **{**TINY, "log_every": 50}))
    agent.train_iteration(50)  # learning starts at 50: from here on, one update per env step
    rng = np.random.default_rng(0)
    batch = agent.replay.sample(32, rng)
    batch["rewards"] = batch["rewards"] + torch.linspace(-3, 3, 32)  # targets far off: both Huber regions
    with torch.no_grad():
        targets = dqn_targets(batch["rewards"], batch["terminated"], agent.q(batch["next_obs"]),
                              agent.q_target(batch["next_obs"]), batch["discounts"], agent.config.double_q)
    delta = agent.q(batch["obs"]).gather(-1, batch["actions"].long()[:, None]).squeeze(-1) - targets
    huber = torch.where(delta.abs() <= 1, 0.5 * delta**2, delta.abs() - 0.5).mean()
    assert (delta.abs() > 1).any() and (delta.abs() < 1).any()
    grads = torch.autograd.grad(huber, list(agent.q.parameters()))
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) > 0.1  # above max_grad_norm
    norms = []
    step = agent.optimizer.step

    def record_norm_then_step():
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in agent.q.parameters()])).item())
        step()

    agent.optimizer.step = record_norm_then_step
    agent.last_target_update = agent.global_step  # just refreshed
    metrics = agent.gradient_step(batch)
    assert metrics["losses/loss_q"] == pytest.approx(huber.item(), rel=1e-5)
    assert norms[-1] == pytest.approx(0.05, rel=1e-4)  # clipped

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))

    assert not same(agent.q, agent.q_target)
    frozen_target = [p.clone() for p in agent.q_target.parameters()]
    agent.global_step += 199
    agent.gradient_step(agent.replay.sample(32, rng))
    assert all(torch.equal(a, b) for a, b in zip(agent.q_target.parameters(), frozen_target))  # 199 < 200
    agent.global_step += 1
    agent.gradient_step(agent.replay.sample(32, rng))
    assert same(agent.q, agent.q_target)  # 200 steps since the last refresh: a copy again


def test_polyak_update_moves_target_by_tau():
    online, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    polyak_update(target, online, tau=0.1)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)
    polyak_update(target, online, tau=1.0)
    assert torch.equal(target.weight, online.weight)


def test_squashed_gaussian_log_prob_matches_change_of_variables_numerically():
    # y = tanh(u): p_y(y) = p_u(u) / |dy/du|, with dy/du by finite differences
    mean, log_std = torch.tensor([0.3]), torch.tensor([-0.2])
    u = torch.linspace(-3, 3, 13)[:, None].double()
    h = 1e-6
    dy_du = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    expected = torch.distributions.Normal(mean.double(), log_std.exp().double()).log_prob(u) - torch.log(dy_du)
    ours = squashed_log_prob(u, mean.double(), log_std.double())
    assert torch.allclose(ours, expected[:, 0], atol=1e-6)
    # and the density integrates to 1 over the normalized action interval (-1, 1)
    y = torch.linspace(-1 + 1e-6, 1 - 1e-6, 200001).double()
    density = squashed_log_prob(torch.atanh(y)[:, None], mean.double(), log_std.double()).exp()
    assert torch.trapezoid(density, y).item() == pytest.approx(1.0, abs=1e-3)


def test_sac_log_prob_is_the_same_on_a_wider_box_so_the_target_entropy_means_the_same():
    # log pi lives in the normalized space [-1, 1]^d: the Box's scale (2 on Pendulum's [-2, 2])
    # stretches the action, not the entropy alpha is tuned on (SAC paper, SB3, Spinning Up)
    import gymnasium as gym

    from bellmax.core.nets import SquashedGaussianActor

    obs_space = gym.spaces.Box(-1.0, 1.0, (3,))
    unit = SquashedGaussianActor(obs_space, gym.spaces.Box(-1.0, 1.0, (2,)), (16, 16))
    wide = SquashedGaussianActor(obs_space, gym.spaces.Box(-2.0, 2.0, (2,)), (16, 16))
    wide.load_state_dict(unit.state_dict() | {"scale": wide.scale, "bias": wide.bias})
    obs = torch.randn(64, 3)
    torch.manual_seed(0)
    unit_actions, unit_log_prob = unit.sample(obs)
    torch.manual_seed(0)
    wide_actions, wide_log_prob = wide.sample(obs)
    assert torch.allclose(wide_actions, 2 * unit_actions)  # the same noise, stretched to the wider box
    assert torch.equal(wide_log_prob, unit_log_prob)


import toy_envs  # noqa: E402,F401  (registers bellmax-test/Corridor-v0)


@pytest.mark.parametrize("terminate", [True, False])
def test_replay_stores_true_final_state_skips_autoreset_filler_and_keeps_truncation_non_terminal(terminate):
    from bellmax.envs.make import make_vec_env

    env = make_vec_env("bellmax-test/Corridor-v0", 1, seed=0, terminate=terminate,
                       max_episode_steps=4 if terminate else 3)
    agent = DQN(DQNConfig(env="bellmax-test/Corridor-v0", learning_starts=10**6, log_every=8, **{
        k: v for k, v in TINY.items() if k not in ("learning_starts", "log_every")}), env=env)
    agent.train_iteration(8)  # 8 vector steps = 2 episodes of 3 steps + 2 filler steps
    r = agent.replay
    assert len(r) == 6, "the two autoreset filler steps are not transitions"
    assert r.next_obs[:6, 0].tolist() == [1, 2, 3, 1, 2, 3]
    assert r.terminated[:6].tolist() == ([0, 0, 1] * 2 if terminate else [0, 0, 0] * 2)


@pytest.mark.parametrize("algo", [DQN, DDPG, TD3, SAC])
def test_resume_is_bit_for_bit_with_replay_buffer_and_exploration_state(tmp_path, algo):
    env = "CartPole-v1" if algo is DQN else "Pendulum-v1"
    extra = {"noise_type": "ornstein_uhlenbeck"} if algo is DDPG else {}
    config = algo.config_class(env=env, seed=3, total_steps=600, eval_episodes=0, **TINY, **extra)
    straight = algo(config).learn()
    first = algo(config).learn(until_step=300)
    first.save(tmp_path / "ckpt.pt")
    resumed = load(tmp_path / "ckpt.pt").learn()
    for name, module in straight.modules().items():
        other = resumed.modules()[name]
        for (k, a), (_, b) in zip(module.state_dict().items(), other.state_dict().items()):
            assert torch.equal(a, b), f"{name}.{k}"
    assert np.array_equal(straight.replay.obs, resumed.replay.obs)


@pytest.mark.parametrize("algo", [DQN, DDPG, TD3, SAC])
def test_updates_change_every_trainable_parameter(algo):
    env = "CartPole-v1" if algo is DQN else "Pendulum-v1"
    agent = algo(algo.config_class(env=env, seed=0, **TINY))
    trainable = {n: p for m, mod in agent.modules().items() if "target" not in m
                 for n, p in ((f"{m}.{k}", p) for k, p in mod.named_parameters()) if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    agent.train_iteration(200)
    assert [n for n in trainable if torch.equal(before[n], trainable[n])] == []


@pytest.mark.parametrize("algo", [DDPG, TD3, SAC])
def test_actor_step_goes_through_the_critic_without_touching_its_gradients(algo):
    """The actor loss backpropagates through Q(s, mu(s)) into the actor only: the critics' gradients
    after the update are exactly those their own optimizer stepped with (the actor loss adds none,
    and its critic weight gradients are not even computed), the actor gets a nonzero gradient,
    and the critics are trainable again afterwards."""
    agent = algo(algo.config_class(env="Pendulum-v1", seed=0, **TINY))
    agent.train_iteration(100)
    if algo is not SAC:
        agent.updates = agent.config.policy_delay - 1  # the next update also steps the actor
    critic_params = list(agent.critics.parameters())
    stepped_with: list[torch.Tensor] = []
    critic_step = agent.critic_optimizer.step

    def step_and_record() -> None:
        stepped_with.extend(p.grad.clone() for p in critic_params)
        critic_step()

    agent.critic_optimizer.step = step_and_record
    agent.actor_optimizer.zero_grad()
    agent.gradient_step(agent.replay.sample(32, np.random.default_rng(1)))
    assert len(stepped_with) == len(critic_params)
    assert all(torch.equal(p.grad, g) for p, g in zip(critic_params, stepped_with))
    assert all(p.requires_grad for p in critic_params)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())


class HalfFirstCoordinate(torch.nn.Module):
    """A known target actor: mu'(s) = s_0 / 2."""

    def forward(self, obs):
        return 0.5 * obs[..., :1]


class SumPlusThreeA(torch.nn.Module):
    """A known target critic: Q'(s, a) = sum_i s_i + 3 a."""

    def forward(self, obs, actions):
        return obs.sum(-1) + 3 * actions[..., 0]


def with_known_targets(agent):
    agent.actor_target = HalfFirstCoordinate()
    agent.critics_target = torch.nn.ModuleList([SumPlusThreeA()])
    return agent


def test_ddpg_target_bootstraps_the_target_critic_at_the_target_actors_action_unless_terminated():
    """y = r + gamma (1 - d) Q'(s', mu'(s'))."""
    agent = with_known_targets(DDPG(DDPG.config_class(env="Pendulum-v1", seed=0, **TINY)))
    batch = {"next_obs": torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]),
             "rewards": torch.tensor([1.0, -1.0, 0.5]), "terminated": torch.tensor([0.0, 1.0, 0.0]),
             "discounts": torch.full((3,), 0.9)}
    # mu'(s') = 0.5, 0, 1; Q'(s', mu'(s')) = 6 + 1.5, 1 + 0, 2 + 3
    assert agent.critic_targets(batch).tolist() == pytest.approx([1 + 0.9 * 7.5, -1.0, 0.5 + 0.9 * 5.0])


def test_ddpg_target_of_a_time_limit_truncation_bootstraps_from_the_final_state():
    """Pendulum never terminates; its 5-step time limit truncates. The episode's last transition
    keeps d = 0 and s' = the final state, so its target is r + gamma Q'(s', mu'(s')), not r."""
    from bellmax.envs.make import make_vec_env

    env = make_vec_env("Pendulum-v1", 1, seed=0, max_episode_steps=5)
    config = DDPG.config_class(env="Pendulum-v1", seed=0, gamma=0.9, **{**TINY, "learning_starts": 10**6,
                                                                        "log_every": 6})
    agent = with_known_targets(DDPG(config, env=env))
    agent.train_iteration(6)  # one truncated episode of 5 steps, then the autoreset filler
    r = agent.replay
    assert len(r) == 5 and r.terminated[:5].tolist() == [0] * 5
    assert np.array_equal(r.next_obs[:4], r.obs[1:5])  # each s' is the next step's s, up to the final state
    final = {"next_obs": torch.as_tensor(r.next_obs[4:5]), "rewards": torch.as_tensor(r.rewards[4:5]),
             "terminated": torch.as_tensor(r.terminated[4:5]), "discounts": torch.as_tensor(r.discounts[4:5])}
    s = r.next_obs[4].astype(np.float64)
    expected = r.rewards[4] + 0.9 * (s.sum() + 3 * 0.5 * s[0])
    assert agent.critic_targets(final).item() == pytest.approx(expected, rel=1e-5)
    assert abs(expected - r.rewards[4]) > 0.1  # the bootstrap term is really there


def test_td3_target_is_the_smaller_of_its_two_target_critics():
    """Fix 1, clipped double Q: y = r + gamma (1 - d) min_i Q_i'(s', a'), with the same a' for both."""
    agent = TD3(TD3.config_class(env="Pendulum-v1", seed=0, **TINY))
    agent.train_iteration(100)
    batch = agent.replay.sample(64, np.random.default_rng(0))
    torch.manual_seed(5)
    with torch.no_grad():
        targets = agent.critic_targets(batch)
        torch.manual_seed(5)  # the same smoothing noise, so the same a'
        next_actions = agent.target_actions(batch["next_obs"])
        q1, q2 = (q(batch["next_obs"], next_actions) for q in agent.critics_target)
    expected = batch["rewards"] + batch["discounts"] * (1 - batch["terminated"]) * torch.minimum(q1, q2)
    assert torch.allclose(targets, expected)
    assert (q1 < q2).any() and (q2 < q1).any()  # both critics are the minimum somewhere: a real test of min


def test_td3_target_policy_smoothing_noise_is_clipped_and_the_action_stays_in_bounds():
    """Fix 2: a' = clip(mu'(s') + clip(eps, -c, c), low, high), eps ~ N(0, sigma), in units of half
    the action range. With a huge sigma nearly every eps is clipped: a' - mu'(s') is +-c x scale."""
    agent = TD3(TD3.config_class(env="Pendulum-v1", seed=0, target_policy_noise=100.0, target_noise_clip=0.3, **TINY))
    next_obs = torch.randn(2000, 3)
    with torch.no_grad():
        mu = agent.actor_target(next_obs)
        actions = agent.target_actions(next_obs)
    scale, low, high = agent.actor.scale, agent.actor.bias - agent.actor.scale, agent.actor.bias + agent.actor.scale
    shift = ((actions - mu) / scale).abs()
    assert (shift <= 0.3 + 1e-6).all() and (shift > 0.3 - 1e-6).float().mean() > 0.99
    agent.config = agent.config.replace(target_noise_clip=1.5)  # mu' +- 3: past the bounds -2, 2 every time
    with torch.no_grad():
        actions = agent.target_actions(next_obs)
    assert ((actions == low) | (actions == high)).float().mean() > 0.98  # unless |eps| < 1.1 (about 1%)
    assert (actions >= low).all() and (actions <= high).all()
    agent = TD3(TD3.config_class(env="Pendulum-v1", seed=0, target_policy_noise=0.2, **TINY))
    with torch.no_grad():
        shift = (agent.target_actions(next_obs) - agent.actor_target(next_obs)) / agent.actor.scale
    assert shift.std().item() == pytest.approx(0.2, rel=0.1)  # mostly unclipped at c = 0.5 = 2.5 sigma


def test_td3_moves_actor_and_targets_once_every_policy_delay_critic_steps():
    """Fix 3: with policy_delay d, the critics step every update; the actor and both targets every d-th."""
    agent = TD3(TD3.config_class(env="Pendulum-v1", seed=0, policy_delay=3, **TINY))
    agent.train_iteration(100)
    rng = np.random.default_rng(0)
    agent.updates = 0
    moved = []
    for _ in range(6):
        before = {name: [p.detach().clone() for p in mod.parameters()] for name, mod in agent.modules().items()}
        metrics = agent.gradient_step(agent.replay.sample(32, rng))
        moved.append({name for name, mod in agent.modules().items()
                      if not all(torch.equal(a, b) for a, b in zip(before[name], mod.parameters()))})
        assert ("losses/loss_actor" in metrics) == (agent.updates % 3 == 0)
    everything = {"critics", "actor", "actor_target", "critics_target"}
    assert moved == [{"critics"}, {"critics"}, everything, {"critics"}, {"critics"}, everything]


@pytest.mark.parametrize("algo", [DDPG, TD3])
def test_ddpg_and_td3_networks_start_from_pytorchs_default_init_as_the_td3_reference_code(algo):
    # the TD3 authors' code and SB3 keep nn.Linear's init: weights and biases within +-1/sqrt(fan_in);
    # the orthogonal sqrt(2) init of the policy-gradient nets exceeds that bound and learned worse here
    agent = algo(algo.config_class(env="Pendulum-v1", hidden_sizes=(256, 256), buffer_size=100, batch_size=8))
    linears = [m for net in (agent.actor, *agent.critics) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 * (1 + len(agent.critics))
    for layer in linears:
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    # and a fresh actor is far from tanh's flat ends on the observations it will see
    space = agent.env.single_observation_space
    obs = torch.as_tensor(np.random.default_rng(0).uniform(space.low, space.high, size=(1000, 3)), dtype=torch.float32)
    with torch.no_grad():
        mu = (agent.actor(obs) - agent.actor.bias) / agent.actor.scale
    assert mu.abs().max() < 0.9


@pytest.mark.parametrize("noise_type", ["gaussian", "ornstein_uhlenbeck"])
def test_ddpg_exploration_noise_is_white_or_an_ornstein_uhlenbeck_process_that_restarts_each_episode(noise_type):
    """OU noise is x <- x - theta x + sigma eps, an AR(1) process: its lag-1 autocorrelation is
    1 - theta and its stationary variance sigma^2 / (1 - (1 - theta)^2); Gaussian noise is white.
    The action is mu(s) + scale * noise, so the noise is read back from the actions."""
    sigma, theta = 0.1, 0.15
    agent = DDPG(DDPG.config_class(env="Pendulum-v1", seed=3, num_envs=1, hidden_sizes=(8,), noise_type=noise_type,
                                   exploration_noise=sigma, ou_theta=theta, learning_starts=10))
    obs = torch.zeros(1, 3)
    torch.set_grad_enabled(False)  # as in the rollout loop
    try:
        mu, scale = agent.actor(obs).numpy(), agent.actor.scale.numpy()
        noise = np.array([((agent.explore(obs) - mu) / scale)[0, 0] for _ in range(4000)])
        agent.ou_noise[:] = 10.0  # far out, then the episode ends: the next noise starts again from 0
        agent.prev_done[:] = True
        fresh = ((agent.explore(obs) - mu) / scale)[0, 0]
    finally:
        torch.set_grad_enabled(True)
    lag1 = np.corrcoef(noise[:-1], noise[1:])[0, 1]
    if noise_type == "gaussian":
        assert abs(lag1) < 0.05 and noise.std() == pytest.approx(sigma, rel=0.05)
    else:
        assert lag1 == pytest.approx(1 - theta, abs=0.03)
        assert noise.var() == pytest.approx(sigma**2 / (1 - (1 - theta) ** 2), rel=0.15)
        assert abs(fresh) < 4 * sigma


def test_wrong_action_space_is_a_clear_error():
    with pytest.raises(BellmaxError, match="dqn needs discrete actions, but Pendulum-v1 has Box"):
        DQN(DQNConfig(env="Pendulum-v1"))
    with pytest.raises(BellmaxError, match="sac needs continuous"):
        SAC(SACConfig(env="CartPole-v1"))


def test_sac_target_is_the_soft_bellman_backup_with_the_smaller_target_critic():
    """y = r + gamma (1 - d) [min_i Q_i'(s', a') - alpha log pi(a'|s')], a' ~ pi(.|s'); y = r where terminal."""
    agent = SAC(SACConfig(env="Pendulum-v1", seed=0, **TINY))
    agent.train_iteration(100)
    batch = agent.replay.sample(64, np.random.default_rng(0))
    batch["terminated"][:8] = 1.0
    alpha = torch.tensor(0.3)
    torch.manual_seed(7)
    targets = agent.soft_targets(batch, alpha)
    torch.manual_seed(7)  # the same a'
    with torch.no_grad():
        next_actions, log_prob = agent.actor.sample(batch["next_obs"])
        q1, q2 = (q(batch["next_obs"], next_actions) for q in agent.critics_target)
    soft_value = torch.minimum(q1, q2) - alpha * log_prob
    assert torch.allclose(targets, batch["rewards"] + batch["discounts"] * (1 - batch["terminated"]) * soft_value)
    assert torch.equal(targets[:8], batch["rewards"][:8])
    assert (q1 < q2).any() and (q2 < q1).any() and (log_prob != 0).all()


def test_a_replay_larger_than_the_machine_is_refused_before_training_and_one_larger_than_free_memory_warned(
        monkeypatch):
    from bellmax.core import offpolicy

    agent = DQN(DQNConfig(env="CartPole-v1", seed=0, **{**TINY, "buffer_size": 100_000}))
    needed = agent.replay.nbytes
    assert needed >= 100_000 * (2 * 4 * 4 + 8 + 4 + 1)  # s and s' (4 float32 each), action, reward, done
    monkeypatch.setattr(offpolicy, "memory_bytes", lambda: (needed - 1, needed - 1))
    with pytest.raises(BellmaxError, match=r"replay buffer of 100,000 transitions needs .* lower --buffer-size"):
        agent.learn(100)
    assert agent.global_step == 0
    monkeypatch.setattr(offpolicy, "memory_bytes", lambda: (10 * needed, needed - 1))
    with pytest.warns(UserWarning, match="may be killed for memory"):
        agent.learn(100)
    assert agent.global_step == 100
    # resumed with about 100 of 100,000 transitions in memory already: what is left to fill counts
    resumed = DQN.from_state(agent.state_dict())
    left = needed * (1 - len(resumed.replay) / 100_000)
    assert 0 < len(resumed.replay) <= 100
    monkeypatch.setattr(offpolicy, "memory_bytes", lambda: (10 * needed, int(left) + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.learn(200)


def test_a_disk_that_cannot_take_one_checkpoint_of_the_replay_is_warned_about_at_the_start(tmp_path, monkeypatch):
    import shutil

    from bellmax.core.run import Run

    agent = DQN(DQNConfig(env="CartPole-v1", seed=0, **{**TINY, "buffer_size": 100_000}))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=agent.replay.nbytes - 1))
    with pytest.warns(UserWarning, match=r"checkpoint of this run holds its replay buffer.*checkpoints will fail"):
        agent.learn(100, run=Run(tmp_path / "run", "dqn", agent.config.to_dict(), tensorboard=False))


def test_sac_tunes_alpha_towards_the_target_entropy():
    agent = SAC(SACConfig(env="Pendulum-v1", seed=0, **TINY))
    agent.train_iteration(400)
    assert agent.target_entropy == -1.0
    assert agent.log_alpha.exp().item() < 1.0  # entropy above target at the start: alpha decreases
    assert math.isfinite(agent.log_alpha.item())


def sac_agent_and_batch(alpha_init: float = 0.5):
    agent = SAC(SACConfig(env="Pendulum-v1", seed=0, alpha_init=alpha_init, **TINY))
    generator = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(16, 3, generator=generator), "next_obs": torch.randn(16, 3, generator=generator),
             "actions": 4 * torch.rand(16, 1, generator=generator) - 2, "rewards": torch.randn(16, generator=generator),
             "terminated": torch.zeros(16), "discounts": torch.full((16,), 0.99)}
    return agent, batch


def test_sac_actor_and_temperature_losses_are_the_papers_on_the_same_sampled_actions():
    """L_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)], a = tanh-squashed reparameterized sample,
    L_alpha = -E[log alpha (log pi(a|s) + H_target)], recomputed here from the policy's mean and
    log std with the same Gaussian noise and the change of variables written out by hand."""
    agent, batch = sac_agent_and_batch(alpha_init=0.5)
    actor_before = copy.deepcopy(agent.actor)
    log_alpha = agent.log_alpha.item()
    torch.manual_seed(11)
    metrics = agent.gradient_step(batch)
    torch.manual_seed(11)
    torch.randn(16, 1)  # the noise of a' ~ pi(.|s') in the critic target comes first
    noise = torch.randn(16, 1)
    with torch.no_grad():
        mean, log_std = actor_before(batch["obs"])
        u = mean + log_std.exp() * noise
        actions = 2.0 * torch.tanh(u)  # Pendulum: a in [-2, 2]
        gaussian = -0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)
        # measured in the normalized space [-1, 1]: the tanh Jacobian only, not the action scale's
        log_pi = (gaussian - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
        q1, q2 = (q(batch["obs"], actions) for q in agent.critics)  # the critics after their own step
    assert (q1 < q2).any() and (q2 < q1).any()
    expected_actor = (0.5 * log_pi - torch.minimum(q1, q2)).mean().item()
    expected_alpha = -(log_alpha * (log_pi + agent.target_entropy)).mean().item()
    assert agent.target_entropy == -1.0  # H_target = -dim(A)
    assert metrics["losses/loss_actor"] == pytest.approx(expected_actor, rel=1e-5)
    assert metrics["losses/loss_alpha"] == pytest.approx(expected_alpha, rel=1e-5)
    assert metrics["losses/entropy"] == pytest.approx(-log_pi.mean().item(), rel=1e-5)


@pytest.mark.parametrize("log_std, alpha_rises", [(-4.0, True), (0.0, False)])
def test_sac_temperature_rises_when_entropy_is_below_target_and_falls_when_above(log_std, alpha_rises):
    """dL_alpha/dlog alpha = -(E[log pi] + H_target) = E[-log pi] - H_target: negative (alpha rises)
    when the policy's entropy E[-log pi] is below H_target = -1, positive when above. Measured in the
    normalized space [-1, 1] (whatever the box), a tanh-squashed Gaussian of std e^-4 around 0 has
    entropy about -4 + 1.42 = -2.6; one of std 1 about 0.6."""
    agent, batch = sac_agent_and_batch(alpha_init=1.0)
    with torch.no_grad():
        agent.actor.log_std.weight.zero_()
        agent.actor.log_std.bias.fill_(log_std)
        agent.actor.mean.weight.zero_()
        agent.actor.mean.bias.zero_()
    torch.manual_seed(0)
    metrics = agent.gradient_step(batch)
    entropy_below_target = metrics["losses/entropy"] < agent.target_entropy
    assert entropy_below_target == alpha_rises
    assert (agent.log_alpha.grad.item() < 0) == alpha_rises
    assert (metrics["losses/alpha"] > 1.0) == alpha_rises


@pytest.mark.slow
def test_dqn_solves_cartpole_with_its_preset():
    config = DQNConfig.from_preset("CartPole-v1").replace(seed=0)
    agent = DQN(config).learn()
    assert agent.last_eval.mean() >= 475, agent.last_eval


@pytest.mark.slow
@pytest.mark.parametrize("algo", [SAC, TD3])
def test_reaches_minus_250_on_pendulum_with_its_preset(algo):
    config = algo.config_class.from_preset("Pendulum-v1").replace(seed=0)
    agent = algo(config).learn()
    assert agent.last_eval.mean() >= -250, agent.last_eval




@pytest.mark.parametrize("terminate", [True, False])
def test_n_step_transitions_sum_discounted_rewards_and_bootstrap_with_gamma_to_the_k(terminate):
    from bellmax.envs.make import make_vec_env

    env = make_vec_env("bellmax-test/Corridor-v0", 1, seed=0, terminate=terminate,
                       max_episode_steps=4 if terminate else 3)
    small = {k: v for k, v in TINY.items() if k not in ("learning_starts", "log_every")}
    agent = DQN(DQNConfig(env="bellmax-test/Corridor-v0", learning_starts=10**6, log_every=4, n_step=2, gamma=0.5,
                          **small), env=env)
    agent.train_iteration(4)  # one 3-step episode, then the autoreset filler
    r = agent.replay
    assert len(r) == 3
    # from s0: r0 + 0.5 r1 -> s2, discount 0.25; from s1: r1 + 0.5 r2 -> s3 (the end);
    # from s2: r2 -> s3, discount 0.5; only the ones reaching the end carry d = terminated
    assert r.obs[:3, 0].tolist() == [0, 1, 2]
    assert r.rewards[:3].tolist() == [1.5, 1.5, 1.0]
    assert r.next_obs[:3, 0].tolist() == [2, 3, 3]
    assert r.discounts[:3].tolist() == [0.25, 0.25, 0.5]
    assert r.terminated[:3].tolist() == ([0, 1, 1] if terminate else [0, 0, 0])


def test_n_step_resume_is_bit_for_bit(tmp_path):
    config = DQNConfig(seed=4, total_steps=600, eval_episodes=0, n_step=3, **TINY)
    straight = DQN(config).learn()
    first = DQN(config).learn(until_step=300)
    first.save(tmp_path / "ckpt.pt")
    resumed = load(tmp_path / "ckpt.pt").learn()
    assert straight.params_sha256() == resumed.params_sha256()
    assert np.array_equal(straight.replay.rewards, resumed.replay.rewards)


def test_prioritized_replay_samples_in_proportion_to_priority_and_weights_undo_the_bias():
    from bellmax.core.replay import PrioritizedReplayBuffer

    buffer = PrioritizedReplayBuffer(8, (1,), (), alpha=1.0)
    obs = np.arange(4, dtype=np.float32)[:, None]
    buffer.add(obs, np.zeros(4), np.zeros(4), obs, np.zeros(4), np.ones(4, dtype=bool))
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))  # P = 0.1, 0.2, 0.3, 0.4
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(500):
        counts += np.bincount(buffer.sample(20, rng)["indices"].numpy(), minlength=4)
    assert np.allclose(counts / counts.sum(), [0.1, 0.2, 0.3, 0.4], atol=0.01)
    buffer.beta = 1.0
    batch = buffer.sample(20, rng)
    p = np.array([0.1, 0.2, 0.3, 0.4])[batch["indices"].numpy()]
    expected = (4 * p) ** -1.0
    assert np.allclose(batch["weights"].numpy(), expected / (4 * 0.1) ** -1.0, rtol=1e-5)


def test_prioritized_replay_weights_are_normalized_by_the_buffer_wide_largest_weight():
    # Schaul et al.: w_i = (N P(i))^-beta / max_j w_j over the whole buffer, the max set by the
    # smallest priority. Here the batch misses the lowest-priority item 0, so it does not hold the
    # largest weight: dividing by the batch's largest would give 1 and 0.87 instead.
    from bellmax.core.replay import PrioritizedReplayBuffer

    buffer = PrioritizedReplayBuffer(8, (1,), (), alpha=1.0, eps=0.0)
    obs = np.arange(4, dtype=np.float32)[:, None]
    buffer.add(obs, np.zeros(4), np.zeros(4), obs, np.zeros(4), np.ones(4, dtype=bool))
    priorities = np.array([0.5, 3.0, 3.0, 4.0])
    buffer.update_priorities(np.arange(4), priorities)
    buffer.beta = 0.5
    batch = buffer.sample(6, np.random.default_rng(0))
    indices = batch["indices"].numpy()
    assert 0 not in indices and set(indices) == {1, 2, 3}
    p_min, p = 0.5 / 10.5, priorities[indices] / 10.5
    expected = (4 * p) ** -0.5 / (4 * p_min) ** -0.5  # (0.5 / 3)^0.5 = 0.41 and (0.5 / 4)^0.5 = 0.35
    assert np.allclose(batch["weights"].numpy(), expected, rtol=1e-5)
    assert np.allclose(sorted(set(batch["weights"].tolist())), [(0.5 / 4) ** 0.5, (0.5 / 3) ** 0.5])


def test_prioritized_replay_tracks_the_smallest_priority_through_updates_and_overwrites():
    from bellmax.core.replay import SumTree

    tree = SumTree(5)
    assert tree.min_positive == np.inf
    tree.set(np.arange(5), np.array([4.0, 2.0, 3.0, 5.0, 6.0]))
    assert tree.min_positive == 2.0
    tree.set(np.array([1]), np.array([7.0]))  # the smallest raised: the next one takes over
    assert tree.min_positive == 3.0
    tree.set(np.array([2, 4]), np.array([0.0, 0.5]))  # a dropped leaf (0) is never drawn, never the min
    assert tree.min_positive == 0.5 and tree.total == 4.0 + 7.0 + 5.0 + 0.5


def test_dqn_with_prioritized_replay_updates_priorities_from_td_errors():
    agent = DQN(DQNConfig(seed=0, prioritized_replay=True, total_steps=2000, **TINY))
    agent.train_iteration(300)
    leaves = agent.replay.priorities.get(np.arange(len(agent.replay)))
    assert len(np.unique(leaves)) > 10  # no longer all max-priority: sampled ones got |delta|
    assert 0.4 < agent.replay.beta < 1.0
