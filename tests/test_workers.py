"""`--num-workers K`: Ray actors step the environments of an on-policy run, and the run ends with
exactly the parameters of the single-process run (Acrobot, a MuJoCo env, Atari), resumes from its
checkpoints bit for bit, and refuses what it cannot split (CartPole's and the arena's native vector
envs, whose copies share one random generator), in one line."""

import json

import numpy as np
import pytest

from bellmax.algos import PPO, PPOConfig, load
from bellmax.cli import main

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def trained(config: PPOConfig, until_step: int | None = None) -> PPO:
    return PPO(config).learn(until_step=until_step)


@pytest.mark.parametrize("env, num_envs, workers", [("Acrobot-v1", 4, 2), ("Acrobot-v1", 5, 3),
                                                    ("HalfCheetah-v5", 2, 2)])
def test_workers_give_exactly_the_single_process_parameters(env, num_envs, workers):
    base = PPOConfig(env=env, num_envs=num_envs, n_steps=64, batch_size=64, n_epochs=2, total_steps=num_envs * 64 * 3,
                     eval_episodes=0, seed=3)
    alone = trained(base)
    spread = trained(base.replace(num_workers=workers))
    assert type(spread.env).__name__ == "RayVectorEnv" and len(spread.env.workers) == workers
    try:
        assert spread.params_sha256() == alone.params_sha256()
        assert np.array_equal(spread.obs, alone.obs)
        assert spread.tracker.episodes == alone.tracker.episodes
    finally:
        spread.env.close()  # the workers' CPUs back to Ray


def test_a_run_with_workers_resumes_bit_for_bit(tmp_path):
    config = PPOConfig(env="HalfCheetah-v5", num_envs=2, n_steps=64, batch_size=64, n_epochs=2, total_steps=512,
                       eval_episodes=0, seed=1, num_workers=2)
    paused = trained(config, until_step=256)
    paused.save(tmp_path / "checkpoint.pt")
    paused.env.close()
    resumed = load(tmp_path / "checkpoint.pt")
    assert type(resumed.env).__name__ == "RayVectorEnv"
    resumed.learn()
    assert resumed.params_sha256() == trained(config.replace(num_workers=0)).params_sha256()
    resumed.env.close()


def test_a_worker_that_dies_is_rebuilt_and_the_run_is_unchanged():
    config = PPOConfig(env="Acrobot-v1", num_envs=4, n_steps=64, batch_size=64, n_epochs=2, total_steps=4 * 64 * 8,
                       eval_episodes=0, seed=2, num_workers=2)
    agent = trained(config, until_step=4 * 64 * 5)  # past a snapshot (every 256 vector steps), and 64 steps on
    ray.kill(agent.env.workers[1])
    agent.learn()
    try:
        assert agent.env.restarts == 1
        assert agent.params_sha256() == trained(config.replace(num_workers=0)).params_sha256()
    finally:
        agent.env.close()


def test_the_command_line_trains_with_workers(tmp_path, capsys):
    flags = ["--env", "Acrobot-v1", "--num-envs", "4", "--n-steps", "32", "--batch-size", "64", "--total-steps",
             "512", "--eval-episodes", "2", "--eval-every", "256", "--no-progress", "--no-tensorboard"]
    assert main(["train", "ppo", *flags, "--num-workers", "2", "--run-dir", str(tmp_path / "k2")]) == 0
    assert main(["train", "ppo", *flags, "--run-dir", str(tmp_path / "k0")]) == 0
    capsys.readouterr()
    hashes = []
    for run in ("k2", "k0"):
        assert main(["eval", str(tmp_path / run), "--episodes", "1", "--json"]) == 0
        hashes.append(json.loads(capsys.readouterr().out)["params_sha256"])
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize("args, message", [
    (["dqn", "--env", "CartPole-v1", "--num-workers", "2"], "--num-workers steps the environments of on-policy"),
    (["ppo", "--env", "Acrobot-v1", "--num-envs", "2", "--num-workers", "3"], "invalid num_workers=3"),
    (["ppo", "--env", "CartPole-v1", "--num-workers", "2"], "cannot be split between workers"),
    (["ppo", "--env", "bellmax/BomberDuel-v0", "--num-workers", "2"], "cannot be split between workers"),
])
def test_what_cannot_be_split_is_one_clear_line(args, message, tmp_path, capsys):
    assert main(["train", *args, "--run-dir", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_atari_splits_between_workers_and_a_dead_one_is_replayed_from_its_reset():
    """ale-py's vector env runs one emulator per copy, seeded seed + index: two workers of one copy
    each step exactly the games one process steps. The emulator cannot be saved, so a worker that
    dies is made again, reset with its seed and stepped through every action since."""
    pytest.importorskip("ale_py")
    from bellmax.distributed.rollouts import RayVectorEnv
    from bellmax.envs.make import make_vec_env

    alone, spread = make_vec_env("ALE/Breakout-v5", 2), RayVectorEnv("ALE/Breakout-v5", 2, 2)
    try:
        assert np.array_equal(alone.reset(seed=11)[0], spread.reset(seed=11)[0])
        actions = np.random.default_rng(0).integers(0, 4, size=(700, 2))
        ended = 0
        for t, action in enumerate(actions):
            if t == 400:  # past the first snapshot attempt (every 256 steps), which saves nothing here
                ray.kill(spread.workers[0])
            one, two = alone.step(action), spread.step(action)
            for a, b in zip(one[:4], two[:4]):
                assert np.array_equal(a, b), t
            ended += int(one[2].sum())
        assert spread.restarts == 1 and ended >= 1  # a game ended: the replay crossed an autoreset
    finally:
        alone.close()
        spread.close()


def test_ppo_on_atari_with_workers_equals_the_single_process_run():
    pytest.importorskip("ale_py")
    base = PPOConfig(env="ALE/Breakout-v5", num_envs=2, n_steps=32, batch_size=32, n_epochs=1, total_steps=128,
                     eval_episodes=0, seed=4)
    alone = trained(base)
    spread = trained(base.replace(num_workers=2))
    try:
        assert spread.params_sha256() == alone.params_sha256()
    finally:
        spread.env.close()
