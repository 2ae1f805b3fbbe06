"""What Ray costs and what a sweep saves on this machine: Ray's start-up, and a sweep of PPO on
CartPole-v1 (3 seeds x 2 learning rates) through `bellmax sweep` against the same six trainings run
one after another with `bellmax train`, each whole process timed from outside.

    python benchmarks/ray_sweep.py [--total-steps 50000] [--keep-stop-rule] [--out docs/images/ray_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEEDS = (0, 1, 2)
RATES = ("3e-4", "1e-3")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ray_start_seconds() -> float:
    code = ("import time, ray; t = time.perf_counter(); ray.init(include_dashboard=False, log_to_driver=False); "
            "print(time.perf_counter() - t); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--keep-stop-rule", action="store_true",
                        help="keep the CartPole preset's stop at eval return 475 (default: train the whole budget)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    opts = parser.parse_args()
    bellmax = [sys.executable, "-m", "bellmax.cli"]
    fixed = ["--env", "CartPole-v1", "--total-steps", str(opts.total_steps), "--no-anneal-lr"]
    if not opts.keep_stop_rule:
        fixed += ["--stop-at-return", "None"]
    with tempfile.TemporaryDirectory() as tmp:
        start_up = [ray_start_seconds() for _ in range(3)]
        one_after_another = 0.0
        training = []
        for rate in RATES:
            for seed in SEEDS:
                run_dir = Path(tmp, f"alone-{rate}-{seed}")
                seconds = timed([*bellmax, "train", "ppo", *fixed, "--seed", str(seed), "--learning-rate", rate,
                                 "--run-dir", str(run_dir), "--no-progress"])
                one_after_another += seconds
                training.append(seconds)
        sweep_dir = Path(tmp, "sweep")
        sweep = timed([*bellmax, "sweep", "ppo", *fixed, "--seeds", *map(str, SEEDS), "--grid",
                       f"learning_rate={','.join(RATES)}", "--run-dir", str(sweep_dir)])
    cores = os.cpu_count()
    result = {
        "machine_cores": cores, "total_steps": opts.total_steps, "stop_rule": opts.keep_stop_rule,
        "ray_start_seconds": start_up,
        "six_trainings_one_after_another_seconds": one_after_another,
        "each_training_seconds": training,
        "sweep_seconds": sweep,
        "speed_up": one_after_another / sweep,
        # what the sweep costs beyond its trainings, spread over as many at once as there are cores
        "overhead_seconds": sweep - one_after_another / min(cores or 1, len(training)),
    }
    print(f"Ray start-up: {min(start_up):.1f}-{max(start_up):.1f} s (3 starts)")
    print(f"six PPO CartPole-v1 trainings of {opts.total_steps:,} steps one after another: {one_after_another:.1f} s "
          f"({min(training):.1f}-{max(training):.1f} s each, whole processes)")
    print(f"the same six as one bellmax sweep on {cores} cores: {sweep:.1f} s: {result['speed_up']:.2f}x; "
          f"beyond the trainings spread over the cores: {result['overhead_seconds']:.1f} s")
    if opts.out:
        Path(opts.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
