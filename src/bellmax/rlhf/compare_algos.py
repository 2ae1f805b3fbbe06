"""PPO, RLOO, GRPO, REINFORCE++, DPO and rejection sampling on the same task, judged by one gold labeler, over seeds.

For each seed S, the whole pipeline (`run_pipeline`, with `also` = rloo, grpo, reinforce_pp, dpo, rs) in
RUN_DIR/seed<S>: the same data, SFT and reward model for every method of that seed. Then, for each
method, over the seeds: the mean and a 95% confidence interval (Student's t, mean +- t s / sqrt(n))
of its gold win rate against SFT, its KL to SFT (nats per response), its response length and the
wall-clock of its stage; first, where the preset's evaluation judges it (`sharpened_sft`), SFT itself
sampled at a lower temperature: what sharpening alone buys. Written to RUN_DIR/report.json,
RUN_DIR/algos.md (the table) and RUN_DIR/algos.png (the figure).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bellmax.core.run import atomic_write_text
from bellmax.errors import BellmaxError
from bellmax.rlhf import data
from bellmax.rlhf.pipeline import ALSO, PipelineConfig, run_pipeline

# label -> (its name in the evaluation, its stage directory)
METHODS: dict[str, tuple[str, str]] = {"PPO": ("rl", "ppo"), "RLOO": ("rloo", "rloo"), "GRPO": ("grpo", "grpo"),
                                       "REINFORCE++": ("reinforce_pp", "reinforce_pp"), "DPO": ("dpo", "dpo"),
                                       "RS": ("rs", "rs")}
MEASURES: dict[str, str] = {"win_rate": "gold win rate vs SFT", "kl_to_sft": "KL to SFT (nats)",
                            "response_length": "response length (tokens)", "seconds": "wall-clock of the stage (s)"}
# t_{0.975} of Student's t with df degrees of freedom; beyond 30, the normal's 1.96 (at most 2% narrow)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of its 95% confidence interval); no interval from a single value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def seed_measures(seed_dir: Path) -> dict[str, dict[str, float]]:
    """Each method's measures in one seed's pipeline directory: label -> measure -> value; first, where the
    evaluation judged it, SFT sampled at a lower temperature (no training: 0 seconds)."""
    summary = json.loads((seed_dir / "report.json").read_text())
    evaluation = json.loads((seed_dir / "evaluate" / "report.json").read_text())
    policies = evaluation["policies"]

    def measures(name: str, seconds: float) -> dict[str, float]:
        return {"win_rate": summary["win_rates"][f"{name}_vs_sft"], "kl_to_sft": policies[name]["kl_to_sft"],
                "response_length": policies[name]["response_length"], "seconds": seconds}

    rows = {}
    if evaluation.get("sharpened_sft_temperature") is not None:
        rows[f"SFT, T={evaluation['sharpened_sft_temperature']:g}"] = measures("sft_sharpened", 0.0)
    rows.update({label: measures(name, summary["stage_seconds"][stage]) for label, (name, stage) in METHODS.items()})
    return rows


def summarize(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> measure -> {"mean", "ci" (half-width or None), "values" (one per seed)}, for the rows every
    seed has."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for label in [label for label in per_seed[0] if all(label in seed for seed in per_seed)]:
        result[label] = {}
        for measure in MEASURES:
            values = [seed[label][measure] for seed in per_seed]
            mean, half_width = mean_interval(values)
            result[label][measure] = {"mean": mean, "ci": half_width, "values": values}
    return result


def table(summary: dict[str, dict[str, dict[str, Any]]], seeds: int) -> str:
    """The summary as a Markdown table: mean +- half-width of the 95% interval, per method."""
    def cell(entry: dict[str, Any], digits: int) -> str:
        mean = f"{entry['mean']:.{digits}f}"
        return mean if entry["ci"] is None else f"{mean} +- {entry['ci']:.{digits}f}"

    digits = {"win_rate": 3, "kl_to_sft": 2, "response_length": 2, "seconds": 1}
    lines = [f"| method ({seeds} seed{'s' if seeds > 1 else ''}; mean +- 95% CI) | "
             + " | ".join(MEASURES.values()) + " |", "|---" * (len(MEASURES) + 1) + "|"]
    for label, measures in summary.items():
        lines.append(f"| {label} | " + " | ".join(cell(measures[m], digits[m]) for m in MEASURES) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict[str, dict[str, Any]]], output: Path) -> Path:
    """One panel per measure: each method's mean with its 95% interval, and each seed's value as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bellmax.plotting import save_figure

    labels = list(summary)
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 3.6))
    for ax, (measure, title) in zip(axes, MEASURES.items()):
        means = [summary[label][measure]["mean"] for label in labels]
        errors = [summary[label][measure]["ci"] or 0.0 for label in labels]
        ax.bar(labels, means, yerr=errors, capsize=4, color="#4c72b0", alpha=0.8)
        for i, label in enumerate(labels):
            values = summary[label][measure]["values"]
            ax.plot([i] * len(values), values, "o", color="black", markersize=3)
        if measure == "win_rate":
            ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")  # each label ends under its bar
    fig.suptitle("RLHF estimators on the same task, judged by the gold labeler (95% CI over seeds)")
    return save_figure(fig, output)


def run_compare_algos(config: PipelineConfig, seeds: list[int], run_dir: Path,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """The pipeline with every method for each seed, then the summary over seeds."""
    if not seeds:
        raise BellmaxError("compare-algos needs at least one seed")
    run_dir = Path(run_dir)
    started = time.perf_counter()
    per_seed = []
    for seed in seeds:
        seed_config = dataclasses.replace(config, seed=seed, also=ALSO)
        log(f"compare-algos: seed {seed} -> {run_dir / f'seed{seed}'}")
        run_pipeline(seed_config, run_dir / f"seed{seed}", log)
        per_seed.append(seed_measures(run_dir / f"seed{seed}"))
    summary = summarize(per_seed)
    markdown = table(summary, len(seeds))
    atomic_write_text(run_dir / "algos.md", markdown)
    figure = plot(summary, run_dir / "algos.png")
    report = {"stage": "compare-algos", "seeds": seeds, "methods": summary, "table": str(run_dir / "algos.md"),
              "figure": str(figure), "seconds": time.perf_counter() - started}
    data.write_report(run_dir, report)
    return report
