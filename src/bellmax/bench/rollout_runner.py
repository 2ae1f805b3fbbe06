"""Environment steps per second of the rollout phase alone (policy inference + env stepping, no
updates), one configuration per process, as `bellmax bench rollout` starts it:

    python -m bellmax.bench.rollout_runner --mode MODE --env HalfCheetah-v5 [--steps 50000] [--seed 0]

modes:
  bellmax        `PPO.collect_rollout` with bellmax's PPO preset for the env (and, separately
                 timed, the GAE pass that follows it, which SB3 does inside collect_rollouts)
  sb3-zoo        SB3 `PPO.collect_rollouts` built from rl-zoo3's entry for the env
  sb3-matched    SB3 `PPO.collect_rollouts` shaped like bellmax's preset (same number of envs,
                 rollout length, hidden sizes and normalization)
  env-gymnasium  random actions through bellmax's vector env (`make_vec_env`): the env alone
  env-sb3        random actions through SB3's DummyVecEnv + Monitor (+ VecNormalize when the
                 preset normalizes): the env alone, SB3's way

One warm-up rollout is not timed. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

MODES = ["bellmax", "sb3-zoo", "sb3-matched", "env-gymnasium", "env-sb3"]


def _bellmax_config(env_id: str, seed: int):
    from bellmax.algos import get_algorithm
    from bellmax.config import config_with_preset

    algo = get_algorithm("ppo")
    # on the CPU as SB3's side below, also where a GPU would take the Atari CNN (--device auto)
    return algo, config_with_preset(algo.config_class, env_id, None).replace(seed=seed, device="cpu")


def measure_bellmax(env_id: str, steps: int, seed: int) -> dict[str, Any]:
    from bellmax.core.rollout import advantages_and_returns

    algo, config = _bellmax_config(env_id, seed)
    agent = algo(config)
    per_rollout = config.n_steps * config.num_envs
    rollouts = max(1, math.ceil(steps / per_rollout))
    agent.collect_rollout(agent.buffer, config.n_steps, agent.value)  # warm-up
    collect = gae = 0.0
    for _ in range(rollouts):
        start = time.perf_counter()
        agent.collect_rollout(agent.buffer, config.n_steps, agent.value)
        middle = time.perf_counter()
        advantages_and_returns(agent.buffer, config.gamma, config.gae_lambda)
        gae += time.perf_counter() - middle
        collect += middle - start
    done = rollouts * per_rollout
    hidden = ["NatureCNN"] if env_id.startswith("ALE/") else list(config.hidden_sizes)
    return {"num_envs": config.num_envs, "n_steps": config.n_steps, "hidden_sizes": hidden,
            "steps": done, "seconds": collect + gae, "sps": done / (collect + gae),
            "collect_seconds": collect, "gae_seconds": gae, "collect_sps": done / collect}


def _sb3_model(env_id: str, seed: int, matched: bool):
    from bellmax.bench.sb3_runner import make_envs, model_kwargs
    from bellmax.bench.zoo import zoo_entry

    if matched and env_id.startswith("ALE/"):
        raise SystemExit("sb3-matched is for MLP presets; on Atari sb3-zoo has bellmax's shape already "
                         "(8 envs x 128 steps, Nature CNN)")
    if matched:
        _, config = _bellmax_config(env_id, seed)
        hyperparams: dict[str, Any] = {
            "n_envs": config.num_envs, "n_steps": config.n_steps, "batch_size": config.batch_size,
            "gamma": config.gamma, "gae_lambda": config.gae_lambda,
            "policy_kwargs": {"net_arch": {"pi": list(config.hidden_sizes), "vf": list(config.hidden_sizes)}},
        }
        normalize = config.normalize_obs or config.normalize_reward
        if normalize and not (config.normalize_obs and config.normalize_reward):
            raise SystemExit("sb3-matched supports presets normalizing both observations and rewards or neither")
        hyperparams["normalize"] = normalize
    else:
        hyperparams, _ = zoo_entry("ppo", env_id)
    from stable_baselines3 import PPO

    env, _ = make_envs(env_id, hyperparams, seed, seed + 10**6)
    model = PPO(hyperparams.get("policy", "MlpPolicy"), env, seed=seed, device="cpu", verbose=0,
                **model_kwargs(hyperparams))
    return model, hyperparams


def measure_sb3(env_id: str, steps: int, seed: int, matched: bool) -> dict[str, Any]:
    model, hyperparams = _sb3_model(env_id, seed, matched)
    per_rollout = model.n_steps * model.n_envs
    rollouts = max(1, math.ceil(steps / per_rollout))
    _, callback = model._setup_learn(total_timesteps=(rollouts + 1) * per_rollout * 10, callback=None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)  # warm-up
    start = time.perf_counter()
    for _ in range(rollouts):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    seconds = time.perf_counter() - start
    done = rollouts * per_rollout
    arch = hyperparams.get("policy_kwargs", {}).get("net_arch", {"pi": [64, 64]})
    hidden = ["NatureCNN"] if hyperparams.get("policy") == "CnnPolicy" else arch["pi"]
    return {"num_envs": model.n_envs, "n_steps": model.n_steps, "hidden_sizes": hidden, "steps": done,
            "seconds": seconds, "sps": done / seconds}


def measure_env(env_id: str, steps: int, seed: int, sb3: bool) -> dict[str, Any]:
    import numpy as np

    _, config = _bellmax_config(env_id, seed)
    if sb3:
        from bellmax.bench.sb3_runner import make_envs

        hyperparams = {"n_envs": config.num_envs, "gamma": config.gamma,
                       "normalize": config.normalize_obs or config.normalize_reward}
        if env_id.startswith("ALE/"):
            hyperparams = {"n_envs": config.num_envs, "env_wrapper": "AtariWrapper", "frame_stack": 4}
        env, _ = make_envs(env_id, hyperparams, seed, seed + 10**6)
        env.reset()
        space = env.action_space
    else:
        from bellmax.envs.make import make_vec_env

        env = make_vec_env(env_id, config.num_envs, seed=seed)
        space = env.action_space
    space.seed(seed)
    vector_steps = max(1, math.ceil(steps / config.num_envs))
    actions = [space.sample() for _ in range(min(vector_steps, 1000))]
    if sb3:  # DummyVecEnv takes one action per env in a batch; the Box is the single env's
        actions = [np.stack([space.sample() for _ in range(config.num_envs)]) for _ in range(len(actions))]
    start = time.perf_counter()
    for t in range(vector_steps):
        env.step(actions[t % len(actions)])
    seconds = time.perf_counter() - start
    env.close()
    done = vector_steps * config.num_envs
    return {"num_envs": config.num_envs, "steps": done, "seconds": seconds, "sps": done / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bellmax.bench.rollout_runner",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=50_000, help="timed environment steps (rounded up to rollouts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (bellmax's default is 1)")
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import torch

    torch.set_num_threads(opts.threads)
    if opts.mode == "bellmax":
        result = measure_bellmax(opts.env, opts.steps, opts.seed)
    elif opts.mode.startswith("sb3"):
        result = measure_sb3(opts.env, opts.steps, opts.seed, matched=opts.mode == "sb3-matched")
    else:
        result = measure_env(opts.env, opts.steps, opts.seed, sb3=opts.mode == "env-sb3")
    print(json.dumps({"mode": opts.mode, "env": opts.env, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
