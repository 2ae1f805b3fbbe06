"""The raw cost of off-policy training per environment step, bellmax vs Stable-Baselines3, with
identical hyperparameters (the off-policy issue's "once with identical hyperparameters for the raw
per-step cost"): SAC and TD3 on HalfCheetah-v5, 256x256 ReLU networks, batch 256, one gradient
update per environment step (train_freq 1, as both libraries' MuJoCo presets), one torch thread.
With `--settings presets`, each library instead runs with its own tuned values for HalfCheetah
(bellmax's preset, rl-zoo3's entry for SB3: network sizes, learning rates, batch, noise), so the
per-update cost behind the fixed-budget runs' updates/s is measured side by side in one process.

Two measurements per library, each after a warm-up that fills the replay buffer with random-action
steps and runs a few updates:
- `loop`: the training loop itself, `learn()` continued for `--steps` more environment steps
  (acting, storing, sampling, one update each, the library's own bookkeeping and logging);
- `update`: `--steps` updates alone (SB3: `train(gradient_steps=N)`, which samples inside;
  bellmax: `replay.sample` + `gradient_step`), which leaves out SB3's per-call overhead of
  `train()`.
Measurements alternate between the libraries `--repeats` times, so drifting machine load hits
both alike; medians are reported.

    python benchmarks/offpolicy_update_cost.py --out docs/images/bench_update_cost.json
    python benchmarks/offpolicy_update_cost.py --settings presets --out docs/images/bench_update_cost_presets.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ENV = "HalfCheetah-v5"
HIDDEN = [256, 256]
BATCH = 256
WARMUP_STEPS = 2000
SETTINGS = {"identical": "identical hyperparameters (256x256 ReLU networks, lr 3e-4, batch 256)",
            "presets": "each library's tuned HalfCheetah values (bellmax's preset, rl-zoo3's entry for SB3)"}


def bellmax_side(algo: str, seed: int, presets: bool):
    from bellmax.algos import SAC, TD3

    cls = {"sac": SAC, "td3": TD3}[algo]
    measured = {"seed": seed, "buffer_size": 100_000, "learning_starts": WARMUP_STEPS, "total_steps": 10**9,
                "eval_every": 0, "eval_episodes": 0, "log_every": 1000}
    if presets:
        config = cls.config_class.from_preset(ENV).replace(**measured)
    else:
        extra = {"q_learning_rate": 3e-4} if algo == "sac" else {}  # SB3's single lr for both
        config = cls.config_class(env=ENV, hidden_sizes=tuple(HIDDEN), batch_size=BATCH, learning_rate=3e-4,
                                  **measured, **extra)
    agent = cls(config)
    agent.learn(total_steps=WARMUP_STEPS + 50)  # random actions fill the replay buffer, then 50 updates

    def loop(n: int) -> None:
        agent.learn(total_steps=agent.global_step + n)

    def update(n: int) -> None:
        for _ in range(n):
            agent.gradient_step(agent.replay.sample(config.batch_size, agent.rng))
    return loop, update


def sb3_side(algo: str, seed: int, presets: bool):
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3

    from bellmax.bench.sb3_runner import action_noise, model_kwargs
    from bellmax.bench.zoo import zoo_entry

    cls = {"sac": SAC, "td3": TD3}[algo]
    env = gym.make(ENV)
    if presets:
        entry, _ = zoo_entry(algo, ENV)
        kwargs = model_kwargs(entry) | {"action_noise": action_noise(entry, env.action_space.shape[0])}
    else:
        kwargs = {"learning_rate": 3e-4, "batch_size": BATCH, "policy_kwargs": {"net_arch": HIDDEN}}
    kwargs |= {"buffer_size": 100_000, "learning_starts": WARMUP_STEPS}
    model = cls("MlpPolicy", env, device="cpu", seed=seed, **kwargs)
    model.learn(WARMUP_STEPS + 50)

    def loop(n: int) -> None:
        model.learn(n, reset_num_timesteps=False)

    def update(n: int) -> None:
        model.train(gradient_steps=n, batch_size=model.batch_size)
    return loop, update


def measure(algo: str, steps: int, repeats: int, settings: str, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    presets = settings == "presets"
    sides = {"bellmax": bellmax_side(algo, seed, presets), "sb3": sb3_side(algo, seed, presets)}
    times: dict[str, list[float]] = {f"{lib}_{kind}": [] for lib in sides for kind in ("loop", "update")}
    for _ in range(repeats):
        for kind, index in (("loop", 0), ("update", 1)):
            for lib, functions in sides.items():  # alternating, so load drift hits both
                start = time.perf_counter()
                functions[index](steps)
                times[f"{lib}_{kind}"].append((time.perf_counter() - start) / steps)
    result = {"algo": algo, "env": ENV, "settings": settings, "steps": steps, "repeats": repeats}
    if not presets:
        result |= {"hidden": HIDDEN, "batch_size": BATCH}
    for key, samples in times.items():
        result[f"{key}_ms"] = [1e3 * t for t in samples]
        result[f"{key}_median_ms"] = 1e3 * statistics.median(samples)
    for kind in ("loop", "update"):
        result[f"ratio_{kind}"] = result[f"sb3_{kind}_median_ms"] / result[f"bellmax_{kind}_median_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="sac,td3")
    parser.add_argument("--steps", type=int, default=500, help="environment steps (or updates) per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating measurements per library")
    parser.add_argument("--settings", choices=tuple(SETTINGS), default="identical",
                        help="; ".join(f"{name}: {text}" for name, text in SETTINGS.items()))
    parser.add_argument("--out", default=None, help="write the results as JSON here (and .md next to it)")
    opts = parser.parse_args()
    results = [measure(algo, opts.steps, opts.repeats, opts.settings) for algo in opts.algos.split(",")]
    import stable_baselines3

    from bellmax.bench.harness import machine_info

    header = ("| algorithm | training loop, ms per env step + update: bellmax / SB3 | speed bellmax / SB3 "
              "| update alone, ms: bellmax / SB3 | speed bellmax / SB3 |\n|---|---|---|---|---|")
    rows = [f"| {r['algo'].upper()} | {r['bellmax_loop_median_ms']:.2f} / {r['sb3_loop_median_ms']:.2f} | "
            f"**{r['ratio_loop']:.2f}** | {r['bellmax_update_median_ms']:.2f} / {r['sb3_update_median_ms']:.2f} | "
            f"{r['ratio_update']:.2f} |" for r in results]
    machine = machine_info()
    text = "\n".join([f"Command: `python {' '.join(sys.argv)}`", "",
                      f"Machine: {machine['cpu_count']} CPU cores ({machine['cpu']}), torch {torch.__version__}, "
                      f"SB3 {stable_baselines3.__version__}, bellmax commit {machine.get('bellmax_commit')}; "
                      f"measured {machine['date']}; medians of {opts.repeats} alternating measurements of "
                      f"{opts.steps} steps; {SETTINGS[opts.settings]}.", "", header, *rows])
    print(text)
    if opts.out:
        out = Path(opts.out)
        out.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
