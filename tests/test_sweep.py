"""`bellmax sweep` on a real local Ray runtime (one per module: it costs seconds to start): every
trial is an ordinary run directory equal to `bellmax train` with the same config and seed, the
results table, the best preset and the curves, Optuna with ASHA, resume, and one clear line for
bad input before any trial starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bellmax.cli import main

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

TINY = ["--total-steps", "1024", "--num-envs", "2", "--n-steps", "128", "--batch-size", "64", "--n-epochs", "2",
        "--eval-every", "512", "--eval-episodes", "2", "--no-anneal-lr"]


@pytest.fixture(scope="module")
def ray_runtime():
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grid_sweep(ray_runtime, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "lr"
    code = main(["sweep", "ppo", "--env", "CartPole-v1", "--seeds", "0", "1", "--grid",
                 "learning_rate=3e-4,3e-3", "--run-dir", str(root), *TINY])
    assert code == 0
    return root


def eval_json(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_grid_trial_is_an_ordinary_run_equal_to_bellmax_train(grid_sweep, tmp_path, capsys):
    runs = sorted(p.name for p in (grid_sweep / "runs").iterdir())
    assert runs == ["learning_rate=0.0003-s0", "learning_rate=0.0003-s1", "learning_rate=0.003-s0",
                    "learning_rate=0.003-s1"]
    trial = grid_sweep / "runs" / "learning_rate=0.003-s1"
    config = json.loads((trial / "config.json").read_text())["config"]
    assert (config["learning_rate"], config["seed"], config["total_steps"]) == (3e-3, 1, 1024)
    alone = tmp_path / "alone"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--seed", "1", "--learning-rate", "3e-3",
                 "--run-dir", str(alone), "--no-progress", *TINY]) == 0
    assert eval_json(trial, capsys)["params_sha256"] == eval_json(alone, capsys)["params_sha256"]
    assert (trial / "metrics.csv").read_text() .count("\n") == (alone / "metrics.csv").read_text().count("\n")


def test_the_results_best_preset_and_curves(grid_sweep, tmp_path, capsys):
    results = json.loads((grid_sweep / "results.json").read_text())
    means = [s["mean"] for s in results["settings"]]
    assert means == sorted(means, reverse=True) and len(means) == 2
    for setting in results["settings"]:
        finals = []
        for run in setting["runs"]:
            rows = [json.loads(line) for line in Path(run, "metrics.jsonl").read_text().splitlines()]
            finals.append([r["eval/return"] for r in rows if "eval/return" in r][-1])
        assert setting["values"] == finals and setting["finished"] == [True, True]
        assert setting["mean"] == pytest.approx(sum(finals) / 2)
    best = json.loads((grid_sweep / "best_preset.json").read_text())
    assert best["env"] == "CartPole-v1"
    assert best["values"]["learning_rate"] == results["settings"][0]["setting"]["learning_rate"]
    assert best["values"]["total_steps"] == 1024 and "seed" not in best["values"]
    assert sorted(p.name for p in (grid_sweep / "curves").iterdir()) == ["learning_rate=0.0003.png",
                                                                          "learning_rate=0.003.png"]
    # the preset file is what `bellmax train --preset FILE` takes
    run_dir = tmp_path / "from_best"
    assert main(["train", "ppo", "--preset", str(grid_sweep / "best_preset.json"), "--run-dir", str(run_dir),
                 "--total-steps", "256", "--eval-episodes", "1", "--no-progress", "--no-tensorboard"]) == 0
    trained = json.loads((run_dir / "config.json").read_text())
    assert trained["config"]["learning_rate"] == best["values"]["learning_rate"]
    assert trained["preset"] == str(grid_sweep / "best_preset.json")


def test_a_sweep_leaves_ctrl_c_as_it_found_it(grid_sweep):
    import signal

    # Ray Tune sets a SIGINT handler of its own during a fit; a later training in the same process
    # must still get the first Ctrl-C as a clean stop (tests/test_checkpoint.py relies on the default)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resuming_a_finished_sweep_trains_nothing_again(grid_sweep, capsys):
    before = {p: p.stat().st_mtime_ns for p in (grid_sweep / "runs").glob("*/checkpoint.pt")}
    assert main(["sweep", "--resume", str(grid_sweep)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (grid_sweep / "runs").glob("*/checkpoint.pt")} == before
    assert "learning_rate=0.0003" in capsys.readouterr().out


def test_optuna_search_with_asha_samples_the_range(ray_runtime, tmp_path):
    root = tmp_path / "optuna"
    assert main(["sweep", "ppo", "--env", "CartPole-v1", "--seeds", "0", "--sample",
                 "learning_rate=loguniform:1e-4:1e-2", "--search", "optuna", "--samples", "3", "--asha",
                 "--run-dir", str(root), *TINY]) == 0
    results = json.loads((root / "results.json").read_text())
    rates = [s["setting"]["learning_rate"] for s in results["settings"]]
    assert len(set(rates)) == 3 and all(1e-4 <= r <= 1e-2 for r in rates)
    assert json.loads((root / "sweep.json").read_text())["search"] == "optuna"
    assert len(list((root / "runs").iterdir())) == 3


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(ray_runtime, tmp_path):
    """The driver is killed (SIGKILL) once a trial has finished and another has checkpointed; the
    resumed sweep leaves the finished trial alone and continues the other from its checkpoint."""
    root = tmp_path / "killed"
    longer = [a if a != "1024" else "4096" for a in TINY] + ["--checkpoint-every", "512"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    driver = subprocess.Popen([sys.executable, "-m", "bellmax.cli", "sweep", "ppo", "--env", "CartPole-v1",
                               "--seeds", "0", "1", "2", "--run-dir", str(root), "--cpus-per-trial", "1", *longer],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    finished: list[Path] = []
    while time.monotonic() < deadline and driver.poll() is None:
        runs = list((root / "runs").glob("*")) if (root / "runs").exists() else []
        finished = [r for r in runs if _checkpoint_step(r) >= 4096]  # its final checkpoint written
        started = [r for r in runs if r not in finished and (r / "checkpoint.pt").exists()]
        if finished and started:
            break
        time.sleep(0.2)
    assert driver.poll() is None, driver.stderr.read().decode()[-2000:] if driver.stderr else ""
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_at = {r: (r / "checkpoint.pt").stat().st_mtime_ns for r in finished}
    assert main(["sweep", "--resume", str(root)]) == 0
    assert {r: (r / "checkpoint.pt").stat().st_mtime_ns for r in finished} == done_at  # not trained again
    runs = sorted((root / "runs").iterdir())
    assert len(runs) == 3 and all(_last_step(r) >= 4096 for r in runs)
    for run in runs:  # each run's log has every iteration once, resumed or not
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [row["step"] for row in rows if "time/sps" in row]
        assert steps == list(range(256, 4096 + 1, 256))


def _checkpoint_step(run_dir: Path) -> int:
    from bellmax.core.run import load_checkpoint

    try:  # written atomically: a file that exists is whole
        return int(load_checkpoint(run_dir / "checkpoint.pt")["global_step"])
    except Exception:  # none yet
        return 0


def _last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])["step"] if lines else 0
    except json.JSONDecodeError:  # being written
        return 0


@pytest.mark.parametrize("args, message", [
    (["--grid", "lr=1e-3"], "'lr' is not a PPOConfig field"),
    (["--grid", "learning_rat=1e-3"], "did you mean learning_rate"),
    (["--grid", "n_epochs=four"], "n_epochs='four': not a valid int"),
    (["--grid", "learning_rate=-1"], "learning_rate"),
    (["--grid", "seed=1,2"], "give seeds with --seeds"),
    (["--sample", "learning_rate=loguniform:1e-3:1e-4"], "low end must be below"),
    (["--sample", "learning_rate=normal:0:1"], "a range is one of"),
    (["--sample", "learning_rate=loguniform:1e-5:1e-3", "--search", "grid"], "need --search random or optuna"),
    (["--search", "optuna"], "needs at least one --sample"),
    (["--num-workers", "2"], "--num-workers belongs to `bellmax train`"),
    (["--seeds", "1", "1"], "each seed once"),
])
def test_bad_input_is_one_clear_line_before_any_trial(args, message, tmp_path, capsys):
    root = tmp_path / "bad"
    assert main(["sweep", "ppo", "--env", "CartPole-v1", "--run-dir", str(root), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not root.exists()


def test_bad_sweep_directories_and_files(tmp_path, capsys):
    assert main(["sweep", "ppo", "--env", "CartPole-v1"]) == 2
    assert "--run-dir DIR is required" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert main(["sweep", "ppo", "--env", "NoSuchEnv-v9", "--run-dir", str(tmp_path / "x")]) == 2
    assert "NoSuchEnv-v9" in capsys.readouterr().err
    space = tmp_path / "space.yaml"
    space.write_text("grid: {n_epochs: [4, 10]}\nsample: {learning_rate: 'loguniform:1e-5:1e-3'}\n")
    from bellmax.algos import PPO
    from bellmax.distributed.space import load_space_file

    loaded = load_space_file(PPO.config_class, space)
    assert loaded.grid == {"n_epochs": [4, 10]} and loaded.sample["learning_rate"].kind == "loguniform"
    space.write_text("grid: [1, 2]\n")
    assert main(["sweep", "ppo", "--space", str(space), "--run-dir", str(tmp_path / "y")]) == 2
    assert "expected a mapping with 'grid'" in capsys.readouterr().err


def test_an_unreachable_address_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    code = main(["sweep", "ppo", "--env", "CartPole-v1", "--grid", "n_epochs=4", "--run-dir", str(tmp_path / "a"),
                 "--address", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "could not reach a Ray cluster at '127.0.0.1:9'" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()


def test_trials_share_the_clusters_gpus(monkeypatch):
    from bellmax.distributed.sweep import SweepSpec, gpus_per_trial

    spec = SweepSpec(algo="ppo", base={"env": "CartPole-v1", "total_steps": 1000}, seeds=[0])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert gpus_per_trial(spec) == pytest.approx(2 / 16)  # 16 trials at once share 2 GPUs
    spec.cpus_per_trial = 4
    assert gpus_per_trial(spec) == pytest.approx(0.5)
    spec.gpus_per_trial = 0.25
    assert gpus_per_trial(spec) == 0.25
    spec.gpus_per_trial = None
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert gpus_per_trial(spec) == 0.0
