"""Checkpoints: resume continues bit-for-bit; a crash while saving never corrupts the last good
checkpoint; damaged or missing checkpoints give clear errors."""

import io
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bellmax.algos import VPG, VPGConfig, load
from bellmax.core.run import CHECKPOINT_FILE, Run, load_checkpoint, read_metrics
from bellmax.errors import BellmaxError, TrainingInterrupted

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
    first.learn(1200, until_step=600)  # 3 iterations of 200 steps
    first.save(tmp_path / CHECKPOINT_FILE)
    torch.manual_seed(999)  # anything the process does in between must not matter
    resumed = load(tmp_path / CHECKPOINT_FILE)
    assert resumed.global_step == 600
    resumed.learn()

    a, b = all_tensors(straight), all_tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.tracker.recent_returns == resumed.tracker.recent_returns


def interrupt_during(agent, iterations, times=1):
    """Make `agent` receive SIGINT `times` times in the middle of its iteration number `iterations`."""
    train_iteration = agent.train_iteration

    def patched(max_steps):
        if agent.iteration + 1 == iterations:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return train_iteration(max_steps)

    agent.train_iteration = patched


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint_that_resumes_exactly(tmp_path):
    """The first Ctrl-C does not kill the run: the iteration it came in finishes, a checkpoint of
    that step is written (here 600, between the periodic ones at 400 and 800), and the resumed run
    ends with exactly the parameters of one never interrupted."""
    straight = VPG(CONFIG).learn(1200)
    agent = VPG(CONFIG.replace(checkpoint_every=400))
    interrupt_during(agent, 3)
    with pytest.raises(TrainingInterrupted) as stopped:
        agent.learn(1200, run=Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False))
    assert (stopped.value.signal_name, stopped.value.step) == ("SIGINT", 600)
    assert f"bellmax train vpg --resume {tmp_path}" in str(stopped.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert [r["step"] for r in read_metrics(tmp_path)] == [200, 400, 600]

    resumed = load(tmp_path / CHECKPOINT_FILE)
    assert resumed.global_step == 600
    resumed.learn(1200)
    a, b = all_tensors(straight), all_tensors(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_while_a_periodic_checkpoint_is_written_stops_right_after_it(tmp_path):
    agent = VPG(CONFIG.replace(checkpoint_every=400))
    save = agent.save_in_run

    def save_while_interrupted(run):
        signal.raise_signal(signal.SIGINT)  # arrives while the checkpoint of step 400 is being written
        save(run)

    agent.save_in_run = save_while_interrupted
    with pytest.raises(TrainingInterrupted) as stopped:
        agent.learn(1200, run=Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False))
    assert stopped.value.step == 400 and load_checkpoint(tmp_path)["global_step"] == 400
    assert [r["step"] for r in read_metrics(tmp_path)] == [200, 400]  # no further iteration


def test_a_second_ctrl_c_stops_at_once_without_a_new_checkpoint(tmp_path):
    agent = VPG(CONFIG.replace(checkpoint_every=400))
    interrupt_during(agent, 3, times=2)
    with pytest.raises(KeyboardInterrupt) as stopped:
        agent.learn(1200, run=Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False))
    assert not isinstance(stopped.value, TrainingInterrupted)
    assert load_checkpoint(tmp_path)["global_step"] == 400  # the last periodic one, intact
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_through_run_directory_drops_metrics_logged_after_the_checkpoint(tmp_path):
    run = Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False)
    agent = VPG(CONFIG.replace(checkpoint_every=400))
    agent.learn(800, run=run)
    # pretend the process was killed at step 800 after checkpointing at 400 ... by rewinding the file
    state = load_checkpoint(tmp_path)
    assert state["global_step"] == 800
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [200, 400, 600, 800]
    resumed_run = Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=400, tensorboard=False)
    assert [r["step"] for r in read_metrics(tmp_path)] == [200, 400]
    resumed_run.close()


def test_a_run_directory_is_written_by_one_process_at_a_time(tmp_path):
    """A run resumed twice at once (two terminals, a scheduler's requeue while the first job still
    runs) would interleave metrics and checkpoints: the second writer gets one clear error."""
    import subprocess
    import sys

    from bellmax.core.run import lock_run_dir

    first = Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False)
    with pytest.raises(BellmaxError, match="still open in this process"):
        Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=0, tensorboard=False)
    first.close()
    with pytest.raises(RuntimeError):  # a stage that fails inside `with Run(...)` still lets go of the directory
        with Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=0, tensorboard=False):
            raise RuntimeError("a failing training stage")
    with Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=0, tensorboard=False):
        with pytest.raises(BellmaxError, match="still open in this process"):
            Run(tmp_path, "vpg", CONFIG.to_dict(), resume_step=0, tensorboard=False)

    # a process killed while holding the lock leaves none behind
    src = str(Path(__file__).parents[1] / "src")
    killed = subprocess.run([sys.executable, "-c", f"import os, signal, sys; sys.path.insert(0, {src!r}); "
                             "from bellmax.core.run import lock_run_dir; "
                             f"held = lock_run_dir({str(tmp_path)!r}); os.kill(os.getpid(), signal.SIGKILL)"])
    assert killed.returncode == -9
    lock_run_dir(tmp_path).close()


def agent_with_checkpoint(tmp_path):
    """An agent checkpointed at step 200: (agent, checkpoint path, the checkpoint's bytes)."""
    agent = VPG(CONFIG)
    agent.learn(200)
    path = tmp_path / CHECKPOINT_FILE
    agent.save(path)
    return agent, path, path.read_bytes()


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    agent, path, good = agent_with_checkpoint(tmp_path)
    agent.learn(400)

    real_save = torch.save

    def dies_midway(state, f):  # torch.save streams into the temporary file; killed halfway
        buffer = io.BytesIO()
        real_save(state, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        agent.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert load(path).global_step == 200
    assert list(tmp_path.iterdir()) == [path]  # the half-written temporary file was removed


def test_a_full_disk_is_a_clear_error_that_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    agent, path, good = agent_with_checkpoint(tmp_path)

    def disk_full(state, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(BellmaxError, match=r"could not write checkpoint .*No space left on device.*intact"):
        agent.save(path)
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]


def test_a_disk_that_fills_up_under_torch_save_is_the_same_clear_error(tmp_path, monkeypatch):
    """torch.save itself reports a failed write as an opaque RuntimeError ("enforce fail ... unexpected
    pos"): the message still says the disk is full and the previous checkpoint is intact."""
    import errno

    from bellmax.core import run as run_module

    agent, path, good = agent_with_checkpoint(tmp_path)
    real_fdopen = run_module.os.fdopen

    class FillsUp:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(run_module.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    with pytest.raises(BellmaxError, match=r"could not write checkpoint .*No space left on device.*intact"):
        agent.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good and list(tmp_path.iterdir()) == [path]


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


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    """Not mkstemp's 0600: a run directory is readable wherever a plainly written file would be."""
    import os

    from bellmax.core import run as run_module

    target = tmp_path / "file.bin"
    run_module.atomic_write_bytes(target, b"x")
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    agent = VPG(CONFIG)
    path = tmp_path / CHECKPOINT_FILE
    agent.save(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(BellmaxError, match="corrupt or truncated"):
        load(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BellmaxError, match="no checkpoint"):
        load(tmp_path / CHECKPOINT_FILE)


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
    first = algo(config).learn(until_step=256)
    first.save(tmp_path / CHECKPOINT_FILE)
    resumed = load(tmp_path / CHECKPOINT_FILE).learn()
    assert resumed.global_step == straight.global_step == 768
    a, b = all_tensors(straight), all_tensors(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(".square_avg." in k for k in a) == (optimizer == "rmsprop")
    assert (straight.obs_normalizer.stats.mean == resumed.obs_normalizer.stats.mean).all()


def test_replay_arrays_are_written_as_tensor_storages_not_into_the_pickle(tmp_path):
    """torch.save pickles with protocol 2, which cannot hold an object over 4 GiB: a DQN Atari run
    with its preset's 1M-frame replay (6.6 GiB of frames) crashed at its first checkpoint. The
    buffers now go into the checkpoint as raw tensor storages (checked once at full size on the dev
    box: the Pong preset's empty 1M replay saves in 20 s to a 6.6 GiB file, and peak memory is the
    buffer itself). Here: a smaller Atari-shaped buffer, whose frames must stay out of the pickle
    and come back as the same NumPy arrays, sampling exactly as before."""
    from bellmax.core.replay import PrioritizedFrameStackReplayBuffer
    from bellmax.core.run import save_checkpoint

    buffer = PrioritizedFrameStackReplayBuffer(2000, 2, (4, 84, 84), (), gamma=0.9, n_step=3)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
    for step in range(600):
        next_obs = rng.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
        done = np.array([step % 50 == 49, False])
        buffer.add(obs, rng.integers(6, size=2), rng.random(2), next_obs, done, np.ones(2, bool), done)
        obs = next_obs
    path = tmp_path / "replay.pt"
    save_checkpoint(path, {"replay": buffer})
    with zipfile.ZipFile(path) as archive:
        pickle_bytes = max(i.file_size for i in archive.infolist() if i.filename.endswith("data.pkl"))
    assert buffer.frames.nbytes > 14_000_000
    assert pickle_bytes < 20_000  # names and scalars only; the frames are storages beside it

    restored = torch.load(path, weights_only=False)["replay"]
    assert type(restored) is PrioritizedFrameStackReplayBuffer
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            assert type(vars(restored)[key]) is np.ndarray and vars(restored)[key].dtype == value.dtype, key
            assert np.array_equal(vars(restored)[key], value), key
    assert np.array_equal(restored.priorities.tree, buffer.priorities.tree)
    ours, theirs = buffer.sample(64, np.random.default_rng(1)), restored.sample(64, np.random.default_rng(1))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    restored.add(obs, np.zeros(2, int), np.zeros(2), obs, np.zeros(2, bool), np.ones(2, bool), np.zeros(2, bool))


def test_a_replay_buffer_pickled_with_its_arrays_still_loads():
    """Checkpoints written before the arrays were saved as tensors hold the arrays in the pickle."""
    from bellmax.core.replay import ReplayBuffer

    buffer = ReplayBuffer(10, (3,), (1,))
    buffer.obs[:] = np.arange(30, dtype=np.float32).reshape(10, 3)
    old_style = ReplayBuffer.__new__(ReplayBuffer)
    old_style.__setstate__(dict(vars(buffer)))  # what unpickling an old checkpoint does
    assert type(old_style.obs) is np.ndarray and np.array_equal(old_style.obs, buffer.obs)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_evaluation_maps_the_checkpoint_instead_of_reading_its_replay(tmp_path):
    """`bellmax eval` loads with mmap=True: a DQN Atari checkpoint's 6.6 GiB replay is mapped from
    the file, not read, and the loaded agent is the same."""
    from bellmax.algos import DQN, DQNConfig

    agent = DQN(DQNConfig(env="CartPole-v1", seed=3, total_steps=600, learning_starts=200, buffer_size=5000,
                          hidden_sizes=(16,), eval_episodes=0))
    agent.learn(600)
    path = tmp_path / CHECKPOINT_FILE
    agent.save(path)
    read, mapped = load(path), load(path, mmap=True)
    assert str(path) in Path("/proc/self/maps").read_text()
    assert mapped.params_sha256() == read.params_sha256() == agent.params_sha256()
    assert np.array_equal(mapped.replay.obs, agent.replay.obs)
    assert np.array_equal(mapped.evaluate(3), read.evaluate(3))


# -- checkpoints that verify themselves ---------------------------------------------------------
def flip_a_byte_of_tensor_data(path: Path) -> None:
    """Change one byte inside the policy's first weight matrix (not the pickle, not the zip's
    directory): torch.load alone reads such a file without complaint."""
    data = bytearray(path.read_bytes())
    weight = next(iter(torch.load(path, weights_only=False)["modules"]["policy"].values()))
    stored = weight.numpy().tobytes()
    offset = bytes(data).index(stored)  # tensor storages are stored uncompressed
    data[offset + len(stored) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_tensor_data_is_caught_by_the_checksum(tmp_path):
    path = tmp_path / "vpg.pt"
    VPG(CONFIG).save(path)
    before = torch.load(path, weights_only=False)
    flip_a_byte_of_tensor_data(path)
    after = torch.load(path, weights_only=False)  # torch alone loads it: another policy, silently
    assert any(not torch.equal(a, b) for name in before["modules"]
               for a, b in zip(before["modules"][name].values(), after["modules"][name].values()))
    with pytest.raises(BellmaxError, match=r"vpg.pt is damaged: its content does not match the SHA-256"):
        load(path)


def test_checkpoints_carry_their_format_and_refuse_a_newer_one(tmp_path):
    from bellmax.core.run import CHECKPOINT_FORMAT, verify_checkpoint

    path = tmp_path / "vpg.pt"
    VPG(CONFIG).save(path)
    assert verify_checkpoint(path) == CHECKPOINT_FORMAT == 2
    data = path.read_bytes()
    assert data.endswith(b"\n") and b"bellmax-checkpoint format=0002 sha256=" in data[-120:]
    path.write_bytes(data.replace(b"format=0002", b"format=0003"))
    with pytest.raises(BellmaxError, match="format 3, written by a newer bellmax"):
        load(path)


def test_bytes_appended_after_the_checksum_line_are_damage(tmp_path):
    path = tmp_path / "vpg.pt"
    VPG(CONFIG).save(path)
    path.write_bytes(path.read_bytes() + b"junk")  # torch alone would still load it
    with pytest.raises(BellmaxError, match="vpg.pt is damaged or not a checkpoint"):
        load(path)


def test_a_checkpoint_of_an_older_bellmax_without_checksum_still_loads(tmp_path):
    agent = VPG(CONFIG).learn(400)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)  # what earlier releases wrote: the archive alone
    (tmp_path / "old.pt").write_bytes(buffer.getvalue())
    assert load(tmp_path / "old.pt").params_sha256() == agent.params_sha256()


def test_a_run_keeps_its_last_checkpoints_and_checkpoint_pt_names_the_newest(tmp_path):
    from bellmax.core.run import step_checkpoints

    run_dir = tmp_path / "run"
    agent = VPG(CONFIG.replace(checkpoint_every=200))
    agent.learn(1200, run=Run(run_dir, "vpg", CONFIG.to_dict(), tensorboard=False))
    kept = step_checkpoints(run_dir)
    assert [step for step, _ in kept] == [1200, 1000]  # the default keep_checkpoints=2
    assert (run_dir / CHECKPOINT_FILE).samefile(kept[0][1])
    assert load_checkpoint(kept[1][1])["global_step"] == 1000

    one = tmp_path / "one"
    VPG(CONFIG.replace(checkpoint_every=200, keep_checkpoints=1)).learn(
        800, run=Run(one, "vpg", CONFIG.to_dict(), tensorboard=False))
    assert [step for step, _ in step_checkpoints(one)] == [800]


def test_without_hard_links_checkpoint_pt_is_a_verified_copy(tmp_path, monkeypatch):
    import os

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    agent = VPG(CONFIG.replace(checkpoint_every=400))
    agent.learn(800, run=Run(tmp_path, "vpg", CONFIG.to_dict(), tensorboard=False))
    assert not (tmp_path / CHECKPOINT_FILE).samefile(tmp_path / "checkpoint-800.pt")
    assert load_checkpoint(tmp_path)["global_step"] == 800


def test_resume_falls_back_to_the_newest_valid_checkpoint_and_ends_as_uninterrupted(tmp_path, capsys):
    from bellmax.cli import main

    flags = ["--num-envs", "4", "--n-steps", "50", "--batch-size", "100", "--hidden-sizes", "16", "--seed", "11",
             "--eval-episodes", "0", "--checkpoint-every", "200", "--no-progress", "--no-tensorboard"]
    straight, run_dir = tmp_path / "straight", tmp_path / "run"
    assert main(["train", "vpg", *flags, "--total-steps", "1200", "--run-dir", str(straight)]) == 0
    assert main(["train", "vpg", *flags, "--total-steps", "800", "--run-dir", str(run_dir)]) == 0
    flip_a_byte_of_tensor_data(run_dir / "checkpoint-800.pt")  # the newest, also named checkpoint.pt
    capsys.readouterr()

    assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt is damaged" in err and "checkpoint-600.pt" in err and "Traceback" not in err

    assert main(["train", "vpg", "--resume", str(run_dir), "--total-steps", "1200", "--no-progress",
                 "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert "resuming from checkpoint-600.pt instead, the newest valid checkpoint (step 600)" in err
    assert (run_dir / "checkpoint-800.pt.damaged").exists()
    assert load(run_dir).params_sha256() == load(straight).params_sha256()
    assert [r["step"] for r in read_metrics(run_dir)] == [r["step"] for r in read_metrics(straight)]


def test_resume_with_every_checkpoint_damaged_is_one_line(tmp_path, capsys):
    from bellmax.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "vpg", "--num-envs", "4", "--n-steps", "50", "--batch-size", "100", "--total-steps", "400",
                 "--checkpoint-every",
                 "200", "--eval-episodes", "0", "--no-progress", "--no-tensorboard", "--run-dir", str(run_dir)]) == 0
    for name in ("checkpoint-400.pt", "checkpoint-200.pt"):
        flip_a_byte_of_tensor_data(run_dir / name)
    capsys.readouterr()
    assert main(["train", "vpg", "--resume", str(run_dir), "--total-steps", "600", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the older checkpoints is valid" in err
