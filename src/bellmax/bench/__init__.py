"""`bellmax bench`: bellmax against Stable-Baselines3, side by side, each run its own process.

    bellmax bench ppo-cartpole [--seeds 3]                 # preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench ppo-cartpole --same-hparams [--seeds 3]  # identical hyperparameters, fixed 100k steps
    bellmax bench dqn-cartpole [--seeds 3]                 # DQN preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench sac-pendulum [--seeds 3]                 # SAC preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench mujoco --algo ppo --env HalfCheetah-v5 [--steps 200000] [--seeds 3]
    bellmax bench mujoco ... --reuse-sb3 docs/images/bench_mujoco_ppo_HalfCheetah-v5.json  # re-run bellmax only
    bellmax bench rollout --env HalfCheetah-v5 [--steps 50000] [--repeats 3]

Runs happen one after the other on this machine (never in parallel: they would compete for the
cores; `--jobs N` runs N at a time where that many cores are idle, and the report says so),
alternating libraries seed by seed so that drifting load hits both alike. Every command prints
Markdown tables on stdout; `--out-dir DIR` also writes DIR/bench_NAME.{json,md,png};
`--keep-runs DIR` keeps the run directories (default: a temporary directory, named on stderr);
`--dry-run` prints the commands without running them.

Needs the `bench` extra (stable-baselines3, sb3-contrib); only this package imports them, and
only inside the runner processes; `bellmax bench --help` imports none of them, nor torch or numpy.

Who does what (`main` parses, plans, executes, reports):
- cli: `main`;  parser: the command line;  plans: the processes each benchmark runs (Job, Plan,
  reuse of earlier SB3 runs, the presets' stop rules);  execute: running a plan (one process at a
  time or a pool of `--jobs`, import-cost probes, machine info);  writeup: each benchmark's report,
  printed and written to --out-dir;
- harness: starting one process, timing it and reading back its results, and the commands;
  report: tables and figures (pure functions of the results);  zoo: rl-zoo3's hyperparameters;
  sb3_runner, rollout_runner: the runner processes (`python -m bellmax.bench.sb3_runner ...`).

This package vs `benchmarks/`: this package is the side-by-side comparisons against
Stable-Baselines3 shipped as `bellmax bench` (plans, runners, reports), the same on any machine
with the `bench` extra. `benchmarks/` holds standalone scripts for longer or machine-specific
measurements (the GPU machine's scripts, DQN on Pong, off-policy update cost, VPG weightings,
CNN memory layout, RLHF against TRL), whose figures go into docs/; benchmarks/README.md lists them.
"""

from bellmax.bench.cli import main

__all__ = ["main"]
