"""Soft Actor-Critic (Haarnoja et al., 2018), with twin critics and automatic entropy tuning.

SAC maximizes return plus entropy, E[sum_t r_t + alpha H(pi(.|s_t))]. Its soft Bellman target
and losses, from replayed transitions:

    y = r + gamma (1 - d) [ min_i Q_i'(s', a') - alpha log pi(a'|s') ],   a' ~ pi(.|s')
    L_Q = sum_i E[(Q_i(s, a) - y)^2]
    L_pi = E[ alpha log pi(a|s) - min_i Q_i(s, a) ],   a ~ pi(.|s) reparameterized
    L_alpha = -E[ log alpha (log pi(a|s) + H_target) ],  H_target = -dim(A)

The policy is a tanh-squashed Gaussian, a = bias + scale tanh(u). log pi is measured in the
normalized action space tanh(u) in [-1, 1]^d, with the change-of-variables term
-sum log(1 - tanh(u)^2) and no log(scale) term (core/nets.py: squashed_log_prob), as in the paper,
Stable-Baselines3 and Spinning Up: H_target = -dim(A) then asks the same of the policy on
Pendulum's [-2, 2] as on [-1, 1].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from bellmax.config import OffPolicyConfig, require
from bellmax.core.nets import QNet, SquashedGaussianActor, frozen, polyak_update
from bellmax.core.offpolicy import OffPolicyAlgorithm
from bellmax.core.optim import Adam


@dataclass
class SACConfig(OffPolicyConfig):
    """SAC; defaults follow the paper and CleanRL (256x256 ReLU nets, policy lr 3e-4, Q lr 1e-3)."""

    algo: ClassVar[str] = "sac"
    renamed: ClassVar[dict[str, str | None]] = {"ent_coef": "alpha", "init_ent_coef": "alpha_init"}

    learning_rate: float = 3e-4
    """Adam step size of the policy and of alpha."""
    q_learning_rate: float = 1e-3
    """Adam step size of the critics."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    learning_starts: int = 5000
    alpha: float | None = None
    """The temperature alpha weighting the entropy in the objective: a fixed value, or None to tune
    it automatically towards H_target = -dim(A) (entropy of the action rescaled to [-1, 1]^d)."""
    alpha_init: float = 1.0
    """Starting alpha when tuned automatically."""

    def validate(self) -> None:
        super().validate()
        require(self.q_learning_rate > 0, "q_learning_rate", self.q_learning_rate, "positive")
        require(self.alpha is None or self.alpha >= 0, "alpha", self.alpha, ">= 0 or None (tuned automatically)")
        require(self.alpha_init > 0, "alpha_init", self.alpha_init, "positive")


class SAC(OffPolicyAlgorithm):
    name = "sac"
    config_class = SACConfig
    config: SACConfig
    supports_discrete = False

    def build(self) -> None:
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.action_box()
        self.actor = SquashedGaussianActor(obs_space, action_space, cfg.hidden_sizes)
        self.critics = nn.ModuleList(QNet(obs_space, action_space, cfg.hidden_sizes, nn.ReLU) for _ in range(2))
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.policy = self.actor
        self.target_entropy = -float(np.prod(action_space.shape))
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(cfg.alpha or cfg.alpha_init))),
                                      requires_grad=cfg.alpha is None)
        self.actor_optimizer = Adam(self.actor.parameters(), lr=cfg.learning_rate)
        self.critic_optimizer = Adam(self.critics.parameters(), lr=cfg.q_learning_rate)
        self.alpha_optimizer = Adam([self.log_alpha], lr=cfg.learning_rate) if cfg.alpha is None else None

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics, "critics_target": self.critics_target,
                "alpha": _ParameterHolder(self.log_alpha)}

    def optimizers(self) -> dict[str, Adam]:
        optimizers = {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
        if self.alpha_optimizer is not None:
            optimizers["alpha"] = self.alpha_optimizer
        return optimizers

    def explore(self, obs: torch.Tensor) -> np.ndarray:
        """Sample a ~ pi(.|s): the policy's own stochasticity is the exploration."""
        return self.actor.act(obs, deterministic=False).cpu().numpy()

    @torch.no_grad()
    def soft_targets(self, batch: dict[str, torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - d) [min_i Q_i'(s', a') - alpha log pi(a'|s')], a' ~ pi(.|s') freshly sampled."""
        next_actions, next_log_prob = self.actor.sample(batch["next_obs"])
        next_q = torch.stack([q(batch["next_obs"], next_actions) for q in self.critics_target]).min(0).values
        soft_value = next_q - alpha * next_log_prob
        return batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"]) * soft_value  # discounts: gamma^n

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        alpha = self.log_alpha.exp().detach()
        obs, actions = batch["obs"], batch["actions"]
        targets = self.soft_targets(batch, alpha)
        q_values = [q(obs, actions) for q in self.critics]
        loss_q = sum(((q - targets) ** 2).mean() for q in q_values)
        self.critic_optimizer.zero_grad()
        loss_q.backward()
        self.critic_optimizer.step()

        new_actions, log_prob = self.actor.sample(obs)
        with frozen(self.critics):  # the gradient goes through Q into the action, not into phi
            q_new = torch.stack([q(obs, new_actions) for q in self.critics]).min(0).values
            loss_actor = (alpha * log_prob - q_new).mean()
            self.actor_optimizer.zero_grad()
            loss_actor.backward()
        self.actor_optimizer.step()
        metrics = {"losses/loss_q": loss_q.item(), "losses/loss_actor": loss_actor.item(),
                   "losses/q_values": q_values[0].mean().item(), "losses/entropy": -log_prob.mean().item()}

        if self.alpha_optimizer is not None:
            loss_alpha = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad()
            loss_alpha.backward()
            self.alpha_optimizer.step()
            metrics["losses/loss_alpha"] = loss_alpha.item()
        metrics["losses/alpha"] = self.log_alpha.exp().item()
        polyak_update(self.critics_target, self.critics, cfg.tau)
        return metrics


class _ParameterHolder(nn.Module):
    """Lets log alpha live in checkpoints like any module."""

    def __init__(self, parameter: nn.Parameter):
        super().__init__()
        self.log_alpha = parameter
