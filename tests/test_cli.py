"""The command line: happy paths write a complete run directory; bad input gives one readable
line, exit status 2, no traceback, and leaves no half-written run directory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bellmax.cli import main
from bellmax.core.run import read_metrics

TINY = ["--total-steps", "400", "--num-envs", "2", "--n-steps", "50", "--batch-size", "50",
        "--hidden-sizes", "16", "--no-progress", "--eval-episodes", "2"]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "vpg"
    assert main(["train", "vpg", "--env", "CartPole-v1", "--run-dir", str(run_dir), "--seed", "2", *TINY]) == 0
    return run_dir


def test_train_writes_config_metrics_tensorboard_and_checkpoint(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "metrics.csv", "metrics.jsonl", "checkpoint.pt", "tb"} <= names
    meta = json.loads((trained / "config.json").read_text())
    assert meta["algo"] == "vpg" and meta["config"]["seed"] == 2 and meta["preset"] == "cartpole"
    header = (trained / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "rollout/ep_return", "losses/loss_policy", "time/sps", "eval/return"} <= set(header)
    assert any(p.name.startswith("events.out.tfevents") for p in (trained / "tb").iterdir())


def test_tensorboard_holds_every_logged_scalar_once_the_run_is_closed(trained):
    # events are queued and written by TensorBoard's thread: closing the run must flush them all
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [json.loads(line) for line in (trained / "metrics.jsonl").open()]
    logged = [r["step"] for r in rows if r.get("losses/loss_policy") is not None]
    events = EventAccumulator(str(trained / "tb")).Reload()
    assert [e.step for e in events.Scalars("losses/loss_policy")] == logged and len(logged) > 1


def test_eval_json_schema_and_determinism(trained, capsys):
    code, out, _ = run_cli(["eval", str(trained), "--episodes", "3", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"mean_return", "std_return", "episodes", "params_sha256"}
    assert result["episodes"] == 3 and len(result["params_sha256"]) == 64
    code, out2, _ = run_cli(["eval", str(trained), "--episodes", "3", "--json"], capsys)
    assert json.loads(out2) == result


def test_resume_from_cli_matches_uninterrupted_run(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    base = ["train", "vpg", "--env", "CartPole-v1", "--seed", "4"]
    assert main([*base, "--run-dir", str(straight), *TINY]) == 0
    short = list(TINY)
    short[1] = "200"
    assert main([*base, "--run-dir", str(split), *short]) == 0
    assert main(["train", "vpg", "--resume", str(split), "--total-steps", "400", "--no-progress"]) == 0
    capsys.readouterr()
    hashes = []
    for d in (straight, split):
        main(["eval", str(d), "--episodes", "1", "--json"])
        hashes.append(json.loads(capsys.readouterr().out)["params_sha256"])
    assert hashes[0] == hashes[1]
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_each_periodic_evaluation_is_reported_on_stderr_as_logged(tmp_path, capsys):
    run_dir = tmp_path / "evals"
    code, _, err = run_cli(["train", "vpg", "--env", "CartPole-v1", "--seed", "3", "--run-dir", str(run_dir),
                            *TINY, "--eval-every", "200"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    expected = [f"step {r['step']:,}: eval/return {r['eval/return']:.2f} +- {r['eval/return_std']:.2f} over 2 "
                "episodes (deterministic policy)" for r in rows if "eval/return" in r]
    assert len(expected) == 2 and [line for line in err.splitlines() if line.startswith("step ")] == expected


def test_resume_may_change_only_the_resumable_fields(tmp_path, capsys):
    """A run resumed on a machine with more cores may use them (--torch-threads, like --device, may
    change; the arithmetic may then differ in the last bits); a change that alters the training
    itself is refused with one line that names it."""
    import torch

    run_dir = tmp_path / "run"
    assert main(["train", "vpg", "--env", "CartPole-v1", "--seed", "1", "--run-dir", str(run_dir), *TINY]) == 0
    capsys.readouterr()
    code, _, err = run_cli(["train", "vpg", "--resume", str(run_dir), "--total-steps", "600",
                            "--learning-rate", "0.1"], capsys)
    assert code == 2 and "you changed learning_rate" in err and len(err.strip().splitlines()) == 1
    threads = torch.get_num_threads()
    try:
        code, _, err = run_cli(["train", "vpg", "--resume", str(run_dir), "--total-steps", "600",
                                "--torch-threads", "2", "--no-progress"], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert json.loads((run_dir / "config.json").read_text())["config"]["torch_threads"] == 2
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1] == 600


def test_resuming_a_run_another_process_is_writing_is_refused(trained, capsys):
    before = (trained / "metrics.jsonl").read_bytes()
    src = str(Path(__file__).parents[1] / "src")
    other = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {src!r}); "
                              "from bellmax.core.run import lock_run_dir; "
                              f"held = lock_run_dir({str(trained)!r}); print('locked', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        code, _, err = run_cli(["train", "vpg", "--resume", str(trained), "--total-steps", "800"], capsys)
    finally:
        other.kill()
        other.wait()
    assert code == 2 and f"is in use by another process (pid {other.pid})" in err
    assert len(err.strip().splitlines()) == 1
    assert (trained / "metrics.jsonl").read_bytes() == before


def test_a_replay_that_cannot_fit_is_refused_before_the_run_directory_exists(tmp_path, monkeypatch, capsys):
    from bellmax.core import offpolicy

    monkeypatch.setattr(offpolicy, "memory_bytes", lambda: (2**30, 2**30))  # a 1 GiB machine
    run_dir = tmp_path / "big"
    code, _, err = run_cli(["train", "dqn", "--env", "CartPole-v1", "--buffer-size", "100000000",
                            "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "lower --buffer-size" in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_plot_keeps_every_logged_point_instead_of_resampling():
    """Seeds logged at the same steps are averaged point by point; runs logged at other steps meet on
    every step either logged, inside the range both cover. Sparse evaluations keep their peaks."""
    import numpy as np

    from bellmax.plotting import aggregate

    evals = np.array([100_000.0, 200_000, 300_000, 400_000, 500_000])
    steps, values = aggregate([(evals, np.array([-21.0, -17, -18, -0.8, -12])),
                               (evals, np.array([-20.0, -19, -5, -3, 1]))])
    assert np.array_equal(steps, evals) and values[0, 3] == -0.8 and values.mean(0)[4] == -5.5
    steps, values = aggregate([(np.array([0.0, 10, 20, 30]), np.array([0.0, 1, 2, 3])),
                               (np.array([5.0, 25, 40]), np.array([5.0, 25, 40]))])
    assert np.array_equal(steps, [5, 10, 20, 25, 30])
    assert np.allclose(values, [[0.5, 1, 2, 2.5, 3], [5, 10, 20, 25, 30]])


def test_plot_writes_a_png(trained, tmp_path, capsys):
    out = tmp_path / "curve.png"
    code, _, _ = run_cli(["plot", str(trained), str(trained), "-o", str(out)], capsys)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_shows_the_evaluation_return_beside_the_training_return(trained, tmp_path, capsys, monkeypatch):
    """A first-time user sees the training return (stochastic policy, still exploring) and the
    deterministic evaluation the run reports, labelled, in one colour per run group."""
    from bellmax import plotting

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, output: figures.append(fig) or output)
    assert run_cli(["plot", str(trained)], capsys)[0] == 0
    lines = figures[-1].axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "vpg CartPole-v1 (gae), train return (stochastic policy) (1 seed)",
        "vpg CartPole-v1 (gae), eval return (deterministic policy) (1 seed)"]
    assert lines[0].get_color() == lines[1].get_color() and lines[1].get_linestyle() == "--"
    eval_rows = [r for r in read_metrics(trained) if "eval/return" in r]
    assert list(lines[1].get_ydata()) == [r["eval/return"] for r in eval_rows]
    assert figures[-1].axes[0].get_ylabel() == "return"
    assert run_cli(["plot", str(trained), "--key", "losses/loss_policy"], capsys)[0] == 0
    assert [line.get_label() for line in figures[-1].axes[0].get_lines()] == ["vpg CartPole-v1 (gae) (1 seed)"]


@pytest.mark.parametrize("args, message", [
    (["train", "vpg", "--env", "CartPol-v1"], "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
    (["train", "ppp"], "unknown algorithm 'ppp'"),
    (["train", "vpg", "--learning-rate", "-0.1"], "invalid learning_rate=-0.1"),
    (["train", "vpg", "--batch-size", "100000"], "invalid batch_size=100000: must be between 1 and the rollout"),
    (["train", "vpg", "--gamma", "1.5"], "invalid gamma=1.5"),
    (["train", "vpg", "--preset", "nosuch"], "no preset 'nosuch' for vpg"),
    (["train", "vpg", "--resume", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    (["eval", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    # sizes that cannot be allocated are refused before allocating (the limits: a 1 GiB machine below)
    (["train", "ppo", "--hidden-sizes", "100000", "100000"], "an MLP of widths (100000, 100000) (10,000,800,002 "
                                                              "weights) would need 149.0 GiB, more than"),
    (["train", "ppo", "--n-steps", "100000000"], "a rollout of n_steps x num_envs = 100,000,000 x 8 samples"),
    (["train", "ppo", "--num-envs", "100000000"], "invalid num_envs=100000000: must be between 1 and 65,536"),
    (["train", "ppo", "--learning-rate", "1e39"], "invalid learning_rate=1e+39: must be within float32's range"),
    (["plot", "x" * 300], "error: cannot use " + "x" * 300 + ": File name too long"),
    (["eval", "x" * 300], "File name too long"),
])
def test_bad_input_is_one_readable_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    from bellmax.core import resources

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(resources, "memory_bytes", lambda: (2**30, 2**30))  # a 1 GiB machine: the same on any
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "a failed start must not leave a run directory"


def test_truncated_checkpoint_on_resume_and_eval(trained, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    for kept in broken.glob("checkpoint-*.pt"):  # nothing to fall back to (see test_checkpoint.py for that)
        kept.unlink()
    data = (broken / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    for args in (["train", "vpg", "--resume", str(broken)], ["eval", str(broken)]):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "corrupt or truncated" in err and len(err.strip().splitlines()) == 1


def test_wrong_action_space_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from bellmax.algos.vpg import VPG

    monkeypatch.setattr(VPG, "supports_continuous", False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "vpg", "--env", "Pendulum-v1", "--no-progress"], capsys)
    assert code == 2 and "needs discrete actions, but Pendulum-v1 has Box" in err


def test_existing_run_directory_is_never_overwritten(trained, capsys):
    before = (trained / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(["train", "vpg", "--run-dir", str(trained), *TINY], capsys)
    assert code == 2 and "already holds a run" in err
    assert (trained / "checkpoint.pt").read_bytes() == before


def test_installed_console_script_prints_no_traceback_and_solve_does_not_import_torch():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    bad = subprocess.run([sys.executable, "-m", "bellmax.cli", "train", "vpg", "--num-envs", "0"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "num_envs" in bad.stderr
    probe = ("import sys; from bellmax.cli import main; main(['solve', 'gridworld', '--json']); "
             "print('torch' in sys.modules, file=sys.stderr)")
    solved = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert solved.returncode == 0, solved.stderr
    assert solved.stderr.strip().splitlines()[-1] == "False"
    assert json.loads(solved.stdout)["values"]["4,3"] == 1.0


def test_console_script_ends_the_process_itself_and_loses_no_output_file_or_exit_handler(tmp_path):
    """`bellmax` (main() without arguments) ends the process once the command is done, skipping the
    interpreter's teardown: the last line of a piped (block-buffered) stdout, every metrics row and
    TensorBoard event, and atexit handlers all still come through, with the command's exit status."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # a buffered stdout
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    probe = ("import atexit, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr)); "
             "sys.argv = ['bellmax', 'train', 'vpg', '--run-dir', *sys.argv[1:]]; "
             "from bellmax.cli import main; main(); print('main returned')")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", probe, str(run_dir), *TINY], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("eval/return") and "main returned" not in proc.stdout
    assert proc.stderr.splitlines()[-1] == "atexit ran"
    logged = [r["step"] for r in read_metrics(run_dir) if r.get("losses/loss_policy") is not None]
    assert logged[-1] == 400
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("losses/loss_policy")] == logged
    failed = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "bad"), "--num-envs", "0"],
                            capture_output=True, text=True, env=env)
    assert failed.returncode == 2 and "num_envs" in failed.stderr and "main returned" not in failed.stdout


def test_sigterm_stops_training_with_a_checkpoint_of_the_last_step_and_a_resume_hint(tmp_path):
    """A scheduler's SIGTERM (or Ctrl-C) ends `bellmax train` after the current iteration: a checkpoint
    of the last logged step, one line that says how to continue, exit status 128 + 15, no traceback."""
    run_dir = tmp_path / "long"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "bellmax.cli", "train", "vpg", "--env", "CartPole-v1",
                             "--run-dir", str(run_dir), "--total-steps", "100000000", "--checkpoint-every", "0",
                             "--num-envs", "2", "--n-steps", "50", "--batch-size", "50", "--hidden-sizes", "16",
                             "--no-progress", "--no-tensorboard"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "training never logged a row"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = err.strip().splitlines()[-1]
    assert last == (f"stopped by SIGTERM at step {steps[-1]:,}: checkpoint saved; "
                    f"continue with `bellmax train vpg --resume {run_dir}`")
    from bellmax.core.run import load_checkpoint

    assert load_checkpoint(run_dir)["global_step"] == steps[-1]  # --checkpoint-every 0: only the stop wrote one


@pytest.mark.parametrize("command", ["train", "eval", "solve"])
def test_an_interrupt_exits_130_and_only_train_speaks_of_checkpoints(command, monkeypatch, capsys):
    import bellmax.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, {"eval": "evaluate"}.get(command, command), interrupted)
    code, _, err = run_cli([command, "x"], capsys)
    assert code == 130 and "Traceback" not in err
    assert ("--resume" in err) == (command == "train")


def test_no_tensorboard_skips_the_event_files_but_keeps_csv_and_jsonl(tmp_path):
    run_dir = tmp_path / "quiet"
    assert main(["train", "vpg", "--run-dir", str(run_dir), "--no-tensorboard", *TINY]) == 0
    names = {p.name for p in run_dir.iterdir()}
    assert "tb" not in names and {"metrics.csv", "metrics.jsonl", "checkpoint.pt"} <= names


def test_resume_cleans_up_after_a_killed_writer_and_skips_only_damaged_metrics_lines(tmp_path, capsys):
    """A kill mid-checkpoint leaves `.checkpoint.pt.*.tmp` (up to a whole checkpoint) and a kill or a
    bad disk can damage a line in the middle of metrics.jsonl: the resume removes the first and
    skips only the second, keeping every row after it."""
    run_dir = tmp_path / "run"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--n-steps", "32", "--batch-size", "64",
             "--eval-episodes", "0", "--stop-at-return", "None", "--no-progress", "--no-tensorboard",
             "--checkpoint-every", "64"]
    assert main(["train", "ppo", *flags, "--total-steps", "384", "--run-dir", str(run_dir)]) == 0
    leftover = run_dir / ".checkpoint.pt.k1ll3d.tmp"
    leftover.write_bytes(b"\0" * 2**20)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    assert len(lines) == 6
    lines[2] = lines[2][: len(lines[2]) // 2]  # a torn line in the middle
    metrics.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["train", "ppo", "--resume", str(run_dir), "--total-steps", "512", "--no-progress",
                 "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert not leftover.exists() and "removed 1.0 MiB of temporary files" in err
    assert "skipped 1 damaged line(s) (line 3)" in err
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [64, 128, 256, 320, 384, 448, 512]  # only the damaged row (192) is gone


def test_resume_of_a_run_stopped_before_its_first_checkpoint_trains_it_afresh(tmp_path, capsys):
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--n-steps", "32", "--batch-size", "64", "--total-steps",
             "256", "--eval-episodes", "0", "--stop-at-return", "None", "--no-progress", "--seed", "4"]
    stopped, fresh = tmp_path / "stopped", tmp_path / "fresh"
    assert main(["train", "ppo", *flags, "--run-dir", str(stopped)]) == 0
    for checkpoint in stopped.glob("checkpoint*.pt"):  # as if killed before the first checkpoint
        checkpoint.unlink()
    assert main(["train", "ppo", *flags, "--run-dir", str(stopped)]) == 2  # a fresh start still refuses the dir
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "ppo", "--resume", str(stopped), "--no-progress"]) == 0
    assert "has no checkpoint (its first start stopped before writing one): training it afresh" in \
        capsys.readouterr().err
    assert main(["train", "ppo", *flags, "--run-dir", str(fresh)]) == 0
    capsys.readouterr()
    hashes = []
    for run in (stopped, fresh):
        assert main(["eval", str(run), "--episodes", "1", "--json"]) == 0
        hashes.append(json.loads(capsys.readouterr().out)["params_sha256"])
    assert hashes[0] == hashes[1]
    assert [r["step"] for r in read_metrics(stopped)] == [r["step"] for r in read_metrics(fresh)]


def test_resume_finishes_a_final_evaluation_a_kill_interrupted(tmp_path, capsys):
    run_dir = tmp_path / "run"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--n-steps", "32", "--batch-size", "64", "--total-steps",
             "256", "--eval-every", "1000", "--eval-episodes", "2", "--stop-at-return", "None", "--no-progress"]
    assert main(["train", "ppo", *flags, "--run-dir", str(run_dir)]) == 0
    rows = read_metrics(run_dir)
    assert "eval/return" in rows[-1] and rows[-1]["step"] == 256
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines()[:-1]))  # killed mid-eval
    checkpoint = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "ppo", "--resume", str(run_dir), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "stopped before its final evaluation: evaluating it now" in err and "eval/return" in out
    final = read_metrics(run_dir)[-1]
    assert final == {**rows[-1], "time/eval_seconds": final["time/eval_seconds"]}  # the same evaluation again
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == checkpoint  # the model was not touched


def test_a_run_that_reached_its_stop_rule_is_finished_unless_given_more(tmp_path, capsys):
    run_dir = tmp_path / "run"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--n-steps", "32", "--batch-size", "64", "--total-steps",
             "2048", "--eval-every", "128", "--eval-episodes", "2", "--stop-at-return", "5", "--no-progress"]
    assert main(["train", "ppo", *flags, "--run-dir", str(run_dir)]) == 0
    stopped_at = read_metrics(run_dir)[-1]["step"]
    assert stopped_at < 2048  # any policy lasts 5 steps: it stops at the first evaluation
    checkpoint = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "ppo", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "is finished: it reached --stop-at-return 5" in capsys.readouterr().err
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == checkpoint
    assert read_metrics(run_dir)[-1]["step"] == stopped_at
    assert main(["train", "ppo", "--resume", str(run_dir), "--stop-at-return", "None", "--no-progress"]) == 0
    assert read_metrics(run_dir)[-1]["step"] == 2048


@pytest.mark.parametrize("run_dir, message", [
    ("/proc/bellmax-run", "cannot write the run directory /proc/bellmax-run"),
    ("{file}/sub", "cannot write the run directory"),
    ("{tmp}/" + "a" * 300, "File name too long"),
])
def test_a_run_directory_that_cannot_be_written_is_one_line(run_dir, message, tmp_path, capsys):
    regular = tmp_path / "file"
    regular.write_text("x")
    run_dir = run_dir.format(file=regular, tmp=tmp_path)
    assert main(["train", "ppo", "--total-steps", "64", "--eval-episodes", "0", "--stop-at-return", "None",
                 "--run-dir", run_dir, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_plot_outputs_and_eval_seeds_that_cannot_work_are_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "ppo", "--total-steps", "128", "--eval-every", "64", "--eval-episodes", "1",
                 "--stop-at-return", "None", "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard"]) == 0
    capsys.readouterr()
    for output, message in ((tmp_path / "curves.xyz", "give a file ending in one of"),
                            (Path("/proc/curves.png"), "cannot write /proc/curves.png")):
        assert main(["plot", str(run_dir), "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    for seed in ("-1", str(2**32)):
        assert main(["eval", str(run_dir), "--seed", seed]) == 2
        assert "--seed" in capsys.readouterr().err


class NaNRewardEnv:
    """CartPole whose reward turns nan at its 20th step."""

    def __new__(cls):
        import gymnasium as gym

        class Wrapped(gym.Wrapper):
            steps = 0

            def step(self, action):
                obs, reward, terminated, truncated, info = self.env.step(action)
                Wrapped.steps += 1
                return obs, (float("nan") if Wrapped.steps >= 20 else reward), terminated, truncated, info

        return Wrapped(gym.make("CartPole-v1"))


def test_an_environment_returning_nan_is_named_and_the_last_checkpoint_kept(tmp_path):
    import gymnasium as gym

    from bellmax.algos import PPO, PPOConfig
    from bellmax.core.run import Run
    from bellmax.errors import BellmaxError

    config = PPOConfig(env="CartPole-v1", num_envs=1, n_steps=8, batch_size=8, n_epochs=1, total_steps=64,
                       eval_episodes=0, stop_at_return=None, checkpoint_every=8)
    agent = PPO(config, env=gym.vector.SyncVectorEnv([NaNRewardEnv]))
    with pytest.raises(BellmaxError, match=r"CartPole-v1 returned a non-finite reward nan at step 1[0-9]: the "
                                           "environment is at fault"):
        with Run(tmp_path / "run", "ppo", config.to_dict(), tensorboard=False) as run:
            agent.learn(run=run)
    from bellmax.algos import load

    assert load(tmp_path / "run" / "checkpoint.pt").global_step == 16  # the last good one


def test_non_finite_parameters_stop_training_before_they_are_saved(tmp_path):
    import torch

    from bellmax.algos import PPO, PPOConfig
    from bellmax.errors import BellmaxError

    agent = PPO(PPOConfig(env="CartPole-v1", num_envs=2, n_steps=8, batch_size=16, total_steps=64, eval_episodes=0,
                          stop_at_return=None))
    agent.check_finite_update({"losses/loss_value": 0.5})
    with pytest.raises(BellmaxError, match="losses/loss_policy not finite"):
        agent.check_finite_update({"losses/loss_policy": float("nan")})
    with torch.no_grad():
        next(agent.policy.parameters())[0] = float("inf")
    with pytest.raises(BellmaxError, match="training diverged at step 0: parameters of policy not finite"):
        agent.check_finite_update({})
    agent.check_finite_update({}, parameters=False)  # between checkpoints only the losses are read


def test_skip_nonfinite_updates_drops_the_bad_step_counts_it_and_trains_on(tmp_path, monkeypatch):
    import torch

    import bellmax.algos.a2c as a2c_module
    from bellmax.algos import A2C, A2CConfig
    from bellmax.core.run import Run, read_metrics
    from bellmax.errors import BellmaxError

    real_loss, calls = a2c_module.a2c_loss, []

    def loss_nan_on_the_third_update(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            terms = {**terms, "loss": terms["loss"] * float("nan"), "loss_policy": terms["loss_policy"] * float("nan")}
        return terms

    monkeypatch.setattr(a2c_module, "a2c_loss", loss_nan_on_the_third_update)
    config = A2CConfig(env="CartPole-v1", num_envs=2, n_steps=5, total_steps=100, eval_episodes=0,
                       stop_at_return=None, seed=3)
    with pytest.raises(BellmaxError, match="training diverged at step 30: losses/loss_policy not finite"):
        A2C(config).learn()

    calls.clear()
    agent = A2C(config.replace(skip_nonfinite_updates=True))
    before = [p.detach().clone() for p in agent.policy.parameters()]
    with Run(tmp_path / "run", "a2c", agent.config.to_dict(), tensorboard=False) as run:
        agent.learn(run=run)
    rows = read_metrics(tmp_path / "run")
    assert [r["losses/skipped_updates"] for r in rows[:4]] == [0, 0, 1, 1] and rows[-1]["losses/skipped_updates"] == 1
    assert rows[2]["losses/loss_policy"] is None  # the nan loss, logged (metrics files write it as null)
    after = list(agent.policy.parameters())
    assert all(torch.isfinite(p).all() for p in after) and any(not torch.equal(a, b) for a, b in zip(before, after))


def test_a_replay_the_allocator_refuses_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "huge"  # 15 TB of arrays: refused by the allocator on any machine
    code, _, err = run_cli(["train", "dqn", "--env", "CartPole-v1", "--buffer-size", "1000000000000",
                            "--batch-size", "32", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "a replay buffer of 1,000,000,000,000 transitions does not fit in this machine's memory" in err
    assert not run_dir.exists()


@pytest.mark.parametrize("size", [2**40 + 1, 2**63])  # 2**63: more rows than NumPy can address (its own ValueError)
def test_a_replay_beyond_any_machine_is_refused_by_the_config(tmp_path, capsys, size):
    run_dir = tmp_path / "huge"
    code, _, err = run_cli(["train", "dqn", "--env", "CartPole-v1", "--buffer-size", str(size), "--run-dir",
                            str(run_dir)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"invalid buffer_size={size}: must be between 1 and 2**40" in err and "--buffer-size" in err
    assert not run_dir.exists()
