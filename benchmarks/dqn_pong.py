"""DQN on Pong: environment frames per second of training and replay-buffer memory, bellmax
against Stable-Baselines3, each through its own standard Atari path:

- bellmax: `bellmax train dqn --env ALE/Pong-v5` (ale-py's AtariVectorEnv: frame skip 4 with
  max-pooling, 84x84 grayscale, stack 4, all in C++; episodic life and reward clipping on the
  learning side), replay `FrameStackReplayBuffer` (every frame stored once, uint8);
- SB3: `DQN("CnnPolicy")` on `make_atari_env` + `VecFrameStack(4)` (AtariWrapper in Python with
  OpenCV) with rl-zoo3's Atari values, replay `ReplayBuffer` storing (s, s') stacks, or s only with
  `optimize_memory_usage=True`.

Both train with the same settings for the timed run: one env, batch 32, a gradient step every 4
env steps after `--learning-starts`, target every 1000 steps, one torch thread. Frames per second
= 4 x env steps / seconds of training (SB3: `learn()`; bellmax: its training loop, from
metrics.jsonl), for the steps before learning starts (acting only) and after (acting + updates).
Replay memory: the bytes of the arrays each library allocates for a 1M-transition buffer (what a
10M-frame run fills): every array of both buffers has one row per transition, so the buffers are
built with 10,000 transitions and the sizes scaled by 100 (SB3's 1M buffer cannot even be
allocated on this 24 GiB machine).

Both networks run on `--device` (default cpu; `--device cuda` on a machine with a GPU).

    python benchmarks/dqn_pong.py [--steps 20000] [--learning-starts 10000] [--seeds 1] [--device cpu]
        [--out docs/images/bench_dqn_pong.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GAME = "ALE/Pong-v5"


def bellmax_run(steps: int, learning_starts: int, seed: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bellmax.cli", "train", "dqn", "--env", GAME, "--seed", str(seed),
                        "--total-steps", str(steps), "--learning-starts", str(learning_starts),
                        "--buffer-size", "100000", "--eval-episodes", "0", "--log-every", "1000",
                        "--checkpoint-every", str(10 * steps), "--no-progress", "--no-tensorboard",
                        "--device", device, "--run-dir", str(run_dir)], check=True, capture_output=True, text=True)
        whole = time.perf_counter() - start
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open() if line.strip()]
    acting = [r for r in rows if "time/iteration_seconds" in r and r["step"] <= learning_starts]
    learning = [r for r in rows if "time/iteration_seconds" in r and r["step"] > learning_starts]
    return {"library": "bellmax", "seed": seed, "steps": steps, "device": device, "whole_seconds": whole,
            "acting_fps": 4 * 1000 * len(acting) / sum(r["time/iteration_seconds"] for r in acting),
            "learning_fps": 4 * 1000 * len(learning) / sum(r["time/iteration_seconds"] for r in learning),
            "gradient_steps": sum(r.get("losses/gradient_steps", 0) for r in rows)}


def sb3_worker(steps: int, learning_starts: int, seed: int, device: str) -> dict:
    """Runs in its own process (`--worker sb3`)."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    torch.set_num_threads(1)
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(GAME, n_envs=1, seed=seed), n_stack=4)
    # rl-zoo3 dqn.yml `atari` (buffer 100k, lr 1e-4, batch 32, target 1000, train_freq 4, eps 0.1 -> 0.01)
    model = DQN("CnnPolicy", env, buffer_size=100_000, learning_rate=1e-4, batch_size=32,
                learning_starts=learning_starts, target_update_interval=1000, train_freq=4, gradient_steps=1,
                exploration_fraction=0.1, exploration_final_eps=0.01, optimize_memory_usage=False, seed=seed,
                device=device, verbose=0)
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts:
                marks["learning_starts"] = time.perf_counter()
            return True

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Clock())
    end = time.perf_counter()
    return {"library": "sb3", "seed": seed, "steps": steps, "device": device,
            "acting_fps": 4 * learning_starts / (marks["learning_starts"] - start),
            "learning_fps": 4 * (steps - learning_starts) / (end - marks["learning_starts"]),
            "gradient_steps": int(model._n_updates)}


def sb3_run(steps: int, learning_starts: int, seed: int, device: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", "sb3", "--steps", str(steps),
                           "--learning-starts", str(learning_starts), "--seeds", str(seed + 1),
                           "--device", device],
                          check=True, capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["whole_seconds"] = time.perf_counter() - start
    return result


def replay_memory(capacity: int = 1_000_000, built: int = 10_000) -> dict:
    """GiB of the arrays each replay buffer allocates for `capacity` Atari transitions (measured on
    buffers of `built` transitions, scaled linearly)."""
    import numpy as np
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from bellmax.core.replay import FrameStackReplayBuffer

    ours = FrameStackReplayBuffer(built, 1, (4, 84, 84), ())
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    sizes = {"bellmax FrameStackReplayBuffer": sum(a.nbytes for a in vars(ours).values()
                                                    if isinstance(a, np.ndarray))}
    for optimize in (False, True):
        with warnings.catch_warnings():  # SB3 warns that the machine lacks that much memory
            warnings.simplefilter("ignore")
            theirs = ReplayBuffer(built, obs_space, spaces.Discrete(6), device="cpu",
                                  optimize_memory_usage=optimize, handle_timeout_termination=not optimize)
        label = f"SB3 ReplayBuffer (optimize_memory_usage={optimize})"
        sizes[label] = sum(a.nbytes for a in vars(theirs).values() if isinstance(a, np.ndarray))
        del theirs
    return {label: round(n * capacity / built / 2**30, 2) for label, n in sizes.items()}


def markdown(results: list[dict], memory: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "| library | seed | frames/s, acting only (before learning starts) | frames/s, acting + learning | "
             "gradient steps | whole s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['library']} | {r['seed']} | {r['acting_fps']:,.0f} | {r['learning_fps']:,.0f} | "
                     f"{r['gradient_steps']:,} | {r['whole_seconds']:.1f} |")
    by = {lib: [r for r in results if r["library"] == lib] for lib in ("bellmax", "sb3")}
    for key, label in (("acting_fps", "acting"), ("learning_fps", "acting + learning")):
        mean = {lib: sum(r[key] for r in runs) / len(runs) for lib, runs in by.items()}
        lines.append(f"\nframes/s {label}: bellmax / SB3 = {mean['bellmax'] / mean['sb3']:.2f}")
    lines += ["", "| replay buffer, 1M Atari transitions | GiB |", "|---|---|"]
    lines += [f"| {label} | {gib:,.2f} |" for label, gib in memory.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per run (4 frames each)")
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device of both libraries' networks (default cpu)")
    parser.add_argument("--out", default=None, help="write the results as JSON (and .md beside it)")
    parser.add_argument("--worker", choices=["sb3"], default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(sb3_worker(opts.steps, opts.learning_starts, opts.seeds - 1, opts.device)))
        return 0
    results = []
    for seed in range(opts.seeds):
        for run in (bellmax_run, sb3_run):
            results.append(run(opts.steps, opts.learning_starts, seed, opts.device))
            print(json.dumps(results[-1]), file=sys.stderr)
    memory = replay_memory()
    command = "python benchmarks/dqn_pong.py " + " ".join(sys.argv[1:])
    text = markdown(results, memory, command)
    print(text)
    if opts.out:
        Path(opts.out).write_text(json.dumps({"command": command, "results": results, "replay_gib": memory}, indent=2))
        Path(opts.out).with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
