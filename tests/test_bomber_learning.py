"""PPO learns the Bomber duel: on a small board, a short seeded run beats the random opponent
clearly more often than the untrained policy does."""

import gymnasium as gym
import numpy as np
import pytest

import bellmax.envs  # noqa: F401  (registers the arena ids)
from bellmax.algos import PPO, PPOConfig

# the raw game (no action filter): the untrained policy then loses often to its own bombs, and
# whatever it wins more after training it has learned
SMALL_DUEL = {"opponents": "random", "size": 6, "rigid": 4, "wood": 6, "items": 3, "max_steps": 60,
              "action_filter": False}


def win_rate(agent: PPO, games: int = 300, seed: int = 7) -> float:
    env = gym.make_vec("bellmax/BomberDuel-v0", num_envs=games, vectorization_mode="vector_entry_point", **SMALL_DUEL)
    obs, _ = env.reset(seed=seed)
    done, won = np.zeros(games, bool), np.zeros(games, bool)
    while not done.all():
        obs, _, terminated, _, info = env.step(agent.predict(obs, deterministic=False))
        won |= ~done & terminated & info["learner_won"]
        done |= terminated
    return float(won.mean())


@pytest.mark.slow
def test_ppo_learns_to_beat_the_random_opponent_on_a_small_board():
    env = gym.make_vec("bellmax/BomberDuel-v0", num_envs=16, vectorization_mode="vector_entry_point", **SMALL_DUEL)
    config = PPOConfig(env="bellmax/BomberDuel-v0", num_envs=16, n_steps=64, batch_size=256, n_epochs=4,
                       learning_rate=1e-3, ent_coef=0.01, total_steps=16_384, eval_episodes=0, seed=0)
    agent = PPO(config, env=env)
    untrained = win_rate(agent)
    agent.learn()
    trained = win_rate(agent)
    assert untrained < 0.55 and trained >= 0.65 and trained - untrained >= 0.15, (untrained, trained)
