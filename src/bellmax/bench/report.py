"""Tables (Markdown) and figures of benchmark results. Pure functions of the result dicts the
harness collects, so they can be tested without running anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def mean_of(runs: Sequence[dict], key: str) -> float | None:
    return mean([run.get(key) for run in runs])


def ratio_of_means(runs_a: Sequence[dict], runs_b: Sequence[dict], key: str) -> str:
    """mean(a[key]) / mean(b[key]), formatted bold for a table's mean row."""
    return f"**{fmt_ratio(ratio(mean_of(runs_a, key), mean_of(runs_b, key)))}**"


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def fmt_steps(steps: float | None) -> str:
    if steps is None:
        return "-"
    return f"{steps / 1000:.1f}k" if steps >= 1000 else f"{steps:.0f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _solved(run: dict[str, Any]) -> str:
    return fmt_steps(run.get("solved_at")) if run.get("solved_at") is not None else "not solved"


# ---------------------------------------------------------------------------------------------
# ppo-cartpole


def cartpole_time_table(seeds: Sequence[int], bellmax: Sequence[dict], zoo: Sequence[dict],
                        stop: Sequence[dict] | None, zoo_label: str = "rl-zoo3 100k") -> str:
    """Whole-process seconds, steps used and final eval return per seed; bellmax / SB3 ratios.
    Without `stop` (SB3 (b) not run) its columns are left out."""
    header = ["seed", "bellmax: s / steps / eval", f"SB3 (a) {zoo_label}: s / steps / eval"]
    header += ["SB3 (b) same stop rule: s / steps / eval"] if stop else []
    header += ["time bellmax / SB3 (a)"] + (["time bellmax / SB3 (b)"] if stop else [])

    def cell(run: dict) -> str:
        return f"{fmt(run['whole_seconds'])} / {fmt_steps(run['steps'])} / {fmt(run['eval_return'])}"

    rows = []
    for index, (seed, b, a) in enumerate(zip(seeds, bellmax, zoo)):
        s = stop[index] if stop else None
        rows.append([str(seed), cell(b), cell(a)] + ([cell(s)] if s else [])
                    + [fmt_ratio(ratio(b["whole_seconds"], a["whole_seconds"]))]
                    + ([fmt_ratio(ratio(b["whole_seconds"], s["whole_seconds"]))] if s else []))

    def mean_cell(runs: Sequence[dict]) -> str:
        return (f"**{fmt(mean([r['whole_seconds'] for r in runs]))}** / {fmt_steps(mean([r['steps'] for r in runs]))}"
                f" / {fmt(mean([r['eval_return'] for r in runs]))}")

    mb = mean([r["whole_seconds"] for r in bellmax])
    groups = [zoo, stop] if stop else [zoo]
    rows.append(["mean", mean_cell(bellmax), *[mean_cell(g) for g in groups],
                 *[f"**{fmt_ratio(ratio(mb, mean([r['whole_seconds'] for r in g])))}**" for g in groups]])
    return markdown_table(header, rows)


def cpu_time_table(seeds: Sequence[int], bellmax: Sequence[dict], zoo: Sequence[dict],
                   zoo_label: str = "rl-zoo3 100k") -> str | None:
    """Whole-process CPU seconds (user + system) per seed and their ratio, beside the wall-clock
    ratio: on a machine shared with other work, wall-clock grows with the others' load, CPU time far
    less, so a seed whose two ratios differ much was disturbed. None when a run has no CPU time
    (runs reused from a file written before it was measured)."""
    if not all(run.get("cpu_seconds") for run in [*bellmax, *zoo]):
        return None
    header = ["seed", "bellmax: CPU s", f"SB3 (a) {zoo_label}: CPU s", "CPU bellmax / SB3 (a)",
              "wall-clock bellmax / SB3 (a)"]
    rows = [[str(seed), fmt(b["cpu_seconds"]), fmt(a["cpu_seconds"]),
             fmt_ratio(ratio(b["cpu_seconds"], a["cpu_seconds"])),
             fmt_ratio(ratio(b["whole_seconds"], a["whole_seconds"]))] for seed, b, a in zip(seeds, bellmax, zoo)]
    rows.append(["mean", f"**{fmt(mean_of(bellmax, 'cpu_seconds'))}**", f"**{fmt(mean_of(zoo, 'cpu_seconds'))}**",
                 ratio_of_means(bellmax, zoo, "cpu_seconds"), ratio_of_means(bellmax, zoo, "whole_seconds")])
    return "Whole-process CPU time (user + system), which other processes' load changes far less than wall-clock:\n\n" \
        + markdown_table(header, rows)


def cartpole_sample_table(seeds: Sequence[int], bellmax: Sequence[dict], stop: Sequence[dict],
                          threshold: str = "475") -> str:
    """Steps until a periodic deterministic evaluation reached the threshold (e.g. 475)."""
    header = ["seed", f"bellmax: steps to eval >= {threshold}", f"SB3 (b): steps to eval >= {threshold}",
              "steps bellmax / SB3 (b)"]
    rows = [[str(seed), _solved(b), _solved(s), fmt_ratio(ratio(b.get("solved_at"), s.get("solved_at")))]
            for seed, b, s in zip(seeds, bellmax, stop)]
    mb, ms = mean([r.get("solved_at") for r in bellmax]), mean([r.get("solved_at") for r in stop])
    solved_b = sum(r.get("solved_at") is not None for r in bellmax)
    solved_s = sum(r.get("solved_at") is not None for r in stop)
    rows.append(["mean (solved runs)", f"{fmt_steps(mb)} ({solved_b}/{len(bellmax)} solved)",
                 f"{fmt_steps(ms)} ({solved_s}/{len(stop)} solved)", f"**{fmt_ratio(ratio(mb, ms))}**"])
    return markdown_table(header, rows)


def updates_table(seeds: Sequence[int], bellmax: Sequence[dict], zoo: Sequence[dict],
                  stop: Sequence[dict] | None = None, zoo_label: str = "SB3 (a)") -> str:
    """Gradient updates per run and per second of update time (bellmax: sum of
    losses/gradient_steps; SB3: train/n_updates), for off-policy runs."""
    groups = [("bellmax", bellmax), (zoo_label, zoo)] + ([("SB3 (b)", stop)] if stop else [])
    header = ["seed", *[f"{label}: updates / updates per s" for label, _ in groups],
              f"updates/s bellmax / {zoo_label}"]

    def cell(run: dict) -> str:
        return f"{fmt(run.get('gradient_steps'), 0)} / {fmt(run.get('updates_per_second'), 0)}"

    rows = [[str(seed), *[cell(runs[i]) for _, runs in groups],
             fmt_ratio(ratio(bellmax[i].get("updates_per_second"), zoo[i].get("updates_per_second")))]
            for i, seed in enumerate(seeds)]
    rows.append(["mean", *[f"{fmt(mean_of(runs, 'gradient_steps'), 0)} / "
                           f"**{fmt(mean_of(runs, 'updates_per_second'), 0)}**" for _, runs in groups],
                 ratio_of_means(bellmax, zoo, "updates_per_second")])
    return "Gradient updates (one minibatch step each) and updates per second of update time:\n\n" + markdown_table(
        header, rows)


def breakdown_table(label: str, seeds: Sequence[int], runs: Sequence[dict], imports: dict[str, float]) -> str:
    """Where the whole-process time of each run went, in seconds.

    bellmax: interpreter + `import bellmax.algos.ALGO` (timed alone as a process), the rest of the
    train command's imports (tyro, TensorBoard writer), rollout, update and evaluation (from the
    run's metrics) and the rest (env and network construction, logging, checkpoints, shutdown).
    SB3: interpreter + `import stable_baselines3` (timed alone), set-up (env and model
    construction, timed inside the runner), rollout, update, evaluation, and the rest.
    """
    is_bellmax = bool(runs) and runs[0].get("library") == "bellmax"
    second = "other imports (tyro, TensorBoard)" if is_bellmax else "set-up (envs, model)"
    header = ["seed", "whole", "interpreter + imports", second, "rollout", "update", "evaluation", "rest"]
    rows = []
    columns: list[list[float]] = []
    for seed, run in zip(seeds, runs):
        if is_bellmax:
            base = imports.get("import_algo", 0.0)
            other = max(imports.get("import_train", 0.0) - base, 0.0)
        else:
            base, other = imports.get("import_sb3", 0.0), run.get("setup_seconds", 0.0)
        parts = [run["whole_seconds"], base, other, run["rollout_seconds"], run["update_seconds"], run["eval_seconds"]]
        parts.append(parts[0] - sum(parts[1:]))
        columns.append(parts)
        rows.append([str(seed), *[fmt(p, 2) for p in parts]])
    means = [mean(c) or 0.0 for c in zip(*columns)]
    rows.append(["mean", *[f"{fmt(m, 2)} ({100 * m / means[0]:.0f}%)" if i and means[0] else fmt(m, 2)
                           for i, m in enumerate(means)]])
    return f"{label}\n\n" + markdown_table(header, rows)


def same_hparams_table(seeds: Sequence[int], bellmax: Sequence[dict], sb3: Sequence[dict]) -> str:
    header = ["seed", "bellmax: whole s / train steps/s / eval", "SB3: whole s / train steps/s / eval",
              "whole time bellmax / SB3", "steps/s bellmax / SB3"]

    def cell(run: dict) -> str:
        return f"{fmt(run['whole_seconds'])} / {fmt(run['train_sps'], 0)} / {fmt(run['eval_return'])}"

    rows = [[str(seed), cell(b), cell(s), fmt_ratio(ratio(b["whole_seconds"], s["whole_seconds"])),
             fmt_ratio(ratio(b["train_sps"], s["train_sps"]))] for seed, b, s in zip(seeds, bellmax, sb3)]

    def mean_cell(runs: Sequence[dict]) -> str:
        return (f"**{fmt(mean_of(runs, 'whole_seconds'))}** / **{fmt(mean_of(runs, 'train_sps'), 0)}**"
                f" / {fmt(mean_of(runs, 'eval_return'))}")

    rows.append(["mean", mean_cell(bellmax), mean_cell(sb3), ratio_of_means(bellmax, sb3, "whole_seconds"),
                 ratio_of_means(bellmax, sb3, "train_sps")])
    return markdown_table(header, rows)


# ---------------------------------------------------------------------------------------------
# mujoco and rollout


def mujoco_table(seeds: Sequence[int], bellmax: Sequence[dict], sb3: Sequence[dict]) -> str:
    header = ["seed", "bellmax eval return", "SB3 eval return", "bellmax train steps/s", "SB3 train steps/s",
              "steps/s bellmax / SB3", "bellmax whole s", "SB3 whole s"]
    rows = [[str(seed), fmt(b["eval_return"]), fmt(s["eval_return"]), fmt(b["train_sps"], 0), fmt(s["train_sps"], 0),
             fmt_ratio(ratio(b["train_sps"], s["train_sps"])), fmt(b["whole_seconds"]), fmt(s["whole_seconds"])]
            for seed, b, s in zip(seeds, bellmax, sb3)]

    def m(runs: Sequence[dict], key: str, digits: int = 1) -> str:
        return fmt(mean_of(runs, key), digits)

    rows.append(["mean", f"**{m(bellmax, 'eval_return')}**", f"**{m(sb3, 'eval_return')}**",
                 m(bellmax, "train_sps", 0), m(sb3, "train_sps", 0), ratio_of_means(bellmax, sb3, "train_sps"),
                 m(bellmax, "whole_seconds"), m(sb3, "whole_seconds")])
    return markdown_table(header, rows)


ROLLOUT_LABELS = {
    "bellmax": "bellmax `collect_rollout` + GAE (PPO preset)",
    "sb3-zoo": "SB3 `collect_rollouts` (rl-zoo3 settings)",
    "sb3-matched": "SB3 `collect_rollouts` (bellmax's shape)",
    "env-gymnasium": "env alone: Gymnasium vector env (bellmax's)",
    "env-sb3": "env alone: SB3 DummyVecEnv + Monitor (+ VecNormalize)",
}


def rollout_table(results: dict[str, list[dict]]) -> str:
    """Median steps/s per mode over repeats, and each mode relative to bellmax's."""
    header = ["rollout of", "envs x steps, hidden", "steps/s per repeat", "median steps/s", "relative to bellmax"]
    medians = {mode: sorted(r["sps"] for r in runs)[len(runs) // 2] for mode, runs in results.items() if runs}
    rows = []
    for mode, runs in results.items():
        if not runs:
            continue
        first = runs[0]
        shape = f"{first['num_envs']} x {first.get('n_steps', '-')}"
        if first.get("hidden_sizes"):
            shape += ", " + "x".join(map(str, first["hidden_sizes"]))
        rows.append([ROLLOUT_LABELS.get(mode, mode), shape, ", ".join(fmt(r["sps"], 0) for r in runs),
                     f"**{fmt(medians[mode], 0)}**", fmt_ratio(ratio(medians[mode], medians.get("bellmax")))])
        if mode == "bellmax" and all("collect_sps" in r for r in runs):
            collect = sorted(r["collect_sps"] for r in runs)[len(runs) // 2]
            rows.append(["bellmax `collect_rollout` alone (without GAE)", shape,
                         ", ".join(fmt(r["collect_sps"], 0) for r in runs), fmt(collect, 0),
                         fmt_ratio(ratio(collect, medians["bellmax"]))])
    return markdown_table(header, rows)


# ---------------------------------------------------------------------------------------------
# figures


def plot_seed_curves(panels: Sequence[tuple[str, str, Sequence[tuple[str, Sequence[Path]]]]], output: Path,
                     suptitle: str | None = None) -> Path:
    """One subplot per (title, metric key, [(label, run dirs)]): every run drawn as its own line
    (runs that stop early keep their whole curve), one colour per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bellmax.plotting import run_curve, save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), dpi=120, squeeze=False)
    for ax, (title, key, groups) in zip(axes[0], panels):
        for index, (label, run_dirs) in enumerate(groups):
            color = f"C{index}"
            for i, run_dir in enumerate(run_dirs):
                steps, values = run_curve(Path(run_dir), key)
                if len(steps):
                    ax.plot(steps, values, color=color, alpha=0.8, linewidth=1.2,
                            marker="o" if len(steps) < 30 else None, markersize=3,
                            label=f"{label} ({len(run_dirs)} seeds)" if i == 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return save_figure(fig, output)
