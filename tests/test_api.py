"""The Python API a user meets first: one training budget that every schedule follows, predict on
one observation or a batch in a plain Gymnasium loop, presets as configs, environment objects,
and loading with the rule of what a resumed run may change."""

import json

import gymnasium as gym
import numpy as np
import pytest

import bellmax.algos
from bellmax.algos import A2C, DQN, PPO, SAC, VPG, A2CConfig, DQNConfig, PPOConfig, SACConfig, VPGConfig
from bellmax.config import config_with_preset, find_preset
from bellmax.core.algorithm import Algorithm
from bellmax.core.run import METRICS_JSONL, Run
from bellmax.errors import BellmaxError, ConfigError

SMALL = dict(num_envs=2, n_steps=32, hidden_sizes=(8,), eval_episodes=0)


def logged(run_dir, key):
    rows = [json.loads(line) for line in (run_dir / METRICS_JSONL).read_text().splitlines()]
    return [row[key] for row in rows if key in row]


# -- one budget -----------------------------------------------------------------------------------
def test_learn_sets_the_budget_that_ppo_anneals_learning_rate_and_clip_range_over(tmp_path):
    """PPOConfig's default total_steps is 100k; learn(256) makes 256 the run's budget, so four
    iterations of 64 steps anneal over 256 steps (1, 3/4, 1/2, 1/4 of the start), not over 100k."""
    config = PPOConfig(batch_size=32, anneal_lr=True, anneal_clip=True, learning_rate=1e-3, clip_range=0.2, **SMALL)
    with Run(tmp_path, "ppo", config.to_dict(), tensorboard=False) as run:
        agent = PPO(config).learn(256, run=run)
    assert agent.config.total_steps == 256 and agent.global_step == 256
    assert logged(tmp_path, "losses/learning_rate") == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert logged(tmp_path, "losses/clip_range") == pytest.approx([0.2, 0.15, 0.1, 0.05])
    assert json.loads((tmp_path / "config.json").read_text())["config"]["total_steps"] == 256


def test_learn_sets_the_budget_that_a2c_anneals_over(tmp_path):
    config = A2CConfig(anneal_lr=True, learning_rate=1e-3, **{**SMALL, "n_steps": 16})
    with Run(tmp_path, "a2c", config.to_dict(), tensorboard=False) as run:
        A2C(config).learn(128, run=run)
    assert logged(tmp_path, "losses/learning_rate") == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])


def test_learn_sets_the_budget_that_dqn_decays_epsilon_and_prioritized_beta_over(tmp_path):
    """epsilon reaches its final value at exploration_fraction of learn's budget, and the
    importance-weight exponent beta reaches 1 at its end."""
    config = DQNConfig(env="CartPole-v1", hidden_sizes=(8,), learning_starts=16, batch_size=8, buffer_size=500,
                       log_every=100, exploration_initial=1.0, exploration_final=0.0, exploration_fraction=0.5,
                       prioritized_replay=True, priority_beta=0.4, eval_episodes=0)
    with Run(tmp_path, "dqn", config.to_dict(), tensorboard=False) as run:
        agent = DQN(config).learn(400, run=run)
    assert logged(tmp_path, "rollout/epsilon") == pytest.approx([0.5, 0.0, 0.0, 0.0])
    assert logged(tmp_path, "losses/priority_beta")[-1] == pytest.approx(1.0)
    assert agent.replay.beta == pytest.approx(1.0)


def test_a_loaded_agent_trains_to_a_larger_budget_and_refuses_a_spent_one(tmp_path):
    agent = VPG(VPGConfig(batch_size=32, **SMALL)).learn(128)
    agent.save(tmp_path / "vpg.pt")
    loaded = bellmax.algos.load(tmp_path / "vpg.pt")
    with pytest.raises(BellmaxError, match=r"has taken 128 steps, its whole budget.*larger total_steps"):
        loaded.learn(64)
    assert loaded.global_step == 128
    assert loaded.learn(192).global_step == 192 and loaded.config.total_steps == 192


def test_until_step_pauses_at_an_iteration_boundary_within_the_budget():
    agent = VPG(VPGConfig(batch_size=32, total_steps=256, **SMALL))
    agent.learn(until_step=100)  # iterations of 64 steps: pauses after 128
    assert agent.global_step == 128 and agent.config.total_steps == 256
    with pytest.raises(BellmaxError, match="until_step"):
        agent.learn(until_step=1000)
    agent.learn()
    assert agent.global_step == 256


# -- acting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env_id", "action_shape"), [("CartPole-v1", ()), ("Pendulum-v1", (1,)),
                                                       ("bellmax/GridWorld-v0", ())])
def test_predict_takes_one_observation_or_a_batch(env_id, action_shape):
    import bellmax.envs  # noqa: F401  (registers bellmax/GridWorld-v0)

    agent = (VPG(VPGConfig(env=env_id, batch_size=32, **SMALL)) if env_id != "Pendulum-v1"
             else SAC(SACConfig(env=env_id, hidden_sizes=(8,), eval_episodes=0)))
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    action = agent.predict(obs)
    assert np.shape(action) == action_shape and env.action_space.contains(np.asarray(action, env.action_space.dtype))
    batch = np.stack([obs, obs, obs])
    actions = agent.predict(batch)
    assert actions.shape == (3, *action_shape)
    assert all(np.array_equal(a, action) for a in actions)  # deterministic: the same observation, the same action


def test_a_plain_gymnasium_loop_with_predict_scores_what_evaluate_reports():
    agent = SAC(SACConfig(env="Pendulum-v1", hidden_sizes=(8,), learning_starts=64, batch_size=16,
                          buffer_size=500, log_every=100, eval_episodes=0)).learn(200)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=123)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.predict(obs))
        total += float(reward)
        done = terminated or truncated
    assert total == pytest.approx(agent.evaluate(episodes=1, seed=123)[0], rel=1e-6)


# -- presets --------------------------------------------------------------------------------------
def test_from_preset_is_the_config_bellmax_train_starts_from():
    config = PPOConfig.from_preset("CartPole-v1")
    name, entry = find_preset("ppo", "CartPole-v1", None)
    assert config == config_with_preset(PPOConfig, "CartPole-v1", None)
    assert all(getattr(config, key) == value for key, value in entry["values"].items())
    assert PPOConfig.from_preset("CartPole-v1", seed=7).seed == 7
    assert PPOConfig.from_preset(name=name) == config
    with pytest.raises(BellmaxError, match=r"no ppo preset is tuned for Taxi-v3; presets: cartpole \(CartPole-v1\)"):
        PPOConfig.from_preset("Taxi-v3")


# -- environment objects --------------------------------------------------------------------------
def test_an_environment_object_trains_when_it_matches_the_config():
    agent = VPG(VPGConfig(env="CartPole-v1", batch_size=16, **{**SMALL, "num_envs": 1}), env=gym.make("CartPole-v1"))
    agent.learn(64)
    assert agent.global_step == 64 and agent.evaluate(episodes=2).shape == (2,)
    vector = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    assert PPO(PPOConfig(env="CartPole-v1", batch_size=32, **SMALL), env=vector).learn(64).global_step == 64


@pytest.mark.parametrize(("make", "message"), [
    (lambda: VPG(VPGConfig(env="CartPole-v1"), env=gym.make("CartPole-v1")),
     r"invalid num_envs=8: the environment passed has 1 copy; set num_envs=1"),
    (lambda: VPG(VPGConfig(env="CartPole-v1", num_envs=1), env=gym.make("Acrobot-v1")),
     r"invalid env='CartPole-v1': the environment passed is 'Acrobot-v1'; set env='Acrobot-v1'"),
    (lambda: VPG(VPGConfig(env=gym.make("CartPole-v1"))), r"invalid env=.*must be a Gymnasium id such as"),
    (lambda: VPG(VPGConfig(env="CartPole-v1", num_envs=1), env="CartPole-v1"),
     r"neither a gymnasium.Env nor a gymnasium.vector.VectorEnv"),
])
def test_an_environment_object_that_does_not_fit_is_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


# -- loading --------------------------------------------------------------------------------------
def test_loading_allows_only_the_changes_a_resumed_run_can_make(tmp_path):
    VPG(VPGConfig(batch_size=32, **SMALL)).learn(64).save(tmp_path / "vpg.pt")
    agent = VPG.load(tmp_path / "vpg.pt", total_steps=512, eval_episodes=3)
    assert (agent.config.total_steps, agent.config.eval_episodes, agent.global_step) == (512, 3, 64)
    with pytest.raises(BellmaxError, match=r"only --total-steps, .* may change \(you changed gamma, learning_rate\)"):
        bellmax.algos.load(tmp_path / "vpg.pt", learning_rate=1.0, gamma=0.5)
    with pytest.raises(BellmaxError, match="holds a vpg agent, not ppo"):
        PPO.load(tmp_path / "vpg.pt")
    with pytest.raises(BellmaxError, match=r"bellmax.algos.load\(path\) reads which one"):
        Algorithm.load(tmp_path / "vpg.pt")


def test_configs_of_older_releases_load_under_their_new_names():
    """SAC's entropy temperature was ent_coef, VPG's entropy weight entropy_coef, TRPO's critic step
    learning_rate; every config had gae_lambda and normalize_*, which replay algorithms never read."""
    from bellmax.algos import TRPOConfig

    assert SACConfig.from_dict({"ent_coef": 0.1, "init_ent_coef": 0.5}).alpha == 0.1
    assert SACConfig.from_dict({"init_ent_coef": 0.5}).alpha_init == 0.5
    assert VPGConfig.from_dict({"entropy_coef": 0.01}).ent_coef == 0.01
    assert TRPOConfig.from_dict({"learning_rate": 5e-4}).value_learning_rate == 5e-4
    assert DQNConfig.from_dict({"gae_lambda": 0.95, "normalize_obs": False}) == DQNConfig()
    with pytest.raises(ConfigError, match="unknown DQNConfig field"):
        DQNConfig.from_dict({"entropy_coef": 0.01})


def test_the_readme_python_examples_run(tmp_path):
    """Every ```python block of README.md runs as written (in a fresh process, in a scratch directory)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    # the block that loads a trained RLHF run with plain transformers needs that run: tests/test_rlhf_hf.py
    # makes the same calls on a tiny run it trains
    blocks = [b for b in blocks if '"runs/rlhf/' not in b]
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, block + result.stderr


def test_sampled_evaluation_is_seeded_and_leaves_training_as_it_was():
    config = PPOConfig(batch_size=32, eval_deterministic=False, total_steps=256, **{**SMALL, "eval_episodes": 4})
    quiet = PPO(config.replace(eval_every=0, eval_episodes=0)).learn()
    evaluated = PPO(config.replace(eval_every=64)).learn()
    assert evaluated.params_sha256() == quiet.params_sha256()  # periodic sampled evaluations changed nothing
    assert np.array_equal(evaluated.evaluate(4, seed=3), evaluated.evaluate(4, seed=3))
    assert not np.array_equal(evaluated.evaluate(8, seed=3, deterministic=False),
                              evaluated.evaluate(8, seed=3, deterministic=True))


def test_zero_evaluation_episodes_turn_every_evaluation_off(tmp_path):
    config = PPOConfig(batch_size=32, total_steps=256, eval_every=64, **SMALL)  # SMALL has eval_episodes=0
    with Run(tmp_path, "ppo", config.to_dict(), tensorboard=False) as run:
        agent = PPO(config).learn(run=run)
    assert agent.last_eval is None and logged(tmp_path, "eval/return") == []
