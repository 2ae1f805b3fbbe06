"""The raw cost of one off-policy gradient update, bellmax vs Stable-Baselines3, with identical
hyperparameters (the off-policy issue's "once with identical hyperparameters for the raw per-step
cost"): SAC and TD3 on HalfCheetah-v5 observations, 256x256 ReLU networks, batch 256, one torch
thread each, replay sampling included (SB3's `train()` samples inside; bellmax's loop calls
`replay.sample` then `gradient_step`).

Each library first fills its replay buffer with random-action steps, then times `--updates`
updates; the measurement alternates between the libraries `--repeats` times so drifting machine
load hits both alike, and the median per library is reported.

    python benchmarks/offpolicy_update_cost.py --out docs/images/bench_update_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ENV = "HalfCheetah-v5"
HIDDEN = [256, 256]
BATCH = 256
WARMUP_STEPS = 2000


def bellmax_updater(algo: str, seed: int):
    from bellmax.algos import SAC, TD3

    cls = {"sac": SAC, "td3": TD3}[algo]
    extra = {"q_learning_rate": 3e-4} if algo == "sac" else {}  # SB3's single lr for both
    agent = cls(cls.config_class(env=ENV, seed=seed, hidden_sizes=tuple(HIDDEN), batch_size=BATCH,
                                 learning_rate=3e-4, buffer_size=10_000, learning_starts=WARMUP_STEPS,
                                 total_steps=WARMUP_STEPS, eval_every=0, eval_episodes=0, **extra))
    agent.learn(total_steps=WARMUP_STEPS)  # random actions only: fills the replay buffer

    def update(n: int) -> None:
        for _ in range(n):
            agent.gradient_step(agent.replay.sample(BATCH, agent.rng))
    return update


def sb3_updater(algo: str, seed: int):
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3

    cls = {"sac": SAC, "td3": TD3}[algo]
    model = cls("MlpPolicy", gym.make(ENV), learning_rate=3e-4, buffer_size=10_000, learning_starts=WARMUP_STEPS,
                batch_size=BATCH, policy_kwargs={"net_arch": HIDDEN}, device="cpu", seed=seed)
    model.learn(WARMUP_STEPS + 1)  # random actions, then one update

    def update(n: int) -> None:
        model.train(gradient_steps=n, batch_size=BATCH)
    return update


def measure(algo: str, updates: int, repeats: int, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    makers = {"bellmax": bellmax_updater, "sb3": sb3_updater}
    updaters = {lib: make(algo, seed) for lib, make in makers.items()}
    for update in updaters.values():
        update(20)  # warm-up
    times: dict[str, list[float]] = {lib: [] for lib in updaters}
    for _ in range(repeats):
        for lib, update in updaters.items():  # alternating, so load drift hits both
            start = time.perf_counter()
            update(updates)
            times[lib].append((time.perf_counter() - start) / updates)
    result = {"algo": algo, "env": ENV, "hidden": HIDDEN, "batch_size": BATCH, "updates": updates,
              "repeats": repeats}
    for lib, samples in times.items():
        result[f"{lib}_ms"] = [1e3 * s for s in samples]
        result[f"{lib}_median_ms"] = 1e3 * statistics.median(samples)
    result["ratio_updates_per_s"] = result["sb3_median_ms"] / result["bellmax_median_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="sac,td3")
    parser.add_argument("--updates", type=int, default=300, help="updates per timed measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating measurements per library")
    parser.add_argument("--out", default=None, help="write the results as JSON here (and .md next to it)")
    opts = parser.parse_args()
    results = [measure(algo, opts.updates, opts.repeats) for algo in opts.algos.split(",")]
    import stable_baselines3

    from bellmax.bench.harness import machine_info

    header = ("| algorithm | bellmax ms per update (median) | SB3 ms per update (median) | updates/s bellmax / SB3 |\n"
              "|---|---|---|---|")
    rows = [f"| {r['algo'].upper()} | {r['bellmax_median_ms']:.2f} | {r['sb3_median_ms']:.2f} | "
            f"**{r['ratio_updates_per_s']:.2f}** |" for r in results]
    machine = machine_info()
    text = "\n".join([f"Command: `python {' '.join(sys.argv)}`", "",
                      f"Machine: {machine['cpu_count']} CPU cores ({machine['cpu']}), torch {torch.__version__}, "
                      f"SB3 {stable_baselines3.__version__}, bellmax commit {machine.get('bellmax_commit')}; "
                      f"measured {machine['date']}.", "", header, *rows])
    print(text)
    if opts.out:
        out = Path(opts.out)
        out.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
