"""Rollout throughput with the environments in this process and in K Ray workers (`--num-workers`),
and the learner's share of each iteration: PPO's HalfCheetah-v5 preset (8 environments) by default.

    python benchmarks/ray_rollouts.py [--env HalfCheetah-v5] [--workers 0,1,2] [--iterations 4]
                                      [--out docs/images/ray_rollouts.json]

Each setting trains a few iterations after one warm-up iteration; the figures are medians over the
timed iterations: environment steps per second of the rollout phase, and the share of an iteration
the update (the learner) takes. Workers run on this machine's Ray runtime, each on a CPU of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def measure(env: str, workers: int, iterations: int) -> dict[str, float]:
    from bellmax.algos import PPO, PPOConfig

    config = PPOConfig.from_preset(env, num_workers=workers, eval_episodes=0, seed=0)
    batch = config.n_steps * config.num_envs
    config = config.replace(total_steps=batch * (iterations + 1))
    agent = PPO(config)
    rollout, whole = [], []
    try:
        for index in range(iterations + 1):
            metrics = agent.iterate()
            if index:  # the first iteration warms up (imports, allocation, Ray's first calls)
                rollout.append(metrics["time/rollout_seconds"])
                whole.append(metrics["time/iteration_seconds"])
    finally:
        agent.env.close()
    r, w = statistics.median(rollout), statistics.median(whole)
    return {"workers": workers, "num_envs": config.num_envs, "n_steps": config.n_steps,
            "rollout_steps_per_s": batch / r, "rollout_seconds": r, "iteration_seconds": w,
            "learner_share": (w - r) / w}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0: in this process)")
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per setting (default 4)")
    parser.add_argument("--out", default=None, help="also write the results as JSON")
    opts = parser.parse_args()
    results = []
    for workers in (int(w) for w in opts.workers.split(",")):
        result = measure(opts.env, workers, opts.iterations)
        results.append(result)
        print(f"{opts.env}, {result['num_envs']} envs x {result['n_steps']} steps, "
              f"{'in this process' if workers == 0 else f'{workers} Ray workers'}: rollout "
              f"{result['rollout_steps_per_s']:,.0f} steps/s, iteration {result['iteration_seconds']:.2f} s, "
              f"learner's share {result['learner_share']:.0%}")
    if opts.out:
        Path(opts.out).write_text(json.dumps({"env": opts.env, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
