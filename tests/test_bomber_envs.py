"""The Bomber arena through the interfaces the field expects: Gymnasium's env checker and native
vector envs, PettingZoo's API and seed tests, the full state beside an agent's window, self-play."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bellmax.envs  # noqa: F401  (registers bellmax/Bomber-v0 and bellmax/BomberDuel-v0)
from bellmax.envs.bomber import parallel_env
from bellmax.envs.bomber.config import BOMB, BomberConfig
from bellmax.envs.bomber.gym_env import BomberVectorEnv
from bellmax.envs.bomber.observe import CHANNELS
from bellmax.envs.bomber.pettingzoo_env import STATE_CHANNELS
from bellmax.errors import BellmaxError, ConfigError


@pytest.mark.parametrize("env_id", ["bellmax/BomberDuel-v0", "bellmax/Bomber-v0"])
def test_the_gymnasium_envs_pass_the_env_checker(env_id):
    for mode in ("ansi", "rgb_array"):
        check_env(gym.make(env_id, render_mode=mode).unwrapped)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    side = 9 if "Duel" in env_id else 21  # a 9x9 window, or the whole 11x11 board from any cell
    assert env.observation_space.contains(obs) and obs.shape == (len(CHANNELS), side, side)


def test_the_native_vector_form_steps_many_games_with_next_step_autoreset():
    env = gym.make_vec("bellmax/BomberDuel-v0", num_envs=16, vectorization_mode="vector_entry_point",
                       opponents="random")
    assert isinstance(env, BomberVectorEnv) and env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=1)
    assert obs.shape == (16, len(CHANNELS), 9, 9)
    rng = np.random.default_rng(0)
    previous_done = np.zeros(16, bool)
    episodes, returns = 0, []
    running = np.zeros(16)
    for _ in range(200):
        obs, rewards, terminated, truncated, info = env.step(rng.integers(6, size=16))
        assert env.observation_space.contains(obs) and not truncated.any()
        assert (rewards[previous_done] == 0).all() and not terminated[previous_done].any()  # the autoreset step
        running += rewards
        for slot in np.flatnonzero(terminated):
            returns.append(running[slot])
            assert info["learner_won"][slot] == (running[slot] > 0)
        running[terminated] = 0.0
        episodes += terminated.sum()
        previous_done = terminated
    assert episodes > 30 and set(np.round(returns, 6)) <= {-1.0, 1.0}


def test_make_vec_env_and_the_on_policy_algorithms_use_the_native_vector_env():
    from bellmax.envs.make import make_vec_env

    env = make_vec_env("bellmax/BomberDuel-v0", 4, seed=0)
    assert isinstance(env, BomberVectorEnv) and env.num_envs == 4


def test_several_learners_per_game_are_one_slot_each_and_finish_together():
    env = BomberVectorEnv(num_envs=8, board="ffa", learners=2, opponents="random")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        _, _, terminated, _, _ = env.step(rng.integers(6, size=8))
        assert (terminated[0::2] == terminated[1::2]).all()  # the two learners of a game end together
    with pytest.raises(ConfigError, match="multiple of learners"):
        BomberVectorEnv(num_envs=7, learners=2)


def test_the_step_limit_ends_an_episode_as_terminated_with_a_loss():
    env = gym.make("bellmax/BomberDuel-v0", opponents="random", max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, reward, terminated, truncated, _ = env.step(0)  # stand still: nobody dies
        assert not truncated
    assert terminated and reward == -1.0


def test_the_pettingzoo_parallel_env_passes_pettingzoos_api_and_seed_tests():
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    for kwargs in ({}, {"board": "team"}, {"board": "duel"}, {"observation": "dict"}):
        parallel_api_test(parallel_env(**kwargs), num_cycles=300)
        parallel_seed_test(lambda kwargs=kwargs: parallel_env(**kwargs))


def test_state_is_the_whole_board_while_an_agent_sees_only_its_window():
    env = parallel_env(board="team")  # partially observed by default
    observations, _ = env.reset(seed=3)
    state = env.state()
    assert env.state_space.contains(state)
    window = observations["agent_0"]
    assert window.shape == (len(CHANNELS), 9, 9) and state.shape[1:] == (11, 11)
    # the hidden power-ups are in the state and in no observation
    hidden = state[[STATE_CHANNELS.index(f"hidden_{kind}") for kind in ("extra_bomb", "range", "kick")]].sum()
    visible = [CHANNELS.index(kind) for kind in ("extra_bomb", "range", "kick")]
    assert hidden > 0 and all(obs[visible].sum() == 0 for obs in observations.values())


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown Bomber board 'tiny'"):
        gym.make("bellmax/BomberDuel-v0", board="tiny")
    with pytest.raises(ConfigError, match="unknown Bomber mode 'coop'"):
        parallel_env(mode="coop")
    with pytest.raises(ConfigError, match="size=4: the board must be at least 5x5"):
        parallel_env(size=4)
    with pytest.raises(ConfigError, match="walls do not fit"):
        parallel_env(board="duel", rigid=40, wood=30)
    with pytest.raises(BellmaxError, match="unknown Bomber opponent 'smart'"):
        gym.make("bellmax/BomberDuel-v0", opponents="smart")


@pytest.mark.parametrize("learners", [1, 2])
def test_the_action_filter_keeps_a_learner_that_always_bombs_alive(learners):
    """Laying a bomb at every step kills a learner in the raw game within a few steps; through the
    action filter, a bomb it could not get away from and a step into a blast become safe moves."""
    def play(action_filter):
        env = BomberVectorEnv(64, board="ffa" if learners > 1 else "duel", opponents="filtered", learners=learners,
                              action_filter=action_filter, seed=0)
        env.reset(seed=0)
        losses = 0
        for _ in range(300):
            _, rewards, _, _, _ = env.step(np.full(64, BOMB))
            losses += int((rewards < 0).sum())
        return losses, env.matches.filtered

    raw_losses, raw_filtered = play(False)
    losses, filtered = play(True)
    assert raw_filtered == 0 and raw_losses >= 1000  # 64 slots, a death every ~12 steps each
    assert losses <= raw_losses / 20
    assert filtered > 64 * 300 / 2  # most bombs were replaced: ammo 1, and a bomb only with a way out


def test_the_action_filter_lets_safe_actions_through_unchanged():
    from bellmax.envs.bomber.danger import observe_pairs
    from bellmax.envs.bomber.engine import BomberEngine
    from bellmax.envs.bomber.gym_env import filter_actions
    from bellmax.envs.bomber.opponents import filtered_actions

    engine = BomberEngine(BomberConfig.duel(), 64, seed=4)
    rng = np.random.default_rng(4)
    replaced = 0
    for _ in range(60):
        games, agents = np.nonzero(engine.alive)
        allowed = filtered_actions(observe_pairs(engine, games, agents))
        wanted = rng.integers(6, size=len(games))
        chosen = filter_actions(engine, games, agents, wanted, rng)
        safe = allowed[np.arange(len(games)), wanted]
        assert np.array_equal(chosen[safe], wanted[safe])
        assert allowed[np.arange(len(games)), chosen].all()  # every replacement is itself allowed
        replaced += int((~safe).sum())
        actions = np.zeros((64, 2), np.int64)
        actions[games, agents] = chosen
        engine.step(actions)
        engine.reset(np.flatnonzero(engine.over))
    assert replaced > 100


def test_self_play_snapshots_of_the_policy_play_a_share_of_the_opponents():
    import torch

    from bellmax.algos import PPO, PPOConfig

    config = PPOConfig(env="bellmax/BomberDuel-v0", num_envs=8, n_steps=16, batch_size=64, n_epochs=1,
                       self_play=1.0, eval_episodes=0, total_steps=256)
    agent = PPO(config, env=gym.make_vec("bellmax/BomberDuel-v0", num_envs=8, vectorization_mode="vector_entry_point",
                                         opponents="random"))
    matches = agent.env.matches
    assert len(matches.pool) == 1  # a first snapshot at once
    snapshot = matches.pool[0].module
    assert snapshot is not agent.policy
    assert all(torch.equal(a, b) for a, b in zip(snapshot.state_dict().values(), agent.policy.state_dict().values()))
    agent.learn()
    opponent_seats = matches.player[matches.player >= 0]
    assert (opponent_seats >= len(matches.players)).any()  # snapshots play seats
    # the snapshot stayed frozen while the policy learned
    frozen = zip(snapshot.state_dict().values(), agent.policy.state_dict().values())
    assert not all(torch.equal(a, b) for a, b in frozen)
    with pytest.raises(ConfigError, match="self-play needs an arena environment"):
        PPO(PPOConfig(env="CartPole-v1", self_play=0.5))


def test_a_self_play_run_resumes_bit_for_bit(tmp_path):
    """The checkpoint holds the games, the rule agents' memories and the snapshot pool: a run stopped
    halfway ends with exactly the parameters of one that never stopped."""
    from bellmax.algos import PPO, PPOConfig, load

    config = PPOConfig(env="bellmax/BomberDuel-v0", num_envs=4, n_steps=16, batch_size=32, n_epochs=1,
                       self_play=0.5, eval_episodes=0, total_steps=256, seed=2)
    straight = PPO(config).learn()
    PPO(config).learn(until_step=128).save(tmp_path / "checkpoint.pt")
    resumed = load(tmp_path / "checkpoint.pt").learn()
    assert resumed.params_sha256() == straight.params_sha256()
    assert resumed.env.matches.learner_policy is resumed.policy  # the live policy attached again
    assert len(resumed.env.matches.pool) == len(straight.env.matches.pool) >= 1
