"""Configs validate before any work and name the bad field; presets carry provenance;
make_vec_env uses native vector envs and suggests close matches for unknown ids."""

import json
from importlib import resources

import gymnasium as gym
import numpy as np
import pytest

from bellmax.algos import VPGConfig, get_algorithm
from bellmax.config import find_preset
from bellmax.envs.make import check_env_id, env_state, make_vec_env, register_atari, restore_env
from bellmax.errors import BellmaxError, ConfigError


@pytest.mark.parametrize("field, value, allowed", [
    ("learning_rate", -1e-3, "positive"),
    ("gamma", 0.0, "(0, 1]"),
    ("gae_lambda", 1.5, "[0, 1]"),
    ("num_envs", 0, "between 1 and 65,536"),
    ("total_steps", 0, "positive"),
    ("n_steps", 0, "at least 1"),
])
def test_invalid_field_raises_naming_field_range_and_flag(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        VPGConfig(**{field: value}).validate()
    message = str(info.value)
    assert f"invalid {field}=" in message and allowed in message
    assert "--" + field.replace("_", "-") in message


@pytest.mark.parametrize("algo, flag, value, allowed", [
    ("ppo", "--ent-coef", "inf", "a finite number"),    # crashed in sampling: "probability tensor contains inf"
    ("ppo", "--vf-coef", "inf", "a finite number"),
    ("ppo", "--adam-eps", "nan", "a finite number"),
    ("ppo", "--adam-eps", "0", "positive"),
    ("a2c", "--adam-eps", "-1e-5", "positive"),
    ("ppo", "--stop-at-return", "nan", "a finite number"),
    ("sac", "--learning-rate", "inf", "a finite number"),
    ("ppo", "--seed", str(2**32), "[0, 2^32)"),
    ("trpo", "--value-epochs", "0", "at least 1"),
    ("ppo", "--torch-threads", "100000", "between 1 and 1024"),  # a segfault in torch
])
def test_values_that_break_training_are_refused_before_it_starts(algo, flag, value, allowed, tmp_path, capsys):
    from bellmax.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", algo, flag, value, "--run-dir", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"invalid {flag[2:].replace('-', '_')}=" in err and allowed in err and "Traceback" not in err
    assert not run_dir.exists()


def test_unknown_config_keys_are_an_error_not_ignored():
    with pytest.raises(ConfigError, match="unknown VPGConfig field"):
        VPGConfig.from_dict({"learnin_rate": 0.1})


def test_config_round_trips_through_json():
    config = VPGConfig(hidden_sizes=(32, 16), weighting="td_residual", seed=7)
    assert VPGConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("algo", ["vpg", "a2c", "ppo", "trpo"])
def test_every_preset_names_its_env_and_provenance_and_is_valid(algo):
    config_class = get_algorithm(algo).config_class
    data = json.loads(resources.files("bellmax.presets").joinpath(f"{algo}.json").read_text())
    assert data, f"{algo} has no presets"
    register_atari()  # ALE ids, when ale-py is installed
    for name, entry in data.items():
        assert entry["source"]
        if entry["env"].startswith("ALE/") and entry["env"] not in gym.registry:
            continue  # ale-py is not installed here
        check_env_id(entry["env"])
        config = config_class.from_preset(entry["env"], name)
        config.validate()
        assert config.env == entry["env"]


def test_preset_lookup_by_env():
    assert find_preset("vpg", "CartPole-v1", None)[0] == "cartpole"
    assert find_preset("ppo", "HalfCheetah-v5", None)[0] == "halfcheetah"
    assert find_preset("vpg", "Acrobot-v1", None) is None


def test_algorithm_lookup_suggests_close_names():
    assert get_algorithm("VPG").name == "vpg"
    with pytest.raises(BellmaxError, match="did you mean vpg"):
        get_algorithm("vgp")


def test_cartpole_uses_gymnasiums_native_vector_env_and_others_sync():
    native = make_vec_env("CartPole-v1", 4, seed=0)
    assert type(native).__name__ == "CartPoleVectorEnv"
    sync = make_vec_env("Pendulum-v1", 3, seed=0)
    assert isinstance(sync, gym.vector.SyncVectorEnv) and sync.num_envs == 3
    grid = make_vec_env("bellmax/GridWorld-v0", 2, seed=0)
    assert grid.single_observation_space == gym.spaces.Discrete(12)


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(BellmaxError, match="did you mean CartPole-v1"):
        make_vec_env("Cartpole-v1", 2)
    with pytest.raises(BellmaxError, match="unknown environment id"):
        make_vec_env("NoSuchEnvAtAll-v9", 2)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_saved_env_state_continues_identically(env_id):
    env = make_vec_env(env_id, 2, seed=3)
    actions = [env.action_space.sample() for _ in range(30)]
    for a in actions[:10]:
        env.step(a)
    copy = restore_env(env_state(env))
    for a in actions[10:]:
        obs_a, r_a, *_ = env.step(a)
        obs_b, r_b, *_ = copy.step(a)
        assert np.array_equal(obs_a, obs_b) and np.array_equal(r_a, r_b)


@pytest.mark.parametrize("env_id, missing, hint", [
    ("phys2d/CartPole-v1", "jax", "pip install 'gymnasium[jax]'"),
    ("tabular/Blackjack-v0", "jax", "pip install 'gymnasium[jax]'"),
    ("GymV26Environment-v0", "shimmy", 'pip install "shimmy[gym-v26]"'),
])
def test_an_environment_whose_package_is_missing_is_one_line_saying_what_to_install(env_id, missing, hint, capsys,
                                                                                      tmp_path):
    import importlib.util

    if importlib.util.find_spec(missing) is not None:
        pytest.skip(f"{missing} is installed here")
    from bellmax.cli import main

    assert main(["train", "ppo", "--env", env_id, "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{env_id} needs a package that is not installed" in err and hint in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_nature_cnn_reads_height_width_channel_images_as_the_transposed_frames():
    """CarRacing's 96x96x3 frames: the CNN sees (3, 96, 96), exactly as if they had been transposed."""
    import torch

    from bellmax.core.nets import NatureCNN

    hwc = NatureCNN(gym.spaces.Box(0, 255, (96, 96, 3), np.uint8))
    chw = NatureCNN(gym.spaces.Box(0, 255, (3, 96, 96), np.uint8))
    chw.load_state_dict(hwc.state_dict())
    frames = torch.randint(0, 256, (5, 96, 96, 3), dtype=torch.uint8)
    assert torch.allclose(hwc(frames), chw(frames.permute(0, 3, 1, 2).contiguous()), atol=1e-6)
    assert hwc(frames).shape == (5, 512)


def test_images_too_small_for_the_nature_cnn_are_refused_with_what_to_do():
    from bellmax.core.nets import NatureCNN

    with pytest.raises(BellmaxError, match=r"shape \(32, 32, 3\) are too small for the Nature CNN .*ResizeObservation"):
        NatureCNN(gym.spaces.Box(0, 255, (32, 32, 3), np.uint8))
