"""Where the networks run (`--device`): auto keeps MLPs on the CPU even next to a GPU and puts the
Nature CNN on one; everything built goes to the chosen device while the buffers stay in CPU memory;
a GPU the machine lacks is a clear error. The tests marked `cuda` run where a GPU is present."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import bellmax.core.algorithm as algorithm_module
from bellmax.algos import DQN, PPO, SAC, DQNConfig, PPOConfig, SACConfig, load
from bellmax.cli import main
from bellmax.core.algorithm import Algorithm, resolve_device
from bellmax.core.run import CHECKPOINT_FILE
from bellmax.errors import BellmaxError, ConfigError

VECTOR = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
IMAGES = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a GPU is present, without touching the process's global determinism settings."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def test_auto_keeps_mlps_on_the_cpu_even_with_a_gpu_and_puts_the_cnn_on_it(fake_gpu):
    assert resolve_device("auto", VECTOR) == torch.device("cpu")
    assert resolve_device("auto", gym.spaces.Discrete(12)) == torch.device("cpu")
    # the index is made explicit: a tensor on the GPU reports device "cuda:0", never plain "cuda"
    assert resolve_device("auto", IMAGES) == resolve_device("cuda", VECTOR) == torch.device("cuda:0")
    assert resolve_device("cpu", IMAGES) == torch.device("cpu")
    assert resolve_device("cuda:0", VECTOR) == torch.device("cuda:0")


def test_a_gpu_run_asks_for_deterministic_kernels(fake_gpu, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *args, **kwargs: calls.append((args, kwargs)))
    resolve_device("cuda", VECTOR)
    assert calls == [((True,), {"warn_only": True})]
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_a_gpu_index_the_machine_lacks_is_a_clear_error(fake_gpu):
    with pytest.raises(BellmaxError, match="has 1 CUDA GPU"):
        resolve_device("cuda:1", VECTOR)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error_not_a_silent_cpu_run(tmp_path, capsys):
    assert resolve_device("auto", IMAGES) == torch.device("cpu")
    with pytest.raises(BellmaxError, match="no CUDA GPU .* use --device cpu"):
        resolve_device("cuda", VECTOR)
    run_dir = tmp_path / "run"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--device", "cuda", "--run-dir", str(run_dir),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: this machine has no CUDA GPU") and "Traceback" not in err
    assert not run_dir.exists()


def test_a_device_name_torch_does_not_know_is_a_config_error():
    with pytest.raises(ConfigError, match=r"invalid device='gpu'.*auto, cpu, cuda, cuda:N or mps.*--device"):
        PPOConfig(device="gpu").validate()


def on_device(agent: Algorithm, device: torch.device) -> list[str]:
    """Names of the tensors of modules and optimizer states that are not on `device`."""
    wrong = [f"{name}.{key}" for name, module in agent.modules().items()
             for key, tensor in module.state_dict().items() if tensor.device != device]
    for name, optimizer in agent.optimizers().items():
        wrong += [f"optimizer {name}" for t in optimizer.exp_avg + optimizer.exp_avg_sq if t.device != device]
    return wrong


@pytest.mark.parametrize("make", [
    lambda: PPO(PPOConfig(env="CartPole-v1", num_envs=2, n_steps=16, batch_size=16, device="cuda")),
    lambda: SAC(SACConfig(env="Pendulum-v1", hidden_sizes=(16,), buffer_size=100, batch_size=8, device="cuda")),
    lambda: DQN(DQNConfig(env="CartPole-v1", hidden_sizes=(16,), buffer_size=100, batch_size=8, device="cuda")),
], ids=["ppo", "sac", "dqn"])
def test_everything_an_algorithm_builds_lands_on_its_device_and_its_buffers_stay_on_the_cpu(make, monkeypatch):
    # "meta" tensors have shapes but no data: a CPU-only machine can still check where build() puts them
    monkeypatch.setattr(algorithm_module, "resolve_device", lambda name, space: torch.device("meta"))
    agent = make()
    assert agent.device == torch.device("meta")
    assert on_device(agent, torch.device("meta")) == []
    if hasattr(agent, "log_alpha"):
        assert agent.log_alpha.device.type == "meta"
    if hasattr(agent, "buffer"):
        assert agent.buffer.obs.device.type == "cpu" and agent.buffer.last_value.device.type == "cpu"
    batch = agent.to_device({"x": torch.zeros(3)})
    assert batch["x"].device.type == "meta"


def test_on_the_cpu_a_batch_is_not_copied():
    agent = PPO(PPOConfig(env="CartPole-v1", num_envs=2, n_steps=16, batch_size=16, device="cpu"))
    x = torch.zeros(3)
    assert agent.to_device({"x": x})["x"] is x


def test_a_run_trained_on_a_gpu_evaluates_on_a_machine_without_one(tmp_path, capsys):
    from bellmax.core.run import load_checkpoint, save_checkpoint

    run_dir = tmp_path / "run"
    assert main(["train", "dqn", "--env", "CartPole-v1", "--total-steps", "300", "--learning-starts", "100",
                 "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard", "--eval-episodes", "1"]) == 0
    state = load_checkpoint(run_dir / CHECKPOINT_FILE)
    state["config"]["device"] = "cuda"  # as a GPU run saves it (its tensors are saved as CPU ones)
    save_checkpoint(run_dir / CHECKPOINT_FILE, state)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--json"]) == 0  # --device auto: this machine's
    assert '"episodes": 2' in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--episodes", "2", "--device", "gpu"]) == 2
    assert "invalid device='gpu'" in capsys.readouterr().err


# -- on a machine with a GPU ------------------------------------------------------------------
@cuda
def test_dqn_on_atari_trains_with_its_networks_on_the_gpu(tmp_path):
    pytest.importorskip("ale_py")
    config = DQNConfig(env="ALE/Pong-v5", num_envs=2, buffer_size=2000, learning_starts=100, batch_size=32,
                       train_freq=4, log_every=100, clip_reward=True, seed=3, eval_episodes=0, total_steps=600)
    agent = DQN(config).learn()
    assert agent.device == torch.device("cuda:0") and on_device(agent, agent.device) == []
    assert np.isfinite(agent.evaluate(1)).all()


@cuda
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_resume_on_the_gpu_is_bit_for_bit(tmp_path, algo):
    # PPO samples its actions and SAC its reparameterized actions with the CUDA generator: its state
    # is in the checkpoint. (Atari is not used here: ale-py's vector env cannot save its emulators,
    # so a resumed Atari run starts new episodes on any device.)
    if algo == "ppo":
        config, make = PPOConfig(env="CartPole-v1", num_envs=2, n_steps=64, batch_size=32, total_steps=512,
                                 eval_episodes=0, device="cuda"), PPO
    else:
        config, make = SACConfig(env="Pendulum-v1", hidden_sizes=(32,), learning_starts=64, batch_size=32,
                                 total_steps=384, log_every=64, eval_episodes=0, device="cuda"), SAC
    straight = make(config).learn()
    first = make(config).learn(until_step=config.total_steps // 2)
    first.save(tmp_path / CHECKPOINT_FILE)
    resumed = load(tmp_path / CHECKPOINT_FILE).learn()
    assert resumed.device == torch.device("cuda:0")
    assert resumed.params_sha256() == straight.params_sha256()


@cuda
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_mlp_algorithms_run_on_the_gpu_when_asked_and_give_the_same_numbers_twice(algo):
    if algo == "ppo":
        config = PPOConfig(env="Pendulum-v1", num_envs=2, n_steps=64, batch_size=32, total_steps=256,
                           normalize_obs=True, eval_episodes=0, device="cuda")
        make = PPO
    else:
        config = SACConfig(env="Pendulum-v1", hidden_sizes=(32,), learning_starts=64, batch_size=32,
                           total_steps=256, log_every=64, eval_episodes=0, device="cuda")
        make = SAC
    a, b = make(config).learn(), make(config).learn()
    assert a.device.type == "cuda"
    assert a.params_sha256() == b.params_sha256()
    assert np.isfinite(a.evaluate(2)).all()


@cuda
def test_auto_puts_an_atari_policy_on_the_gpu_and_the_cli_says_so(tmp_path, capsys):
    pytest.importorskip("ale_py")
    assert main(["train", "a2c", "--env", "ALE/Breakout-v5", "--total-steps", "160", "--num-envs", "2",
                 "--n-steps", "5", "--eval-episodes", "0", "--no-progress", "--no-tensorboard",
                 "--run-dir", str(tmp_path / "run")]) == 0
    assert "networks on cuda" in capsys.readouterr().err
