"""The write-up of a benchmark: its report assembled from the tables and figures of
bellmax.bench.report (header with the command, machine and notes; the benchmark's tables; one
figure), printed on stdout and, with `--out-dir DIR`, written to DIR/bench_NAME.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bellmax.bench import report
from bellmax.bench.execute import Measured
from bellmax.bench.plans import OFF_POLICY_BENCHMARKS, Plan, bench_seeds, group_dirs, preset_stop_rule
from bellmax.errors import BellmaxError


def write_report(opts: argparse.Namespace, plan: Plan, root: Path, invocation: str, measured: Measured) -> None:
    """Compose the benchmark's report, print it and write its files (--out-dir)."""
    header = report_header(invocation, measured.machine, plan.notes)
    text, figure = REPORTS[opts.benchmark](opts, plan, root, measured.results, measured.imports, header)
    text += f"\n\n(benchmark wall-clock {time.perf_counter() - measured.started:.0f} s; runs in {root})"
    if figure is not None:
        print(f"wrote {figure}", file=sys.stderr)
    write_outputs(opts, plan, invocation, text,
                  {"machine": measured.machine, "notes": plan.notes, "imports": measured.imports,
                   "import_samples": measured.import_samples, "results": measured.results,
                   **({"reused_from": plan.reused_from} if plan.reused_from else {})})


def report_header(invocation: str, machine: dict[str, Any], notes: list[str]) -> str:
    """The command, the machine and software measured on, and the plan's notes as a list."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [f"Command: `{invocation}`", "",
             f"Machine: {machine['cpu_count']} CPU cores ({machine['cpu']}), {machine['platform']}, "
             f"Python {machine['python']}; {versions}; bellmax commit {machine.get('bellmax_commit') or '?'}; "
             f"measured {machine['date']}."]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def write_outputs(opts: argparse.Namespace, plan: Plan, invocation: str, text: str, data: dict[str, Any]) -> None:
    """Print the report; with --out-dir also write it as bench_NAME.md and its data as bench_NAME.json."""
    print(text)
    if opts.out_dir:
        out = Path(opts.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"bench_{plan.file_stem}.md").write_text(text + "\n")
        (out / f"bench_{plan.file_stem}.json").write_text(json.dumps({"command": invocation, **data}, indent=1) + "\n")
        print(f"wrote {out / f'bench_{plan.file_stem}.md'} and .json", file=sys.stderr)


def figure_path(opts: argparse.Namespace, plan: Plan, root: Path) -> Path:
    """bench_NAME.png in --out-dir, or among the runs."""
    return (Path(opts.out_dir) if opts.out_dir else root) / f"bench_{plan.file_stem}.png"


def _plot(draw: Any, *args: Any, **kwargs: Any) -> Path | None:
    """Draw a figure; a run without the metric (e.g. no episode finished in a short run) skips the
    figure with a note instead of losing the tables."""
    try:
        return draw(*args, **kwargs)
    except BellmaxError as exc:
        print(f"no figure: {exc}", file=sys.stderr)
        return None


# ---------------------------------------------------------------------------------------------
# one report per benchmark: (opts, plan, root, results, imports, header) -> (text, figure)


def report_cartpole(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                    header: str) -> tuple[str, Path | None]:
    """ppo-cartpole: time and steps to solve (or, --same-hparams, the fixed-budget comparison), the
    time breakdowns, and the return curves."""
    from bellmax.plotting import plot_runs

    assert imports is not None  # probed for every benchmark but rollout
    seeds = bench_seeds(opts)
    output = figure_path(opts, plan, root)
    dirs = {group: [job.run_dir for job in plan.jobs if job.group == group] for group in results}
    if opts.same_hparams:
        text = "\n\n".join([
            header,
            report.same_hparams_table(seeds, results["bellmax"], results["sb3"]),
            report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
            report.breakdown_table("SB3 time by phase (seconds):", seeds, results["sb3"], imports),
        ])
        figure = _plot(plot_runs, dirs["bellmax"] + dirs["sb3"], output, key="rollout/ep_return",
                       labels=["bellmax PPO"] * len(seeds) + ["SB3 PPO"] * len(seeds),
                       title="PPO CartPole-v1, identical rl-zoo3 hyperparameters (training return)")
    else:
        cpu = report.cpu_time_table(seeds, results["bellmax"], results["sb3_zoo"])
        text = "\n\n".join([
            header,
            report.cartpole_time_table(seeds, results["bellmax"], results["sb3_zoo"], results["sb3_stop"]),
            *([cpu] if cpu else []),
            report.cartpole_sample_table(seeds, results["bellmax"], results["sb3_stop"]),
            report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
            report.breakdown_table("SB3 (a) time by phase (seconds):", seeds, results["sb3_zoo"], imports),
        ])
        eval_every, stop_at_return, eval_episodes = preset_stop_rule("ppo", "CartPole-v1")
        figure = _plot(report.plot_seed_curves, [
            (f"deterministic eval return ({eval_episodes} episodes every {eval_every} steps, stop at "
             f"{report.fmt(stop_at_return, 0)})", "eval/return",
             [("bellmax PPO preset", dirs["bellmax"]), ("SB3 PPO rl-zoo3, same stop rule (b)", dirs["sb3_stop"])]),
            ("training return (last 100 episodes)", "rollout/ep_return",
             [("bellmax PPO preset", dirs["bellmax"]), ("SB3 PPO rl-zoo3, 100k steps (a)", dirs["sb3_zoo"])]),
        ], output, suptitle="PPO on CartPole-v1: bellmax vs Stable-Baselines3")
    return text, figure


def report_offpolicy(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                     header: str) -> tuple[str, Path | None]:
    """dqn-cartpole / sac-pendulum: time and steps to solve, gradient updates per second, the time
    breakdowns (SB3's from the reused file's import probe where reused), and the return curves."""
    assert imports is not None  # probed for every benchmark but rollout
    algo, env = OFF_POLICY_BENCHMARKS[opts.benchmark]
    seeds = bench_seeds(opts)
    stop = results.get("sb3_stop")
    budget = report.fmt_steps(results["sb3_zoo"][0].get("total_steps")) if results["sb3_zoo"] else "?"
    threshold = report.fmt(plan.stop_at_return, 0)
    parts = [
        header,
        report.cartpole_time_table(seeds, results["bellmax"], results["sb3_zoo"], stop, zoo_label=f"rl-zoo3 {budget}"),
    ]
    cpu = report.cpu_time_table(seeds, results["bellmax"], results["sb3_zoo"], zoo_label=f"rl-zoo3 {budget}")
    if cpu:
        parts.append(cpu)
    if stop:
        parts.append(report.cartpole_sample_table(seeds, results["bellmax"], stop, threshold=threshold))
    sb3_imports, reused_note = imports, ""
    if plan.reused_from is not None:
        sb3_imports = {**imports, **plan.reused_from["imports"]}
        reused_note = f"; runs and import probe reused from {plan.reused_from['machine'].get('date', '?')}"
    parts += [
        report.updates_table(seeds, results["bellmax"], results["sb3_zoo"], stop),
        report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
        report.breakdown_table(f"SB3 (a) time by phase (seconds{reused_note}):", seeds, results["sb3_zoo"],
                               sb3_imports),
    ]
    if stop:
        parts.append(report.breakdown_table(f"SB3 (b) time by phase (seconds{reused_note}):", seeds, stop,
                                            sb3_imports))
    dirs = {group: group_dirs(plan, group) for group in results}
    eval_every, _, eval_episodes = preset_stop_rule(algo, env)
    eval_groups = [(f"bellmax {algo.upper()} preset", dirs["bellmax"])]
    if stop:
        eval_groups.append((f"SB3 {algo.upper()} rl-zoo3, same stop rule (b)", dirs["sb3_stop"]))
    figure = _plot(report.plot_seed_curves, [
        (f"deterministic eval return ({eval_episodes} episodes every {eval_every} steps, stop at {threshold})",
         "eval/return", eval_groups),
        ("training return (last 100 episodes)", "rollout/ep_return",
         [(f"bellmax {algo.upper()} preset", dirs["bellmax"]),
          (f"SB3 {algo.upper()} rl-zoo3, {budget} steps (a)", dirs["sb3_zoo"])]),
    ], figure_path(opts, plan, root), suptitle=f"{algo.upper()} on {env}: bellmax vs Stable-Baselines3")
    return "\n\n".join(parts), figure


def report_mujoco(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                  header: str) -> tuple[str, Path | None]:
    """mujoco: final eval return and training steps/s (SAC, TD3: also updates per second), the time
    breakdowns, and the training return curves."""
    from bellmax.plotting import plot_runs

    assert imports is not None  # probed for every benchmark but rollout
    seeds = bench_seeds(opts)
    sb3_imports, sb3_label = imports, "SB3 time by phase (seconds):"
    if plan.reused_from is not None:
        sb3_imports = {**imports, **plan.reused_from["imports"]}
        sb3_label = (f"SB3 time by phase (seconds; runs and import probe reused from "
                     f"{plan.reused_from['machine'].get('date', '?')}):")
    text = "\n\n".join([
        header,
        report.mujoco_table(seeds, results["bellmax"], results["sb3"]),
        *([report.updates_table(seeds, results["bellmax"], results["sb3"], None, zoo_label="SB3")]
          if opts.algo in ("sac", "td3") else []),
        report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
        report.breakdown_table(sb3_label, seeds, results["sb3"], sb3_imports),
    ])
    dirs = group_dirs(plan, "bellmax") + group_dirs(plan, "sb3")
    labels = [f"bellmax {opts.algo} (preset)"] * len(seeds) + [f"SB3 {opts.algo} (rl-zoo3)"] * (len(dirs) - len(seeds))
    figure = _plot(plot_runs, dirs, figure_path(opts, plan, root), key="rollout/ep_return", labels=labels,
                   title=f"{opts.algo.upper()} on {opts.env}: training return, {opts.steps:,} steps")
    return text, figure


def report_rollout(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                   header: str) -> tuple[str, Path | None]:
    """rollout: the steps/s table alone (no figure)."""
    return "\n\n".join([header, report.rollout_table(results)]), None


REPORTS: dict[str, Callable[..., tuple[str, Path | None]]] = {
    "ppo-cartpole": report_cartpole, "mujoco": report_mujoco, "rollout": report_rollout,
    **{name: report_offpolicy for name in OFF_POLICY_BENCHMARKS},
}
