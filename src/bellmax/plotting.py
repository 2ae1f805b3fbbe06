"""Learning curves from run directories: one colour per (algorithm, env, label), mean over seeds
with a shaded band of one standard deviation (and the min-max range, lighter). By default the
training return (solid) and the evaluation return (dashed, points) side by side."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from bellmax.core.run import read_metrics, read_run_config
from bellmax.errors import BellmaxError


def run_curve(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` in one run, skipping rows where it is missing."""
    rows = [r for r in read_metrics(run_dir) if r.get(key) is not None]
    return np.array([r["step"] for r in rows], dtype=float), np.array([r[key] for r in rows], dtype=float)


def aggregate(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put curves on common steps: (steps, values[seed, step]). Runs logged at the same steps (the
    usual case: same config, other seeds) keep their points exactly; otherwise every logged step of
    any run inside the range all runs cover is kept and the others are interpolated there, so no
    point (an evaluation's peak) is smoothed away."""
    if all(np.array_equal(curves[0][0], steps) for steps, _ in curves):
        return curves[0][0], np.stack([values for _, values in curves])
    start, end = max(steps[0] for steps, _ in curves), min(steps[-1] for steps, _ in curves)
    union = np.unique(np.concatenate([steps for steps, _ in curves]))
    grid = union[(union >= start) & (union <= end)] if end >= start else np.array([end])
    return grid, np.stack([np.interp(grid, steps, values) for steps, values in curves])


def group_label(config: dict) -> str:
    cfg = config.get("config", {})
    label = f"{config.get('algo', '?')} {cfg.get('env', '?')}"
    if "weighting" in cfg:
        label += f" ({cfg['weighting']})"
    return label


# what `bellmax plot` draws by default: the training return and, where the runs have one, the
# evaluation return, in the same colour (solid: training, dashed with points: evaluation)
DEFAULT_KEYS = ("rollout/ep_return", "eval/return")
KEY_LABELS = {"rollout/ep_return": "train return (stochastic policy)",
              "eval/return": "eval return ({} policy)"}  # the runs' eval_deterministic fills in the kind


def plot_runs(run_dirs: list[Path], output: Path, key: str | tuple[str, ...] = DEFAULT_KEYS,
              title: str | None = None, labels: list[str] | None = None) -> Path:
    """Learning curves of `run_dirs`, one colour per group (algorithm and env, or `labels`), mean
    over seeds with bands. Of several keys, the first must be in every run; later ones (the
    evaluation return) are drawn where runs have them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (key,) if isinstance(key, str) else tuple(key)
    groups: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    eval_kinds: dict[str, set[str]] = defaultdict(set)
    for i, run_dir in enumerate(run_dirs):
        config = read_run_config(run_dir)
        label = labels[i] if labels else group_label(config)
        sampled = config.get("config", {}).get("eval_deterministic", True) is False
        eval_kinds[label].add("sampled" if sampled else "deterministic")
        for k in keys:
            steps, values = run_curve(run_dir, k)
            if len(steps) == 0 and k == keys[0]:
                raise BellmaxError(f"{run_dir} has no values of {k!r} yet (see its metrics.csv for the keys)")
            if len(steps):
                groups[label][k].append((steps, values))

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, by_key in groups.items():
        color = None
        for k, curves in by_key.items():
            grid, values = aggregate(curves)
            mean, std = values.mean(0), values.std(0)
            marker = "o" if len(grid) <= 40 else None  # sparse points (evaluations) are points, not a curve
            seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
            kind = " or ".join(sorted(eval_kinds[label]))
            name = (f"{label}, {KEY_LABELS.get(k, k).format(kind)} ({seeds})" if len(keys) > 1
                    else f"{label} ({seeds})")
            line, = ax.plot(grid, mean, marker=marker, markersize=3, color=color, label=name,
                            linestyle="--" if k != keys[0] else "-")
            color = line.get_color()
            if len(curves) > 1:
                ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.25, linewidth=0)
                ax.fill_between(grid, values.min(0), values.max(0), color=color, alpha=0.08, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return" if keys == DEFAULT_KEYS else ", ".join(keys))
    ax.set_title(title or "learning curves (mean, +-1 std, min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, output)


def save_figure(fig, output: Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    output = Path(output)
    formats = fig.canvas.get_supported_filetypes()
    kind = output.suffix.lstrip(".").lower()
    try:
        if kind not in formats:
            raise BellmaxError(f"cannot write a figure as {output.name!r}: give a file ending in one of "
                               f".{', .'.join(sorted(formats))} (e.g. curves.png)")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(output)
        except OSError as exc:
            raise BellmaxError(f"cannot write {output}: {exc.strerror or exc}; pick a path you can write") from None
    finally:
        plt.close(fig)
    return output
