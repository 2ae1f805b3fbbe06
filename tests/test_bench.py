"""`bellmax bench`: argument checking, the commands it plans, reading results back, the tables,
and one tiny end-to-end run of each side (skipped where Stable-Baselines3 is not installed: CI
installs only the `dev` extra)."""

import json
import subprocess
import sys

import pytest

from bellmax.bench import main, parse_args
from bellmax.bench.harness import display, last_json_line, summarize_bellmax_run
from bellmax.bench.report import (
    breakdown_table,
    cartpole_sample_table,
    cartpole_time_table,
    markdown_table,
    mujoco_table,
    rollout_table,
)
from bellmax.bench.zoo import ZOO_HYPERPARAMS, bellmax_ppo_flags, schedule_start, zoo_entry
from bellmax.errors import BellmaxError


# -- arguments and plans ----------------------------------------------------------------------
def dry_run(args, capsys):
    assert main([*args, "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()


def test_ppo_cartpole_plans_bellmax_then_both_sb3_variants_per_seed(capsys):
    lines = dry_run(["ppo-cartpole", "--seeds", "2", "--keep-runs", "R"], capsys)
    assert len(lines) == 6
    assert lines[0].endswith("train ppo --env CartPole-v1 --seed 0 --no-progress --run-dir R/bellmax-s0")
    assert "sb3_runner --algo ppo --env CartPole-v1 --seed 0 --total-steps 100000" in lines[1]
    assert "--eval-every" not in lines[1]
    assert "--eval-every 2048 --stop-at-return 475.0 --eval-episodes 10" in lines[2]
    assert "--seed 1" in lines[3]


def test_same_hparams_maps_rl_zoo_values_onto_bellmax_flags_without_eval_stop(capsys):
    bellmax_line, sb3_line = dry_run(["ppo-cartpole", "--same-hparams", "--seeds", "1"], capsys)
    flags = bellmax_line.split()
    for flag, value in [("--num-envs", "8"), ("--n-steps", "32"), ("--batch-size", "256"), ("--n-epochs", "20"),
                        ("--learning-rate", "0.001"), ("--gamma", "0.98"), ("--gae-lambda", "0.8"),
                        ("--clip-range", "0.2"), ("--total-steps", "100000"), ("--eval-every", "0"),
                        ("--stop-at-return", "None")]:
        assert flags[flags.index(flag) + 1] == value, flag
    assert "--anneal-lr" in flags and "--anneal-clip" in flags
    assert "--stop-at-return" not in sb3_line


def test_mujoco_v5_uses_rl_zoo_v4_entry_and_says_so():
    hyperparams, note = zoo_entry("ppo", "HalfCheetah-v5")
    assert hyperparams["gamma"] == 0.98 and hyperparams["n_epochs"] == 20 and hyperparams["normalize"]
    assert "HalfCheetah-v4" in note and "HalfCheetah-v5" in note
    trpo, _ = zoo_entry("trpo", "HalfCheetah-v5")
    assert trpo["target_kl"] == 0.04 and trpo["n_critic_updates"] == 20 and trpo["n_envs"] == 2
    assert "target_kl" not in zoo_entry("trpo", "Hopper-v5")[0]


def test_zoo_entries_are_copies_so_callers_cannot_change_the_data():
    entry, _ = zoo_entry("ppo", "Hopper-v5")
    entry["policy_kwargs"]["net_arch"]["pi"].append(1)
    assert ZOO_HYPERPARAMS[("ppo", "Hopper-v4")]["policy_kwargs"]["net_arch"]["pi"] == [256, 256]


def test_linear_schedules_and_unmatched_settings_are_reported():
    assert schedule_start("lin_0.001") == (0.001, True)
    assert schedule_start(3e-4) == (3e-4, False)
    flags, notes = bellmax_ppo_flags(zoo_entry("ppo", "Hopper-v5")[0])
    assert flags[flags.index("--hidden-sizes") + 1: flags.index("--hidden-sizes") + 3] == ["256", "256"]
    assert flags[flags.index("--activation") + 1] == "relu" and flags[flags.index("--log-std-init") + 1] == "-2"
    assert "--normalize-obs" in flags and "--normalize-reward" in flags
    assert any("ortho_init" in note for note in notes)


@pytest.mark.parametrize("args, message", [
    (["ppo-cartpole", "--seeds", "0"], "--seeds"),
    (["mujoco", "--env", "Walker2d-v5"], "no rl-zoo3 hyperparameters"),
    (["mujoco", "--algo", "dqn"], "--algo"),
    (["rollout", "--modes", "bellmax,warp"], "warp"),
    (["fastest"], "fastest"),
    ([], "choose a benchmark"),
])
def test_bad_input_is_one_bellmax_error(args, message):
    with pytest.raises(BellmaxError, match=message):
        main([*args, "--dry-run"] if args else args)


def test_help_returns_zero(capsys):
    assert parse_args(["--help"]) is None
    assert main(["mujoco", "--help"]) == 0
    assert "--algo" in capsys.readouterr().out


def test_cli_prints_bad_bench_input_as_one_line():
    proc = subprocess.run([sys.executable, "-m", "bellmax.cli", "bench", "mujoco", "--env", "Nope-v5", "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_bellmax_core_does_not_import_stable_baselines3():
    code = ("import sys, bellmax.cli, bellmax.algos.ppo, bellmax.bench, bellmax.bench.harness, bellmax.bench.report; "
            "print(any(m.startswith(('stable_baselines3', 'sb3_contrib')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- reading results back ---------------------------------------------------------------------
def write_metrics(run_dir, rows):
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bellmax_run_summary_sums_phases_and_finds_the_solving_evaluation(tmp_path):
    rows = [
        {"step": 2048, "time/iteration_seconds": 0.3, "time/rollout_seconds": 0.1, "time/sps": 2048 / 0.3,
         "eval/return": 200.0, "time/eval_seconds": 0.5},
        {"step": 4096, "time/iteration_seconds": 0.3, "time/rollout_seconds": 0.1, "time/sps": 4096 / 1.1,
         "eval/return": 480.0, "time/eval_seconds": 0.2},
    ]
    write_metrics(tmp_path / "run", rows)
    summary = summarize_bellmax_run(tmp_path / "run", whole_seconds=3.0, stop_at_return=475.0)
    assert summary["steps"] == 4096 and summary["eval_return"] == 480.0 and summary["solved_at"] == 4096
    assert summary["rollout_seconds"] == pytest.approx(0.2)
    assert summary["update_seconds"] == pytest.approx(0.4)
    assert summary["eval_seconds"] == pytest.approx(0.7)
    # learn loop 1.1 s up to step 4096, of which 0.5 s was the evaluation at step 2048
    assert summary["train_sps"] == pytest.approx(4096 / 0.6)


def test_empty_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(BellmaxError, match="no metrics"):
        summarize_bellmax_run(tmp_path, 1.0)


def test_runner_output_is_read_from_its_last_line():
    assert last_json_line('warning: something\n{"steps": 5}\n\n') == {"steps": 5}
    with pytest.raises(BellmaxError, match="not JSON"):
        last_json_line("Traceback ...")
    with pytest.raises(BellmaxError, match="printed nothing"):
        last_json_line("")


def test_display_hides_interpreter_paths():
    assert display([sys.executable, "-m", "bellmax.bench.sb3_runner", "--env", "A B"]) == \
        "python -m bellmax.bench.sb3_runner --env 'A B'"


# -- tables -----------------------------------------------------------------------------------
def run(library, seconds, steps, eval_return, solved_at=None, sps=1000.0):
    return {"library": library, "whole_seconds": seconds, "steps": steps, "eval_return": eval_return,
            "solved_at": solved_at, "train_sps": sps, "rollout_seconds": 0.5, "update_seconds": 1.0,
            "eval_seconds": 0.25, "setup_seconds": 0.4}


def test_markdown_table_has_header_rule_and_rows():
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_cartpole_tables_show_per_seed_figures_and_ratio_of_means():
    bellmax = [run("bellmax", 3.0, 8192, 480.0, 8192), run("bellmax", 5.0, 16384, 500.0, 16384)]
    zoo = [run("sb3", 40.0, 100_000, 500.0), run("sb3", 60.0, 100_000, 500.0)]
    stop = [run("sb3", 20.0, 30720, 490.0, 30720), run("sb3", 30.0, 100_000, 300.0, None)]
    time_table = cartpole_time_table([0, 1], bellmax, zoo, stop)
    assert "| 0 | 3.0 / 8.2k / 480.0 | 40.0 / 100.0k / 500.0 | 20.0 / 30.7k / 490.0 | 0.075 | 0.15 |" in time_table
    assert "**0.080**" in time_table  # (3 + 5) / (40 + 60)
    sample = cartpole_sample_table([0, 1], bellmax, stop)
    assert "not solved" in sample and "(1/2 solved)" in sample and "(2/2 solved)" in sample


def test_breakdown_rest_is_whole_minus_the_measured_phases():
    imports = {"import_algo": 1.5, "import_train": 1.75, "import_sb3": 2.0}
    table = breakdown_table("bellmax", [0], [run("bellmax", 4.0, 1, 1.0)], imports)
    assert "| 0 | 4.00 | 1.50 | 0.25 | 0.50 | 1.00 | 0.25 | 0.50 |" in table
    sb3_table = breakdown_table("sb3", [0], [run("sb3", 5.0, 1, 1.0)], imports)
    assert "set-up" in sb3_table and "| 0 | 5.00 | 2.00 | 0.40 | 0.50 | 1.00 | 0.25 | 0.85 |" in sb3_table


def test_mujoco_and_rollout_tables():
    table = mujoco_table([0], [run("bellmax", 100.0, 200_000, 1500.0, sps=2000.0)],
                         [run("sb3", 300.0, 200_000, 1000.0, sps=800.0)])
    assert "| 0 | 1,500.0 | 1,000.0 | 2,000 | 800 | 2.50 | 100.0 | 300.0 |" in table
    rows = rollout_table({"bellmax": [{"sps": 100.0, "num_envs": 8, "n_steps": 256, "hidden_sizes": [64, 64],
                                       "collect_sps": 120.0}],
                          "sb3-zoo": [{"sps": 40.0, "num_envs": 1, "n_steps": 512}, {"sps": 50.0, "num_envs": 1}]})
    assert "| 8 x 256, 64x64 | 100 | **100** | 1.00 |" in rows
    assert "collect_rollout` alone" in rows and "| **50** | 0.50 |" in rows


# -- tiny end-to-end runs (need the bench extra) ----------------------------------------------
@pytest.mark.slow
def test_tiny_ppo_cartpole_benchmark_end_to_end(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    code = main(["ppo-cartpole", "--seeds", "1", "--total-steps", "256", "--import-repeats", "1",
                 "--keep-runs", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")])
    assert code == 0
    text = capsys.readouterr().out
    assert "bellmax time by phase" in text and "| mean |" in text
    data = json.loads((tmp_path / "out" / "bench_ppo_cartpole.json").read_text())
    results = data["results"]
    assert results["bellmax"][0]["steps"] == 256 and results["sb3_zoo"][0]["steps"] == 256
    assert results["sb3_stop"][0]["solved_at"] is None and results["sb3_zoo"][0]["eval_return"] > 0
    assert (tmp_path / "out" / "bench_ppo_cartpole.png").stat().st_size > 0
    sb3_rows = [json.loads(line) for line in (tmp_path / "runs" / "sb3-zoo-s0" / "metrics.jsonl").open()]
    assert sb3_rows[-1]["eval/episodes"] == 10 and any("rollout/ep_return" in r for r in sb3_rows)


@pytest.mark.slow
def test_sb3_runner_stops_at_the_return_threshold(tmp_path):
    pytest.importorskip("stable_baselines3")
    # a threshold every policy reaches: the first evaluation (after 256 steps) stops training
    proc = subprocess.run([sys.executable, "-m", "bellmax.bench.sb3_runner", "--algo", "ppo", "--env", "CartPole-v1",
                           "--total-steps", "2048", "--eval-every", "256", "--stop-at-return", "1",
                           "--eval-episodes", "2"], capture_output=True, text=True, check=True)
    result = last_json_line(proc.stdout)
    assert result["solved_at"] == 256 and result["steps"] == 256 and result["periodic_eval_seconds"] > 0
