"""One line per training run from its metrics.jsonl, for the GPU-machine scripts' logs: steps and
frames (4 per step), steps/s over the iterations and "while learning" (iterations that made
gradient steps, which leaves out DQN's random-action warm-up), episodes, and the training return
(mean of the last 100 games) at about six points of the run.

    python benchmarks/atari_summary.py RUN.jsonl [RUN.jsonl ...]
"""

from __future__ import annotations

import json
import os
import sys


def summary(path: str) -> str:
    name = os.path.basename(path).removesuffix(".jsonl")
    with open(path) as f:
        rows = [r for r in map(json.loads, filter(str.strip, f)) if "time/iteration_seconds" in r]
    if not rows:
        return f"{name}: no metrics"
    seconds = sum(r["time/iteration_seconds"] for r in rows)
    picked = rows[:: max(len(rows) // 6, 1)]
    curve = [(r["step"], r.get("rollout/ep_return")) for r in picked + rows[-1:] * (picked[-1] is not rows[-1])]
    steps = [b["step"] - a["step"] for a, b in zip([{"step": 0}] + rows, rows)]
    # on-policy runs log no losses/gradient_steps: every iteration of theirs learns
    learning = [(n, r["time/iteration_seconds"]) for n, r in zip(steps, rows) if r.get("losses/gradient_steps", 1) > 0]
    while_learning = sum(n for n, _ in learning) / max(sum(t for _, t in learning), 1e-9)
    last = rows[-1]
    return (f"{name}: {last['step']:,} steps ({4 * last['step']:,} frames) in {seconds:.0f} s of iterations, "
            f"{last['step'] / seconds:,.0f} steps/s ({while_learning:,.0f} while learning); episodes "
            f"{last.get('rollout/episodes')}; training return (mean of the last 100 games) by step: "
            + ", ".join(f"{s:,}: {'-' if r is None else round(r, 1)}" for s, r in curve))


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(summary(path))
