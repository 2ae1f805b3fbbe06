"""`bellmax bench`: argument checking, the commands it plans, reading results back, the tables,
and one tiny end-to-end run of each side (skipped where Stable-Baselines3 is not installed: CI
installs only the `dev` extra)."""

import json
import subprocess
import sys

import pytest

from bellmax.bench import main
from bellmax.bench.harness import display, last_json_line, run_process, summarize_bellmax_run
from bellmax.bench.parser import parse_args
from bellmax.bench.plans import make_plan
from bellmax.bench.report import (
    breakdown_table,
    cartpole_sample_table,
    cartpole_time_table,
    cpu_time_table,
    markdown_table,
    mujoco_table,
    rollout_table,
    updates_table,
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
    assert "--eval-every 256 --stop-at-return 475.0 --eval-episodes 10" in lines[2]  # the preset's stop rule
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


def test_off_policy_benchmarks_plan_bellmax_preset_then_sb3_full_budget_then_same_stop_rule(capsys):
    lines = dry_run(["dqn-cartpole", "--seeds", "2", "--keep-runs", "R"], capsys)
    assert len(lines) == 6
    # bellmax runs its preset as a user would: the preset's own stop rule, no extra flags
    assert lines[0].endswith("train dqn --env CartPole-v1 --seed 0 --no-progress --run-dir R/bellmax-s0")
    assert "sb3_runner --algo dqn --env CartPole-v1 --seed 0 --total-steps 50000" in lines[1]
    assert "--eval-every" not in lines[1]
    assert "--eval-every 1000 --stop-at-return 475.0 --eval-episodes 10" in lines[2]
    assert "--seed 1" in lines[3]
    sac = dry_run(["sac-pendulum", "--seeds", "1"], capsys)
    assert sac[0].endswith("train sac --env Pendulum-v1 --seed 0 --no-progress --run-dir RUNS/bellmax-s0")
    assert "--algo sac --env Pendulum-v1 --seed 0 --total-steps 20000 --eval-episodes" in sac[1]
    assert "--eval-every 1000 --stop-at-return -250.0" in sac[2]


def test_without_stop_rule_skips_sb3_b(capsys):
    lines = dry_run(["sac-pendulum", "--seeds", "2", "--without-stop-rule"], capsys)
    assert len(lines) == 4 and not any("--stop-at-return" in line for line in lines)


def test_off_policy_zoo_entries_are_rl_zoo_values_with_sb3_defaults_left_out():
    dqn, note = zoo_entry("dqn", "CartPole-v1")
    assert "dqn.yml CartPole-v1" in note
    assert (dqn["n_timesteps"], dqn["learning_rate"], dqn["batch_size"], dqn["train_freq"], dqn["gradient_steps"],
            dqn["target_update_interval"], dqn["exploration_fraction"], dqn["exploration_final_eps"]) == \
        (50_000, 2.3e-3, 64, 256, 128, 10, 0.16, 0.04)
    assert dqn["policy_kwargs"] == {"net_arch": [256, 256]}
    sac, note = zoo_entry("sac", "Pendulum-v1")
    assert "sac.yml Pendulum-v1" in note
    # rl-zoo3's entry sets only these: no use_sde, no policy_kwargs (SB3's defaults apply)
    assert sac == {"n_timesteps": 20_000, "policy": "MlpPolicy", "learning_rate": 1e-3}


def test_off_policy_zoo_entries_become_sb3_constructor_keywords():
    from bellmax.bench.sb3_runner import model_kwargs

    kwargs = model_kwargs(zoo_entry("dqn", "CartPole-v1")[0])
    assert "n_timesteps" not in kwargs and "policy" not in kwargs
    assert kwargs["policy_kwargs"] == {"net_arch": [256, 256]} and kwargs["learning_rate"] == 2.3e-3
    assert model_kwargs(zoo_entry("sac", "Pendulum-v1")[0]) == {"learning_rate": 1e-3}


def test_mujoco_off_policy_entries_and_td3_exploration_noise():
    sac, note = zoo_entry("sac", "HalfCheetah-v5")
    assert sac == {"n_timesteps": 1_000_000, "policy": "MlpPolicy", "learning_starts": 10000}
    assert "sac.yml HalfCheetah-v4" in note and "HalfCheetah-v5" in note
    td3, _ = zoo_entry("td3", "Hopper-v5")  # Hopper-v4 merges the HalfCheetah-v4 anchor unchanged
    assert td3 == zoo_entry("td3", "HalfCheetah-v4")[0]
    assert (td3["learning_rate"], td3["batch_size"], td3["noise_std"]) == (1e-3, 256, 0.1)
    from bellmax.bench.sb3_runner import model_kwargs

    kwargs = model_kwargs(td3)  # the noise is built from the env's action size, not passed through
    assert "noise_type" not in kwargs and "noise_std" not in kwargs
    assert kwargs["policy_kwargs"] == {"net_arch": [400, 300]}


def test_atari_games_use_rl_zoo_atari_entry_and_rollout_skips_the_mlp_matched_mode(capsys):
    ppo, note = zoo_entry("ppo", "ALE/Pong-v5")
    assert "ppo.yml atari" in note
    assert (ppo["policy"], ppo["n_envs"], ppo["n_steps"], ppo["frame_stack"]) == ("CnnPolicy", 8, 128, 4)
    from bellmax.bench.sb3_runner import model_kwargs

    assert not {"env_wrapper", "frame_stack", "n_envs"} & set(model_kwargs(ppo))
    lines = dry_run(["rollout", "--env", "ALE/Pong-v5", "--repeats", "1"], capsys)
    modes = [line.split("--mode ")[1].split()[0] for line in lines]
    assert modes == ["bellmax", "sb3-zoo", "env-gymnasium", "env-sb3"]


def test_td3_noise_is_rl_zoo_normal_action_noise():
    pytest.importorskip("stable_baselines3")
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise

    from bellmax.bench.sb3_runner import action_noise

    noise = action_noise(zoo_entry("td3", "HalfCheetah-v5")[0], 6)
    assert isinstance(noise, NormalActionNoise)
    np.testing.assert_array_equal(noise._sigma, np.full(6, 0.1))
    np.testing.assert_array_equal(noise._mu, np.zeros(6))
    assert action_noise(zoo_entry("sac", "HalfCheetah-v5")[0], 6) is None


def write_bench_json(path, algo="ppo", env="HalfCheetah-v5", steps=200_000, seeds=3, groups=("sb3",), **extra):
    runs = [{"library": "sb3", "algo": algo, "env": env, "total_steps": steps, "seed": seed, "eval_return": 1.0,
             "whole_seconds": 9.0} for seed in range(seeds)]
    path.write_text(json.dumps({"command": "bellmax bench mujoco ...", "machine": {"date": "2026-11-26 00:33"},
                                "imports": {"import_sb3": 2.0}, "results": {g: runs for g in groups}, **extra}))
    return str(path)


def test_reuse_sb3_plans_only_bellmax_runs(tmp_path, capsys):
    earlier = write_bench_json(tmp_path / "earlier.json")
    lines = dry_run(["mujoco", "--env", "HalfCheetah-v5", "--seeds", "2", "--reuse-sb3", earlier], capsys)
    assert len(lines) == 2 and all("train ppo --env HalfCheetah-v5" in line for line in lines)


def test_off_policy_reuse_takes_both_sb3_groups_and_plans_only_bellmax(tmp_path, capsys):
    earlier = write_bench_json(tmp_path / "sac.json", algo="sac", env="Pendulum-v1", steps=20_000,
                               groups=("sb3_zoo", "sb3_stop"))
    lines = dry_run(["sac-pendulum", "--reuse-sb3", earlier], capsys)
    assert len(lines) == 3 and all("train sac --env Pendulum-v1" in line for line in lines)
    only_zoo = write_bench_json(tmp_path / "zoo.json", algo="sac", env="Pendulum-v1", steps=20_000,
                                groups=("sb3_zoo",))
    with pytest.raises(BellmaxError, match="0 'sb3_stop' runs"):
        main(["sac-pendulum", "--reuse-sb3", only_zoo, "--dry-run"])
    assert len(dry_run(["sac-pendulum", "--without-stop-rule", "--reuse-sb3", only_zoo], capsys)) == 3


def test_reuse_sb3_refuses_another_comparison_and_keeps_the_first_provenance(tmp_path):
    from bellmax.bench.plans import load_reused_runs

    earlier = write_bench_json(tmp_path / "earlier.json", steps=100_000)
    with pytest.raises(BellmaxError, match="reuse only the same comparison"):
        main(["mujoco", "--env", "HalfCheetah-v5", "--reuse-sb3", earlier, "--dry-run"])
    with pytest.raises(BellmaxError, match="4 seeds asked for"):
        main(["mujoco", "--env", "HalfCheetah-v5", "--seeds", "4", "--reuse-sb3", earlier, "--dry-run"])
    assembled = json.loads(open(earlier).read())
    del assembled["results"]["sb3"][0]["whole_seconds"]  # e.g. put together by hand from runner output
    (tmp_path / "assembled.json").write_text(json.dumps(assembled))
    with pytest.raises(BellmaxError, match="run 0 has no whole_seconds"):
        load_reused_runs(str(tmp_path / "assembled.json"), "sb3", "ppo", "HalfCheetah-v5", 100_000, [0, 1, 2])
    origin = {"file": "first.json", "command": "first", "machine": {"date": "yesterday"}, "imports": {}}
    again = write_bench_json(tmp_path / "again.json", reused_from=origin)
    reused = load_reused_runs(again, "sb3", "ppo", "HalfCheetah-v5", 200_000, [0, 1, 2])
    assert reused["machine"] == {"date": "yesterday"}


def test_first_seed_runs_a_later_seed_alone_and_reuses_that_seeds_sb3_runs(tmp_path, capsys):
    lines = dry_run(["dqn-cartpole", "--first-seed", "3", "--seeds", "1", "--keep-runs", "R"], capsys)
    assert len(lines) == 3 and all(line.split("--seed ")[1].startswith("3 ") for line in lines)
    assert "R/bellmax-s3" in lines[0] and "R/sb3-zoo-s3" in lines[1] and "R/sb3-stop-s3" in lines[2]
    earlier = write_bench_json(tmp_path / "earlier.json", algo="dqn", env="CartPole-v1", steps=50_000,
                               groups=("sb3_zoo", "sb3_stop"))
    opts = parse_args(["dqn-cartpole", "--first-seed", "2", "--seeds", "1", "--reuse-sb3", earlier])
    plan = make_plan(opts, tmp_path)
    assert [job.seed for job in plan.jobs] == [2] and [run["seed"] for run in plan.reused["sb3_zoo"]] == [2]
    assert "seeds 2)" in plan.notes[-1]
    with pytest.raises(BellmaxError, match="without seed\\(s\\) 3 of the 2 seeds"):
        main(["dqn-cartpole", "--first-seed", "2", "--seeds", "2", "--reuse-sb3", earlier, "--dry-run"])


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
    code = ("import sys, bellmax.cli, bellmax.algos.ppo, bellmax.bench, bellmax.bench.harness, bellmax.bench.report, "
            "bellmax.bench.plans, bellmax.bench.execute, bellmax.bench.writeup; "
            "print(any(m.startswith(('stable_baselines3', 'sb3_contrib')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bench_help_imports_no_heavy_library():
    """`bellmax bench --help` (and every bench module it loads) stays light: torch, numpy, matplotlib
    and SB3 are imported only where a benchmark runs or draws."""
    code = ("import sys; from bellmax.bench import main; main(['--help']); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'numpy', 'matplotlib', 'stable_baselines3', 'sb3_contrib', 'gymnasium'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


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


def test_off_policy_run_summary_counts_gradient_updates_per_second_of_update_time(tmp_path):
    rows = [
        {"step": 2000, "time/iteration_seconds": 3.0, "time/rollout_seconds": 1.0, "time/sps": 2000 / 3.0,
         "losses/gradient_steps": 500},
        {"step": 4000, "time/iteration_seconds": 5.0, "time/rollout_seconds": 1.0, "time/sps": 4000 / 8.0,
         "losses/gradient_steps": 1000, "eval/return": -200.0, "time/eval_seconds": 0.5},
    ]
    write_metrics(tmp_path / "run", rows)
    summary = summarize_bellmax_run(tmp_path / "run", whole_seconds=10.0, stop_at_return=-250.0)
    assert summary["gradient_steps"] == 1500 and summary["solved_at"] == 4000
    assert summary["updates_per_second"] == pytest.approx(1500 / 6.0)  # (3 - 1) + (5 - 1) s of updates


def test_on_policy_run_summary_has_no_update_count(tmp_path):
    write_metrics(tmp_path / "run", [{"step": 8, "time/iteration_seconds": 1.0, "time/rollout_seconds": 0.5}])
    summary = summarize_bellmax_run(tmp_path / "run", whole_seconds=2.0)
    assert summary["gradient_steps"] is None and summary["updates_per_second"] is None


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


def test_off_policy_tables_without_sb3_b_and_with_update_rates():
    bellmax = [{**run("bellmax", 15.0, 18_000, 500.0, 18_000), "gradient_steps": 8500, "updates_per_second": 850.0}]
    zoo = [{**run("sb3", 80.0, 50_000, 500.0), "gradient_steps": 24_448, "updates_per_second": 340.0}]
    time_table = cartpole_time_table([0], bellmax, zoo, None, zoo_label="rl-zoo3 50.0k")
    assert "SB3 (a) rl-zoo3 50.0k" in time_table and "SB3 (b)" not in time_table
    assert "| 0 | 15.0 / 18.0k / 500.0 | 80.0 / 50.0k / 500.0 | 0.19 |" in time_table
    assert "steps to eval >= -250" in cartpole_sample_table([0], bellmax, zoo, threshold="-250")
    updates = updates_table([0], bellmax, zoo)
    assert "| 0 | 8,500 / 850 | 24,448 / 340 | 2.50 |" in updates and "**2.50**" in updates


def test_cpu_time_table_sets_cpu_ratios_beside_wall_clock_ones_and_is_left_out_without_cpu_times():
    bellmax = [{**run("bellmax", 3.0, 4096, 500.0), "cpu_seconds": 2.0}, {**run("bellmax", 6.0, 4096, 500.0),
                                                                           "cpu_seconds": 2.5}]
    zoo = [{**run("sb3", 30.0, 100_000, 500.0), "cpu_seconds": 25.0}, {**run("sb3", 30.0, 100_000, 500.0),
                                                                       "cpu_seconds": 25.0}]
    table = cpu_time_table([0, 1], bellmax, zoo)
    assert "| 1 | 2.5 | 25.0 | 0.10 | 0.20 |" in table  # seed 1's wall-clock was disturbed, its CPU time not
    assert "| mean | **2.2** | **25.0** | **0.090** | **0.15** |" in table
    assert cpu_time_table([0], bellmax[:1], [run("sb3", 30.0, 100_000, 500.0)]) is None  # reused, no CPU time


def test_run_process_measures_the_cpu_time_of_the_process_apart_from_its_wall_clock(tmp_path):
    burn_then_sleep = ("import time; end = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
                       "time.sleep(0.5); print('done')")
    finished = run_process([sys.executable, "-c", burn_then_sleep], log_dir=tmp_path, name="burn")
    assert finished.stdout == "done\n" and (tmp_path / "burn.out").read_text() == "done\n"
    assert 0.3 <= finished.cpu_seconds < 0.3 + 0.4 < finished.seconds  # the sleep costs wall-clock, no CPU
    with pytest.raises(BellmaxError, match="exit status 3: boom"):
        run_process([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])


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
def test_sb3_runner_reports_off_policy_gradient_updates(tmp_path):
    pytest.importorskip("stable_baselines3")
    # rl-zoo3's DQN CartPole: 128 updates every 256 steps once past step 1000 (SB3: after step 1024)
    proc = subprocess.run([sys.executable, "-m", "bellmax.bench.sb3_runner", "--algo", "dqn", "--env", "CartPole-v1",
                           "--total-steps", "1024", "--eval-episodes", "1"], capture_output=True, text=True, check=True)
    result = last_json_line(proc.stdout)
    assert result["steps"] == 1024 and result["gradient_steps"] == 128 and result["updates_per_second"] > 0


@pytest.mark.slow
def test_sb3_runner_stops_at_the_return_threshold(tmp_path):
    pytest.importorskip("stable_baselines3")
    # a threshold every policy reaches: the first evaluation (after 256 steps) stops training
    proc = subprocess.run([sys.executable, "-m", "bellmax.bench.sb3_runner", "--algo", "ppo", "--env", "CartPole-v1",
                           "--total-steps", "2048", "--eval-every", "256", "--stop-at-return", "1",
                           "--eval-episodes", "2"], capture_output=True, text=True, check=True)
    result = last_json_line(proc.stdout)
    assert result["solved_at"] == 256 and result["steps"] == 256 and result["periodic_eval_seconds"] > 0


def test_outputs_of_an_atari_benchmark_are_files_in_the_out_dir(tmp_path, capsys):
    import argparse

    from bellmax.bench.plans import Plan
    from bellmax.bench.writeup import write_outputs

    plan = Plan("rollout_ALE/Pong-v5")
    write_outputs(argparse.Namespace(out_dir=str(tmp_path)), plan, "bellmax bench rollout", "text", {"results": {}})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bench_rollout_ALE_Pong-v5.json", "bench_rollout_ALE_Pong-v5.md"]


def test_parallel_jobs_keep_plan_order_and_leave_partial_results(tmp_path):
    """--jobs N runs N processes at a time; results come back grouped in plan (seed) order even
    when later jobs finish first, and every finished run is in results.partial.json at once."""
    from bellmax.bench.execute import execute
    from bellmax.bench.plans import Job, Plan

    def job(group, seed, delay):
        code = f"import time, json; time.sleep({delay}); print(json.dumps({{'seed': {seed}, 'group': '{group}'}}))"
        return Job(group, seed, [sys.executable, "-c", code], None, "rollout")

    plan = Plan("toy", jobs=[job("a", 0, 0.6), job("b", 0, 0.0), job("a", 1, 0.0), job("b", 1, 0.3)])
    results = execute(plan, tmp_path, None, jobs=4)
    assert [r["seed"] for r in results["a"]] == [0, 1] and [r["seed"] for r in results["b"]] == [0, 1]
    partial = json.loads((tmp_path / "results.partial.json").read_text())
    assert {g: [r["seed"] for r in runs] for g, runs in partial.items()} == {"a": [0, 1], "b": [0, 1]}


def test_mujoco_variant_flags_and_tag_reach_the_bellmax_command_and_file_name(capsys):
    lines = dry_run(["mujoco", "--algo", "trpo", "--seeds", "1", "--bellmax-flags=--normalize-reward --value-epochs 20",
                     "--tag", "variant"], capsys)
    assert lines[0].endswith("--total-steps 200000 --eval-episodes 10 --normalize-reward --value-epochs 20")
    assert "--normalize-reward" not in lines[1]  # SB3's side keeps rl-zoo3's values
    from pathlib import Path

    from bellmax.bench.plans import mujoco_plan

    opts = parse_args(["mujoco", "--algo", "sac", "--tag", "variant"])
    plan = mujoco_plan(opts, Path("RUNS"))
    assert plan.file_stem == "mujoco_sac_HalfCheetah-v5_variant" and opts.steps == 100_000  # off-policy budget
