"""Checkpoints: resume continues bit-for-bit; a crash while saving never corrupts the last good
checkpoint; damaged or missing checkpoints give clear errors."""

import pytest
import torch

from bellmax.algos import VPG, VPGConfig
from bellmax.core.algorithm import Algorithm
from bellmax.core.run import CHECKPOINT_FILE, Run, load_checkpoint, read_metrics
from bellmax.errors import BellmaxError

CONFIG = VPGConfig(num_envs=4, n_steps=50, batch_size=100, total_steps=1200, hidden_sizes=(16,), seed=11,
                   eval_episodes=0)


def all_tensors(agent):
    state = {f"{m}.{k}": v for m, mod in agent.modules().items() for k, v in mod.state_dict().items()}
    for name, opt in agent.optimizers().items():
        saved = opt.state_dict()
        for key in ("exp_avg", "exp_avg_sq", "square_avg"):  # Adam's or RMSprop's moments
            for i, v in enumerate(saved.get(key, [])):
                state[f"opt.{name}.{key}.{i}"] = v
    return state


@pytest.mark.parametrize("weighting", ["gae", "advantage"])
def test_resumed_run_ends_with_exactly_the_parameters_of_an_uninterrupted_one(tmp_path, weighting):
    config = CONFIG.replace(weighting=weighting)
    straight = VPG(config).learn(1200)

    first = VPG(config)
    first.learn(600)  # 3 iterations of 200 steps
    first.save(tmp_path / CHECKPOINT_FILE)
    torch.manual_seed(999)  # anything the process does in between must not matter
    resumed = Algorithm.load(tmp_path / CHECKPOINT_FILE)
    assert resumed.global_step == 600
    resumed.learn(1200)

    a, b = all_tensors(straight), all_tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.tracker.recent_returns == resumed.tracker.recent_returns


def test_resume_through_run_directory_drops_metrics_logged_after_the_checkpoint(tmp_path):
    run = Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False)
    agent = VPG(CONFIG)
    agent.learn(800, run=run, checkpoint_every=400)
    # pretend the process was killed at step 800 after checkpointing at 400 ... by rewinding the file
    state = load_checkpoint(tmp_path)
    assert state["global_step"] == 800
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [200, 400, 600, 800]
    resumed_run = Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=400, tensorboard=False)
    assert [r["step"] for r in read_metrics(tmp_path)] == [200, 400]
    resumed_run.close()


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    agent = VPG(CONFIG)
    agent.learn(200)
    path = tmp_path / CHECKPOINT_FILE
    agent.save(path)
    good = path.read_bytes()
    agent.learn(400)

    import bellmax.core.run as run_module

    def dies_midway(data_path, data):
        with open(str(data_path) + ".partial", "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt  # as if killed while writing

    monkeypatch.setattr(run_module, "atomic_write_bytes", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        agent.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert Algorithm.load(path).global_step == 200


def test_atomic_write_never_exposes_a_partial_file(tmp_path, monkeypatch):
    from bellmax.core import run as run_module

    target = tmp_path / "file.bin"
    run_module.atomic_write_bytes(target, b"old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(run_module.os, "replace", failing_replace)
    with pytest.raises(OSError):
        run_module.atomic_write_bytes(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # the temporary file was cleaned up


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    agent = VPG(CONFIG)
    path = tmp_path / CHECKPOINT_FILE
    agent.save(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(BellmaxError, match="corrupt or truncated"):
        Algorithm.load(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BellmaxError, match="no checkpoint"):
        Algorithm.load(tmp_path / CHECKPOINT_FILE)


def test_checkpoint_holds_every_rng_state_and_the_environment(tmp_path):
    agent = VPG(CONFIG)
    agent.learn(200)
    state = agent.state_dict()
    assert set(state["rng"]) == {"python", "numpy", "torch"}
    assert state["env"] is not None and state["global_step"] == 200
    assert set(state["optimizers"]) == {"policy", "value"}


@pytest.mark.parametrize("algo_name", ["ppo", "a2c", "a2c-rmsprop", "trpo"])
def test_on_policy_resume_is_bit_for_bit_with_normalizers_and_annealing(tmp_path, algo_name):
    from bellmax.algos import get_algorithm

    algo_name, _, optimizer = algo_name.partition("-")
    algo = get_algorithm(algo_name)
    extra = {"batch_size": 64} if algo_name != "a2c" else {}
    if algo_name in ("ppo", "a2c"):
        extra["anneal_lr"] = True
    if optimizer:
        extra["optimizer"] = optimizer
    config = algo.config_class(env="Pendulum-v1", seed=5, num_envs=2, n_steps=64, hidden_sizes=(16,),
                               total_steps=768, normalize_obs=True, normalize_reward=True, eval_episodes=0, **extra)
    straight = algo(config).learn()
    first = algo(config).learn(256)
    first.save(tmp_path / CHECKPOINT_FILE)
    resumed = Algorithm.load(tmp_path / CHECKPOINT_FILE).learn()
    assert resumed.global_step == straight.global_step == 768
    a, b = all_tensors(straight), all_tensors(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(".square_avg." in k for k in a) == (optimizer == "rmsprop")
    assert (straight.obs_normalizer.stats.mean == resumed.obs_normalizer.stats.mean).all()
