"""Atari (ale-py) and MuJoCo through make_vec_env: the standard preprocessing, raw game scores,
life-loss terminations for learning only, and exact environment state in checkpoints."""

import numpy as np
import pytest
import torch

from bellmax.algos import PPO, PPOConfig
from bellmax.envs.make import env_state, make_vec_env, restore_env


def test_atari_observations_are_stacked_84x84_grayscale_frames_and_rewards_are_raw():
    pytest.importorskip("ale_py")
    env = make_vec_env("ALE/Pong-v5", 2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    total = np.zeros(2)
    for _ in range(300):
        _, rewards, *_ = env.step(np.ones(2, dtype=np.int64) * 2)
        total += rewards
    assert np.all(total <= -1)  # a stuck paddle concedes points: raw -1 rewards, no clipping here


def test_ppo_on_atari_shares_a_nature_cnn_and_learns_from_clipped_rewards_with_life_losses():
    pytest.importorskip("ale_py")
    agent = PPO(PPOConfig(env="ALE/Breakout-v5", num_envs=2, n_steps=200, batch_size=200, n_epochs=1,
                          clip_reward=True, episodic_life=True, seed=0, eval_episodes=0))
    assert agent.policy.encoder is agent.value.encoder
    agent.collect_rollout(agent.buffer, 200, agent.value)
    b = agent.buffer
    assert b.obs.dtype == torch.uint8
    lost_life = b.terminated & ~b.truncated
    assert lost_life.any(), "a random Breakout policy loses lives within 200 steps"
    t, n = map(int, lost_life.nonzero()[0])
    if t + 1 < b.n_steps:
        assert b.valid[t + 1, n], "after a lost life the game goes on: the next step is a real transition"
    assert set(b.rewards.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_mujoco_env_state_restores_physics_and_rng_exactly(env_id):
    pytest.importorskip("mujoco")
    env = make_vec_env(env_id, 2, seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(400)]
    for a in actions[:50]:
        env.step(a)
    copy = restore_env(env_state(env))
    for a in actions[50:]:  # Hopper falls and resets several times in here: the RNG matters
        obs_a, r_a, *_ = env.step(a)
        obs_b, r_b, *_ = copy.step(a)
        assert np.array_equal(obs_a, obs_b) and np.array_equal(r_a, r_b)


def test_ppo_runs_on_mujoco_with_normalization():
    pytest.importorskip("mujoco")
    agent = PPO(PPOConfig(env="Hopper-v5", num_envs=2, n_steps=64, batch_size=64, n_epochs=2, normalize_obs=True,
                          normalize_reward=True, hidden_sizes=(32,), seed=0, eval_episodes=0))
    agent.learn(512)
    assert agent.global_step == 512 and agent.tracker.episodes > 0
    assert agent.policy.log_std.shape == (3,)


def test_dqn_on_atari_uses_the_frame_replay_buffer_and_a_nature_cnn():
    pytest.importorskip("ale_py")
    from bellmax.algos import DQN, DQNConfig
    from bellmax.core.replay import FrameStackReplayBuffer

    agent = DQN(DQNConfig(env="ALE/Pong-v5", num_envs=2, buffer_size=2000, learning_starts=100, batch_size=8,
                          train_freq=4, log_every=200, clip_reward=True, seed=0, eval_episodes=0))
    assert isinstance(agent.replay, FrameStackReplayBuffer)
    agent.train_iteration(200)
    batch = agent.replay.sample(8, agent.rng)
    assert batch["obs"].shape == (8, 4, 84, 84) and batch["obs"].dtype == torch.uint8
    assert agent.iteration == 0 and len(agent.replay) == 200


def test_dqn_n_step_on_atari_reads_n_step_transitions_from_the_frame_buffer():
    pytest.importorskip("ale_py")
    from bellmax.algos import DQN, DQNConfig

    agent = DQN(DQNConfig(env="ALE/Pong-v5", num_envs=1, buffer_size=2000, learning_starts=100, batch_size=8,
                          train_freq=4, log_every=200, n_step=3, gamma=0.9, seed=0, eval_episodes=0))
    assert agent.n_step is None and agent.replay.n_step == 3  # no accumulator: the ring holds the steps
    metrics = agent.train_iteration(200)
    assert metrics["losses/gradient_steps"] == 26  # every 4th step from step 100 to 200
    batch = agent.replay.sample(64, agent.rng)
    # Pong's first 200 steps never end an episode: transitions span 3 steps, fewer only at the newest
    full = torch.isclose(batch["discounts"], torch.tensor(0.9**3))
    assert full.float().mean() > 0.9
    assert all(any(abs(d - 0.9**m) < 1e-6 for m in (1, 2, 3)) for d in batch["discounts"].tolist())


def test_dqn_prioritized_replay_on_atari_updates_priorities_of_the_frame_rings():
    pytest.importorskip("ale_py")
    import numpy as np

    from bellmax.algos import DQN, DQNConfig
    from bellmax.core.replay import PrioritizedFrameStackReplayBuffer

    agent = DQN(DQNConfig(env="ALE/Pong-v5", num_envs=1, buffer_size=2000, learning_starts=100, batch_size=8,
                          train_freq=4, log_every=200, prioritized_replay=True, n_step=3, seed=0, eval_episodes=0))
    assert isinstance(agent.replay, PrioritizedFrameStackReplayBuffer)
    agent.train_iteration(200)
    priorities = agent.replay.priorities.get(np.arange(agent.replay.ring))
    assert len(np.unique(priorities[priorities > 0])) > 10  # sampled transitions got |delta| + eps
    assert 0.4 < agent.replay.beta < 1.0


def test_sac_stores_mujoco_float64_observations_as_the_float32_its_networks_use():
    """MuJoCo observations come as float64; the replay keeps them as float32 (half the memory,
    no conversion per forward pass) with exactly the values the networks would have seen."""
    pytest.importorskip("mujoco")
    from bellmax.algos import SAC, SACConfig

    agent = SAC(SACConfig(env="HalfCheetah-v5", seed=0, hidden_sizes=(16, 16), learning_starts=64, batch_size=32,
                          buffer_size=1000, log_every=100))
    assert agent.env.single_observation_space.dtype == np.float64
    first = agent.obs.copy()
    agent.train_iteration(100)
    assert agent.replay.obs.dtype == np.float32 and agent.replay.next_obs.dtype == np.float32
    assert np.array_equal(agent.replay.obs[0], first[0].astype(np.float32))
    batch = agent.replay.sample(32, np.random.default_rng(0))
    assert batch["obs"].dtype == torch.float32


def test_nature_cnn_runs_channels_last_and_computes_what_the_default_layout_computes():
    import gymnasium as gym

    from bellmax.core.nets import NatureCNN

    torch.manual_seed(0)
    cnn = NatureCNN(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in cnn.net.parameters() if w.dim() == 4)
    frames = torch.randint(0, 256, (2, 3, 4, 84, 84), dtype=torch.uint8)  # (batch dims..., C, H, W)
    features = cnn(frames)
    assert features.shape == (2, 3, 512)

    # the same weights in PyTorch's default layout, the Nature paper's x / 255 written out
    x = frames.reshape(6, 4, 84, 84).float() / 255.0
    for layer in cnn.net:
        x = layer(x.contiguous()) if not isinstance(layer, torch.nn.Conv2d) else torch.nn.functional.conv2d(
            x.contiguous(), layer.weight.contiguous(), layer.bias, layer.stride)
    expected = cnn.head(x).reshape(2, 3, 512)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)

    features.sum().backward()  # gradients keep the parameters' layout (Adam's moments follow it)
    assert cnn.net[0].weight.grad.is_contiguous(memory_format=torch.channels_last)

    floats = frames[0].float().contiguous(memory_format=torch.channels_last)  # already in the layout: no copy
    before = floats.clone()
    cnn(floats)
    assert torch.equal(floats, before), "the forward pass must not scale its input in place"
