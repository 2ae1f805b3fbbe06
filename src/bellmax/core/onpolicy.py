"""What the policy-gradient family (VPG, A2C, TRPO, PPO) shares: the policy pi_theta and value
V_phi built from the config, the rollout of the current policy into a RolloutBuffer, the rollout
length that makes `total_steps` an exact budget, and observation / reward normalization.

An on-policy algorithm provides `build()` (networks, optimizers, `self.buffer =
self.make_rollout_buffer(...)`), `train_iteration(max_steps)` (collect -> estimate -> update),
`modules()` and `optimizers()`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from bellmax.config import OnPolicyConfig
from bellmax.core.algorithm import Algorithm
from bellmax.core.nets import (
    ACTIVATIONS,
    GridCNN,
    NatureCNN,
    Policy,
    ValueNet,
    is_grid_space,
    is_image_space,
    space_shape,
)
from bellmax.core.normalize import ObsNormalizer, RewardNormalizer
from bellmax.core.resources import check_fits_in_memory
from bellmax.core.rollout import RolloutBuffer
from bellmax.errors import ConfigError


class OnPolicyAlgorithm(Algorithm):
    config: OnPolicyConfig
    policy: Policy
    value: ValueNet

    def __init__(self, config: OnPolicyConfig, env: gym.Env | gym.vector.VectorEnv | None = None):
        super().__init__(config, env)
        self.obs_normalizer = (ObsNormalizer(space_shape(self.env.single_observation_space))
                               if config.normalize_obs else None)
        self.reward_normalizer = RewardNormalizer(self.env.num_envs, config.gamma) if config.normalize_reward else None
        self.attach_self_play()

    def make_env(self) -> gym.vector.VectorEnv:
        """The training environments, stepped by `num_workers` Ray actors when it is above 0."""
        if self.config.num_workers == 0:
            return super().make_env()
        from bellmax.envs.make import make_worker_env

        return make_worker_env(self.config.env, self.config.num_envs, self.config.num_workers)

    def attach_self_play(self) -> None:
        """With self_play > 0, let the arena env's opponent seats be played by snapshots of this policy."""
        if self.config.self_play <= 0:
            return
        use_self_play = getattr(self.env, "use_self_play", None)
        if use_self_play is None:
            raise ConfigError(f"invalid self_play={self.config.self_play}: {self.config.env} has no opponents to "
                              "play; self-play needs an arena environment such as bellmax/BomberDuel-v0 "
                              "(set --self-play 0)")
        use_self_play(self.policy, self.config.self_play)

    # -- networks and storage -----------------------------------------------------------------
    def make_policy_and_value(self, share_torso: bool = True) -> tuple[Policy, ValueNet]:
        """pi_theta and V_phi from the config: separate MLPs, or CNN torsos under both heads: the
        Nature CNN for image observations (Atari), the GridCNN for board planes (Bomber). With
        `share_torso` both heads sit on one CNN, right for one optimizer over one combined loss (A2C,
        PPO); without it each head gets its own CNN, for algorithms that step the policy and V_phi
        separately (VPG, TRPO), where fitting V_phi must not move pi_theta."""
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        if is_image_space(obs_space) or is_grid_space(obs_space):
            def make_torso() -> NatureCNN | GridCNN:
                return NatureCNN(obs_space) if is_image_space(obs_space) else GridCNN(obs_space)

            policy_torso = make_torso()
            return (Policy(obs_space, action_space, (), torso=policy_torso, log_std_init=cfg.log_std_init),
                    ValueNet(obs_space, (), torso=policy_torso if share_torso else make_torso()))
        activation = ACTIVATIONS[cfg.activation]
        return (Policy(obs_space, action_space, cfg.hidden_sizes, activation=activation, log_std_init=cfg.log_std_init),
                ValueNet(obs_space, cfg.hidden_sizes, activation=activation))

    def make_rollout_buffer(self, n_steps: int) -> RolloutBuffer:
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        discrete_actions = isinstance(action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        if isinstance(obs_space, gym.spaces.Discrete):
            obs_dtype = torch.long
        elif is_image_space(obs_space):
            obs_dtype = torch.uint8
        else:
            obs_dtype = torch.float32
        action_dtype = torch.long if discrete_actions else torch.float32
        obs_shape, action_shape = space_shape(obs_space), space_shape(action_space)
        per_sample = (math.prod(obs_shape) * obs_dtype.itemsize + math.prod(action_shape) * action_dtype.itemsize
                      + 5 * 4)  # log-probs, rewards, values, terminated, truncated, advantages
        check_fits_in_memory(n_steps * self.env.num_envs * per_sample,
                             f"a rollout of n_steps x num_envs = {n_steps:,} x {self.env.num_envs:,} samples",
                             "lower --n-steps or --num-envs")
        return RolloutBuffer(n_steps, self.env.num_envs, obs_shape, action_shape, obs_dtype=obs_dtype,
                             action_dtype=action_dtype)

    def shares_torso(self, value_fn: nn.Module) -> bool:
        """Whether the policy and `value_fn` share one CNN torso (image or board observations)."""
        return isinstance(value_fn, ValueNet) and value_fn.encoder is self.policy.encoder

    def policy_and_value(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """(pi(.|s), V(s)) for a batch: a torso shared by both runs once."""
        if self.shares_torso(self.value):
            features = self.policy.encoder(obs)
            return self.policy.distribution_from(features), self.value.from_features(features)
        return self.policy.distribution(obs), self.value(obs)

    # -- what the networks and learning see ---------------------------------------------------
    def normalize_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Raw observations, or normalized ones (statistics updated only from training rollouts)."""
        if self.obs_normalizer is None:
            return obs
        return self.obs_normalizer(obs, update)

    def learning_rewards(self, raw_rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        rewards = super().learning_rewards(raw_rewards, done)
        if self.reward_normalizer is not None:
            rewards = self.reward_normalizer(rewards, done)
        return rewards

    # -- collecting ---------------------------------------------------------------------------
    def rollout_length(self, max_steps: int) -> int:
        """Vector steps of the next rollout: n_steps, or fewer so total_steps is an exact budget."""
        return min(self.config.n_steps, -(-max_steps // self.env.num_envs))

    def collect_rollout(self, buffer: RolloutBuffer, n_steps: int, value_fn: nn.Module) -> None:
        """Run the current policy for n_steps vector steps, filling `buffer`.

        The buffer gets what learning uses (normalized observations and rewards when enabled);
        the episode tracker gets the raw rewards.
        """
        start = time.perf_counter()
        shared = self.shares_torso(value_fn)
        buffer.length = n_steps
        store = buffer.numpy()  # NumPy views of the buffer's tensors: cheap per-step writes
        for t in range(n_steps):
            obs = self.normalize_obs(self.obs, update=True)
            obs_t = torch.as_tensor(obs, device=self.device)
            with torch.inference_mode():
                if shared:
                    features = self.policy.encoder(obs_t)
                    actions, log_probs = self.policy.sample_from(features)
                    values = self.value.from_features(features)
                else:
                    actions, log_probs = self.policy.sample(obs_t)
                    values = value_fn(obs_t)
                actions = actions.cpu()
                store["log_probs"][t] = log_probs.cpu().numpy()
                store["values"][t] = values.cpu().numpy()
            step = self.step_envs(self.env_actions(actions))
            store["obs"][t] = obs
            store["actions"][t] = actions.numpy().reshape(store["actions"][t].shape)
            store["rewards"][t] = step.rewards
            store["terminated"][t] = step.terminated
            store["truncated"][t] = step.truncated
            store["valid"][t] = step.valid
        with torch.inference_mode():
            last_obs = torch.as_tensor(self.normalize_obs(self.obs), device=self.device)
            buffer.last_value = value_fn(last_obs).cpu().clone()
        self.global_step += n_steps * self.env.num_envs
        self.rollout_seconds = time.perf_counter() - start

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "normalizers": {"obs": self.obs_normalizer, "reward": self.reward_normalizer}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.obs_normalizer = state["normalizers"]["obs"]
        self.reward_normalizer = state["normalizers"]["reward"]
        self.attach_self_play()  # the restored env's snapshots are back; the live policy is this one
