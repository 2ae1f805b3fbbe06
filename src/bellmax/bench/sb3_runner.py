"""One Stable-Baselines3 training run, as `bellmax bench` starts it in its own process:

    python -m bellmax.bench.sb3_runner --algo ppo --env CartPole-v1 --seed 0 [--total-steps N]
        [--eval-every 2048 --stop-at-return 475] [--eval-episodes 10] [--run-dir DIR] [--threads 1]

builds the model as rl-zoo3 does from its recorded hyperparameters (`bellmax.bench.zoo`), trains
with `learn()`, evaluates the deterministic policy for --eval-episodes episodes on one env (as
rl-zoo3 does), and prints one JSON line: steps, seconds per phase, training steps/s, gradient
updates (SB3's train/n_updates) and updates/s, final eval return, the step at which a periodic
evaluation first reached --stop-at-return. With --run-dir it
also writes config.json and metrics.jsonl in bellmax's run-directory format, so `bellmax.plotting`
draws SB3 curves next to bellmax's.

Only `bellmax.bench` imports stable_baselines3 (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

PROCESS_START = time.perf_counter()
OFF_POLICY = ("dqn", "sac", "td3")


class LinearSchedule:
    """rl-zoo3's SimpleLinearSchedule: progress_remaining * initial_value."""

    def __init__(self, initial_value: float):
        self.initial_value = float(initial_value)

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial_value


def model_kwargs(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords of the SB3 algorithm from an rl-zoo3 entry (env-level keys removed,
    `lin_X` strings turned into schedules, policy_kwargs' activation name into the nn class)."""
    from torch import nn

    from bellmax.bench.zoo import schedule_start

    kwargs = {k: v for k, v in hyperparams.items()
              if k not in ("n_envs", "n_timesteps", "normalize", "policy", "noise_type", "noise_std", "env_wrapper",
                           "frame_stack")}
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            start, linear = schedule_start(kwargs[key])
            kwargs[key] = LinearSchedule(start) if linear else start
    if "policy_kwargs" in kwargs:
        policy_kwargs = dict(kwargs["policy_kwargs"])
        activations = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if "activation_fn" in policy_kwargs:
            policy_kwargs["activation_fn"] = activations[policy_kwargs["activation_fn"]]
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


def action_noise(hyperparams: dict[str, Any], n_actions: int):
    """rl-zoo3's exploration noise from `noise_type` / `noise_std` (None when the entry has none)."""
    noise_type = hyperparams.get("noise_type")
    if noise_type is None:
        return None
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    sigma = float(hyperparams["noise_std"]) * np.ones(n_actions)
    kinds = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
    return kinds[noise_type](mean=np.zeros(n_actions), sigma=sigma)


def algorithm_class(algo: str) -> type:
    if algo == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def make_envs(env_id: str, hyperparams: dict[str, Any], seed: int, eval_seed: int):
    """(training VecEnv, evaluation VecEnv) the way rl-zoo3's ExperimentManager builds them."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

    if hyperparams.get("env_wrapper") == "AtariWrapper":  # rl-zoo3's Atari path: AtariWrapper + frame stack
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)
        stack = hyperparams.get("frame_stack", 4)
        env = VecFrameStack(make_atari_env(env_id, n_envs=hyperparams.get("n_envs", 1), seed=seed,
                                           vec_env_cls=DummyVecEnv), n_stack=stack)
        eval_env = VecFrameStack(make_atari_env(env_id, n_envs=1, seed=eval_seed, vec_env_cls=DummyVecEnv),
                                 n_stack=stack)
        return env, eval_env
    env = make_vec_env(env_id, n_envs=hyperparams.get("n_envs", 1), seed=seed, vec_env_cls=DummyVecEnv)
    eval_env = make_vec_env(env_id, n_envs=1, seed=eval_seed, vec_env_cls=DummyVecEnv)
    if hyperparams.get("normalize"):
        normalize_kwargs = {"gamma": hyperparams["gamma"]} if "gamma" in hyperparams else {}
        env = VecNormalize(env, **normalize_kwargs)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, **normalize_kwargs)
    return env, eval_env


class Recorder:
    """Collects what the runner reports: rows for metrics.jsonl, rollout and evaluation time."""

    def __init__(self, live: Path | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.live = live  # metrics.jsonl written as rows come, so a run cut short leaves its curve
        self.rollout_seconds = 0.0
        self.eval_seconds = 0.0
        self.solved_at: int | None = None
        self.evaluated_at: int | None = None
        self.last_eval: tuple[float, float | None] | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.live is not None:
            with self.live.open("a") as f:
                f.write(json.dumps(row) + "\n")


def make_callbacks(recorder: Recorder, eval_env, eval_every: int, n_envs: int, eval_episodes: int,
                   stop_at_return: float | None, log_every: int = 0):
    from stable_baselines3.common.callbacks import (
        BaseCallback,
        CallbackList,
        EvalCallback,
        StopTrainingOnRewardThreshold,
    )

    class RolloutLogger(BaseCallback):
        """Times rollouts and logs the training return (mean of the last 100 episodes, as bellmax),
        after every rollout, or with `log_every` once that many steps have passed (an off-policy
        "rollout" can be a single step)."""

        logged_at = 0

        def _on_rollout_start(self) -> None:
            self._start = time.perf_counter()
            self._eval_before = recorder.eval_seconds

        def _on_rollout_end(self) -> None:
            # an EvalCallback evaluation inside the rollout is evaluation time, not rollout time
            recorder.rollout_seconds += time.perf_counter() - self._start - (recorder.eval_seconds - self._eval_before)
            if log_every and self.num_timesteps - self.logged_at < log_every:
                return
            self.logged_at = self.num_timesteps
            episodes = self.model.ep_info_buffer
            row = {"step": self.num_timesteps,
                   "rollout/ep_return": float(sum(e["r"] for e in episodes) / len(episodes)) if episodes else None,
                   "rollout/ep_length": float(sum(e["l"] for e in episodes) / len(episodes)) if episodes else None}
            recorder.add(row)

        def _on_step(self) -> bool:
            return True

    class TimedEvalCallback(EvalCallback):
        """EvalCallback that also records how long each evaluation took and its result."""

        def _on_step(self) -> bool:
            due = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
            start = time.perf_counter()
            keep_going = super()._on_step()
            if due:
                recorder.eval_seconds += time.perf_counter() - start
                recorder.evaluated_at = self.num_timesteps
                recorder.last_eval = (self.last_mean_reward, None)
                recorder.add({"step": self.num_timesteps, "eval/return": self.last_mean_reward,
                                      "eval/episodes": self.n_eval_episodes})
                if (stop_at_return is not None and recorder.solved_at is None
                        and self.last_mean_reward >= stop_at_return):
                    recorder.solved_at = self.num_timesteps
            return keep_going

    callbacks = [RolloutLogger()]
    if eval_every:
        stop = StopTrainingOnRewardThreshold(stop_at_return, verbose=0) if stop_at_return is not None else None
        callbacks.append(TimedEvalCallback(eval_env, callback_on_new_best=stop, n_eval_episodes=eval_episodes,
                                           eval_freq=max(eval_every // n_envs, 1), deterministic=True, verbose=0,
                                           warn=False))
    return CallbackList(callbacks)


def run(opts: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from bellmax.bench.zoo import zoo_entry

    imported = time.perf_counter()
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    hyperparams, provenance = zoo_entry(opts.algo, opts.env)
    total_steps = opts.total_steps or int(hyperparams["n_timesteps"])
    env, eval_env = make_envs(opts.env, hyperparams, opts.seed, opts.seed + 10**6)
    kwargs = model_kwargs(hyperparams)
    noise = action_noise(hyperparams, int(np.prod(env.action_space.shape or (1,))))
    if noise is not None:
        kwargs["action_noise"] = noise
    model = algorithm_class(opts.algo)(hyperparams.get("policy", "MlpPolicy"), env, seed=opts.seed,
                                       device=opts.device, verbose=0, **kwargs)
    live = None
    if opts.run_dir:
        Path(opts.run_dir).mkdir(parents=True, exist_ok=True)
        live = Path(opts.run_dir) / "metrics.jsonl"
        live.write_text("")
    recorder = Recorder(live)
    off_policy = opts.algo in OFF_POLICY
    callback = make_callbacks(recorder, eval_env, opts.eval_every, env.num_envs, opts.eval_episodes,
                              opts.stop_at_return, log_every=1000 if off_policy else 0)
    built = time.perf_counter()
    model.learn(total_timesteps=total_steps, callback=callback)
    learned = time.perf_counter()
    steps = int(model.num_timesteps)
    if recorder.evaluated_at != steps and opts.eval_episodes:
        if hyperparams.get("normalize"):
            sync_envs_normalization(env, eval_env)  # evaluate with the training statistics, frozen
        returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=opts.eval_episodes, deterministic=True,
                                     return_episode_rewards=True, warn=False)
        recorder.last_eval = (float(np.mean(returns)), float(np.std(returns)))
        recorder.add({"step": steps, "eval/return": recorder.last_eval[0],
                              "eval/return_std": recorder.last_eval[1], "eval/episodes": opts.eval_episodes})
    evaluated = time.perf_counter()
    learn_seconds = learned - built
    n_updates = int(getattr(model, "_n_updates", 0))  # what SB3 logs as train/n_updates
    update_seconds = learn_seconds - recorder.rollout_seconds - recorder.eval_seconds
    result = {
        "library": "sb3", "algo": opts.algo, "env": opts.env, "seed": opts.seed, "hyperparams": provenance,
        "steps": steps, "total_steps": total_steps,
        "eval_return": recorder.last_eval[0] if recorder.last_eval else None,
        "solved_at": recorder.solved_at,
        "import_seconds": imported - PROCESS_START, "setup_seconds": built - imported,
        "learn_seconds": learn_seconds, "rollout_seconds": recorder.rollout_seconds,
        "periodic_eval_seconds": recorder.eval_seconds, "final_eval_seconds": evaluated - learned,
        "train_sps": steps / max(learn_seconds - recorder.eval_seconds, 1e-9),
        "torch_threads": torch.get_num_threads(), "device": opts.device,
        "gradient_steps": n_updates, "updates_per_second": n_updates / update_seconds if update_seconds > 0 else None,
    }
    if opts.run_dir:
        write_run_dir(Path(opts.run_dir), opts, hyperparams, provenance, recorder.rows, result)
    env.close()
    eval_env.close()
    return result


def write_run_dir(run_dir: Path, opts: argparse.Namespace, hyperparams: dict[str, Any], provenance: str,
                  rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """config.json + metrics.jsonl as bellmax writes them (for bellmax.plotting), + result.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"algo": f"sb3-{opts.algo}", "config": {"env": opts.env, "seed": opts.seed, **hyperparams},
            "preset": provenance, "library": "stable-baselines3"}
    (run_dir / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bellmax.bench.sb3_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["ppo", "a2c", "trpo", *OFF_POLICY], required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-steps", type=int, default=None, help="default: the rl-zoo3 entry's n_timesteps")
    parser.add_argument("--eval-every", type=int, default=0, help="EvalCallback every this many env steps (0: none)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--stop-at-return", type=float, default=None,
                        help="StopTrainingOnRewardThreshold on the periodic evaluations")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="torch device of the SB3 model (default cpu, as bellmax)")
    opts = parser.parse_args(argv)
    if opts.stop_at_return is not None and not opts.eval_every:
        parser.error("--stop-at-return needs --eval-every N > 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(sys.argv[1:] if argv is None else argv))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
