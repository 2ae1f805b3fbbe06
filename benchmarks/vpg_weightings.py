"""Benchmark (not a test): every policy-gradient weighting of the lecture on CartPole-v1.

Trains VPG with each weighting Psi_t (total return, reward-to-go, reward-to-go minus baseline,
Q estimate, advantage, TD residual, GAE) over several seeds with otherwise identical settings
(the CartPole preset), plots mean and spread of the training return in one figure and prints a
table: final deterministic evaluation return and steps until the training return first reaches
195. Run with `make bench` or:

    python benchmarks/vpg_weightings.py [--seeds 3] [--total-steps 100000] [--out docs/images/vpg_weightings.png]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from bellmax.algos import VPG, VPGConfig
from bellmax.core.run import Run, read_metrics
from bellmax.plotting import plot_runs

WEIGHTINGS = ["total_return", "reward_to_go", "reward_to_go_baseline", "q_estimate", "advantage",
              "td_residual", "gae"]


def first_step_reaching(run_dir: Path, threshold: float) -> int | None:
    for row in read_metrics(run_dir):
        if (row.get("rollout/ep_return") or 0) >= threshold:
            return row["step"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--out", default="docs/images/vpg_weightings.png")
    parser.add_argument("--runs", default=None, help="keep run directories here (default: a temporary dir)")
    args = parser.parse_args()

    base = VPGConfig.from_preset("CartPole-v1").replace(
        total_steps=args.total_steps, eval_episodes=20)
    root = Path(args.runs or tempfile.mkdtemp(prefix="bellmax-vpg-weightings-"))
    results, run_dirs, labels = {}, [], []
    for weighting in WEIGHTINGS:
        finals, reach, seconds = [], [], []
        for seed in range(args.seeds):
            config = base.replace(weighting=weighting, seed=seed)
            run_dir = root / f"{weighting}-s{seed}"
            start = time.perf_counter()
            agent = VPG(config)
            agent.learn(run=Run(run_dir, "vpg", config.to_dict(), tensorboard=False))
            seconds.append(time.perf_counter() - start)
            finals.append(float(agent.last_eval.mean()))
            reach.append(first_step_reaching(run_dir, 195.0))
            run_dirs.append(run_dir)
            labels.append(weighting)
        results[weighting] = {"eval_return": finals, "steps_to_195": reach, "seconds": seconds}
        reached = [r for r in reach if r is not None]
        print(f"{weighting:24s} eval return {np.mean(finals):6.1f} +- {np.std(finals):5.1f}   "
              f"steps to 195: {np.median(reached) if reached else float('nan'):>8}  "
              f"({len(reached)}/{args.seeds} seeds)   {np.mean(seconds):.1f} s/run", flush=True)

    plot_runs(run_dirs, Path(args.out), key="rollout/ep_return", labels=labels,
              title=f"VPG weightings on CartPole-v1 ({args.seeds} seeds, mean +-1 std)")
    summary = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "seeds": args.seeds,
               "total_steps": args.total_steps, "results": results}
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')} (runs in {root})")


if __name__ == "__main__":
    main()
