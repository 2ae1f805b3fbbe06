"""rl-zoo3's tuned Stable-Baselines3 hyperparameters for the environments `bellmax bench` compares
on, written down as data (never downloaded at run time), and their mapping onto bellmax flags.

Provenance: https://github.com/DLR-RM/rl-baselines3-zoo at commit
22e3ff2450fd92033f7f032915e1f64894a09584 (2026-04-23, rl-zoo3 2.9.0a2); the three files below
last changed in eec15dc22e1ec7167064aae0c1218eefccaf0ff4 (2026-04-01). Values are copied exactly,
YAML anchors (`<<: *mujoco-defaults`) resolved by hand. dqn.yml and sac.yml (the off-policy
entries) also last changed in eec15dc2; keys an entry leaves out take SB3's defaults (listed next
to the entry, for SB3 2.x). rl-zoo3 lists MuJoCo entries for the v4
environments only; `zoo_entry` uses them for v5 and says so.

How rl-zoo3 reads an entry (rl_zoo3/exp_manager.py, rl_zoo3/utils.py):
- `lin_X` is `SimpleLinearSchedule(X)`: value = progress_remaining * X (linear decay to 0).
- `normalize: true` wraps the training env in `VecNormalize(gamma=<the entry's gamma if given>)`,
  and the evaluation env in `VecNormalize(training=False, norm_reward=False)` with synced stats.
- Envs are `make_vec_env(..., vec_env_cls=DummyVecEnv)` with a `Monitor` per copy; evaluation
  uses one env (`--n-eval-envs 1`) and `eval_freq // n_envs` callback calls between evaluations.
"""

from __future__ import annotations

import copy
from typing import Any

from bellmax.errors import BellmaxError

ZOO_REPOSITORY = "https://github.com/DLR-RM/rl-baselines3-zoo"
ZOO_COMMIT = "22e3ff2450fd92033f7f032915e1f64894a09584"
ZOO_FILES = {"ppo": "hyperparams/ppo.yml", "a2c": "hyperparams/a2c.yml", "trpo": "hyperparams/trpo.yml",
             "dqn": "hyperparams/dqn.yml", "sac": "hyperparams/sac.yml", "td3": "hyperparams/td3.yml"}

# policy_kwargs of rl-zoo3's tuned MuJoCo PPO entries, as a structure instead of a Python string:
# "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))"
_MUJOCO_PPO_POLICY = {"log_std_init": -2, "ortho_init": False, "activation_fn": "relu",
                      "net_arch": {"pi": [256, 256], "vf": [256, 256]}}

# trpo.yml: HalfCheetahBulletEnv-v0 (&pybullet-defaults) <- Ant-v4 (&mujoco-defaults, n_timesteps 1e6)
_TRPO_MUJOCO = {"normalize": True, "n_envs": 2, "n_timesteps": 1_000_000, "policy": "MlpPolicy",
                "batch_size": 128, "n_steps": 1024, "gamma": 0.99, "gae_lambda": 0.95, "sub_sampling_factor": 1,
                "cg_max_steps": 25, "cg_damping": 0.1, "n_critic_updates": 20, "learning_rate": 1e-3}

# a2c.yml: HalfCheetah-v4 (&mujoco-defaults); the other MuJoCo entries merge it unchanged
_A2C_MUJOCO = {"normalize": True, "n_timesteps": 1_000_000, "policy": "MlpPolicy"}

# sac.yml: HalfCheetah-v4 (&mujoco-defaults); Ant/Hopper/Walker2d-v4 merge it unchanged. SB3's SAC
# defaults fill the rest: lr 3e-4, buffer 1e6, batch 256, tau 0.005, gamma 0.99, train_freq 1,
# gradient_steps 1, ent_coef "auto", 256x256 ReLU actor and twin critics
_SAC_MUJOCO = {"n_timesteps": 1_000_000, "policy": "MlpPolicy", "learning_starts": 10000}

# td3.yml: HalfCheetah-v4 (&mujoco-defaults); Ant/Hopper/Walker2d-v4 merge it unchanged. noise_type
# 'normal' + noise_std is rl-zoo3's NormalActionNoise(0, noise_std) on every action dimension
_TD3_MUJOCO = {"n_timesteps": 1_000_000, "policy": "MlpPolicy", "learning_starts": 10000, "noise_type": "normal",
               "noise_std": 0.1, "train_freq": 1, "gradient_steps": 1, "learning_rate": 1e-3, "batch_size": 256,
               "policy_kwargs": {"net_arch": [400, 300]}}

# ppo.yml `atari` (every ALE game without its own entry): AtariWrapper + a stack of 4 frames
_PPO_ATARI = {"env_wrapper": "AtariWrapper", "frame_stack": 4, "policy": "CnnPolicy", "n_envs": 8, "n_steps": 128,
              "n_epochs": 4, "batch_size": 256, "n_timesteps": 10_000_000, "learning_rate": "lin_2.5e-4",
              "clip_range": "lin_0.1", "vf_coef": 0.5, "ent_coef": 0.01}

# (algo, env id as rl-zoo3 spells it) -> the entry's keys and values
ZOO_HYPERPARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "CartPole-v1"): {  # "# Tuned"
        "n_envs": 8, "n_timesteps": 100_000, "policy": "MlpPolicy", "n_steps": 32, "batch_size": 256,
        "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0, "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    ("ppo", "HalfCheetah-v4"): {  # "# Tuned  # 10 mujoco envs"
        "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 1_000_000, "batch_size": 64,
        "n_steps": 512, "gamma": 0.98, "learning_rate": 2.0633e-05, "ent_coef": 0.000401762, "clip_range": 0.1,
        "n_epochs": 20, "gae_lambda": 0.92, "max_grad_norm": 0.8, "vf_coef": 0.58096,
        "policy_kwargs": _MUJOCO_PPO_POLICY,
    },
    ("ppo", "Hopper-v4"): {
        "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 1_000_000, "batch_size": 32,
        "n_steps": 512, "gamma": 0.999, "learning_rate": 9.80828e-05, "ent_coef": 0.00229519, "clip_range": 0.2,
        "n_epochs": 5, "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671,
        "policy_kwargs": _MUJOCO_PPO_POLICY,
    },
    # dqn.yml CartPole-v1 (no "# Tuned" comment); policy_kwargs "dict(net_arch=[256, 256])"
    ("dqn", "CartPole-v1"): {
        "n_timesteps": 50_000, "policy": "MlpPolicy", "learning_rate": 2.3e-3, "batch_size": 64,
        "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99, "target_update_interval": 10,
        "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
    # sac.yml Pendulum-v1: only these three keys (a commented-out ParallelTrainCallback; no use_sde,
    # no policy_kwargs), so SB3's SAC defaults hold: buffer 1e6, learning_starts 100, batch 256,
    # tau 0.005, gamma 0.99, train_freq 1, gradient_steps 1, ent_coef "auto", 256x256 ReLU nets
    ("sac", "Pendulum-v1"): {"n_timesteps": 20_000, "policy": "MlpPolicy", "learning_rate": 1e-3},
    ("a2c", "HalfCheetah-v4"): _A2C_MUJOCO,
    ("a2c", "Hopper-v4"): _A2C_MUJOCO,
    ("trpo", "HalfCheetah-v4"): {**_TRPO_MUJOCO, "target_kl": 0.04},  # "# Tuned"
    ("trpo", "Hopper-v4"): _TRPO_MUJOCO,  # "# Tuned"
    ("ppo", "atari"): _PPO_ATARI,
    **{("sac", f"{env}-v4"): _SAC_MUJOCO for env in ("HalfCheetah", "Hopper", "Walker2d", "Ant")},
    **{("td3", f"{env}-v4"): _TD3_MUJOCO for env in ("HalfCheetah", "Hopper", "Walker2d", "Ant")},
}


def zoo_entry(algo: str, env: str) -> tuple[dict[str, Any], str]:
    """(a copy of rl-zoo3's entry for algo on env, a provenance note). A v5 MuJoCo id uses the v4
    entry (the only one rl-zoo3 has); an env with no entry is a BellmaxError listing those known."""
    key = (algo.lower(), env)
    note = f"rl-zoo3 {ZOO_FILES.get(algo.lower(), '?')} {env} @ {ZOO_COMMIT[:8]}"
    if key not in ZOO_HYPERPARAMS and env.endswith("-v5"):
        v4 = env[: -len("-v5")] + "-v4"
        if (algo.lower(), v4) in ZOO_HYPERPARAMS:
            key = (algo.lower(), v4)
            note = (f"rl-zoo3 {ZOO_FILES[algo.lower()]} {v4} @ {ZOO_COMMIT[:8]} "
                    f"(rl-zoo3 has no {env} entry; its {v4} values used for {env})")
    if key not in ZOO_HYPERPARAMS and env.startswith("ALE/") and (algo.lower(), "atari") in ZOO_HYPERPARAMS:
        key = (algo.lower(), "atari")
        note = f"rl-zoo3 {ZOO_FILES[algo.lower()]} atari @ {ZOO_COMMIT[:8]} (its entry for every Atari game)"
    if key not in ZOO_HYPERPARAMS:
        known = ", ".join(f"{a} {e}" for a, e in ZOO_HYPERPARAMS)
        raise BellmaxError(f"no rl-zoo3 hyperparameters recorded for {algo} on {env}; known: {known} "
                           "(v5 MuJoCo ids use the v4 entries)")
    return copy.deepcopy(ZOO_HYPERPARAMS[key]), note


def schedule_start(value: Any) -> tuple[float, bool]:
    """(initial value, is_linear) of a plain number or rl-zoo3's 'lin_X' string."""
    if isinstance(value, str):
        if not value.startswith("lin_"):
            raise BellmaxError(f"unknown rl-zoo3 schedule {value!r} (only 'lin_X' is used here)")
        return float(value[len("lin_"):]), True
    return float(value), False


# rl-zoo3 / SB3 PPO key -> bellmax PPOConfig field, where the meaning is the same
_SAME_MEANING = {"n_envs": "num_envs", "n_steps": "n_steps", "batch_size": "batch_size", "n_epochs": "n_epochs",
                 "gamma": "gamma", "gae_lambda": "gae_lambda", "ent_coef": "ent_coef", "vf_coef": "vf_coef",
                 "max_grad_norm": "max_grad_norm", "target_kl": "target_kl"}


def bellmax_ppo_flags(hyperparams: dict[str, Any]) -> tuple[list[str], list[str]]:
    """`bellmax train ppo` flags that reproduce an rl-zoo3 PPO entry, and the notes on what maps
    only approximately or not at all (for the report)."""
    flags: list[str] = []
    notes: list[str] = []
    for key, value in hyperparams.items():
        if key in _SAME_MEANING:
            flags += [f"--{_SAME_MEANING[key].replace('_', '-')}", str(value)]
        elif key == "learning_rate":
            start, linear = schedule_start(value)
            flags += ["--learning-rate", str(start)]
            if linear:
                flags.append("--anneal-lr")
                notes.append("lin_ learning rate -> --anneal-lr (bellmax sets the rate before each rollout, "
                             "SB3 after it: one rollout apart)")
        elif key == "clip_range":
            start, linear = schedule_start(value)
            flags += ["--clip-range", str(start)]
            if linear:
                flags.append("--anneal-clip")
                notes.append("lin_ clip range -> --anneal-clip (same one-rollout offset)")
        elif key == "normalize":
            if value:
                flags += ["--normalize-obs", "--normalize-reward"]
                notes.append("VecNormalize -> --normalize-obs --normalize-reward (clip limits may differ)")
        elif key == "policy_kwargs":
            arch = value.get("net_arch", {})
            if arch.get("pi") and arch.get("pi") == arch.get("vf"):
                flags += ["--hidden-sizes", *map(str, arch["pi"])]
            elif arch:
                notes.append(f"net_arch {arch}: bellmax uses one --hidden-sizes for both networks")
            if "activation_fn" in value:
                flags += ["--activation", value["activation_fn"]]
            if "log_std_init" in value:
                flags += ["--log-std-init", str(value["log_std_init"])]
            if value.get("ortho_init") is False:
                notes.append("ortho_init=False has no bellmax flag (bellmax always initializes orthogonally)")
        elif key == "n_timesteps":
            flags += ["--total-steps", str(value)]
        elif key != "policy":
            notes.append(f"{key}={value} has no bellmax PPO flag")
    return flags, notes
