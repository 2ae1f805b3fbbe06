"""Advantage actor-critic (synchronous A2C, Mnih et al. 2016 without the asynchrony).

The actor is the policy gradient with the advantage as its weight (the lecture's option 5),
the critic V_phi estimates it: every iteration collects n_steps x num_envs transitions and takes
ONE gradient step on

    L = -E_t[log pi_theta(a_t|s_t) A_t] + c_v E_t[(V_phi(s_t) - R_t)^2] / 2 - c_e E_t[H[pi_theta(.|s_t)]]

with A_t from GAE(gamma, lambda); lambda = 1 gives the classic n-step return
R_t = r_t + gamma r_{t+1} + ... + gamma^(n-1) r_{t+n-1} + gamma^n V(s_{t+n}) minus V(s_t).
Short rollouts and one step per batch make it the on-policy method with the least compute per
sample; PPO reuses each batch for several epochs instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from bellmax.config import OnPolicyConfig, require, require_step_size
from bellmax.core.onpolicy import OnPolicyAlgorithm
from bellmax.core.optim import Adam, Optimizer, RMSprop, clip_grad_norm
from bellmax.core.returns import explained_variance, standardize
from bellmax.core.rollout import advantages_and_returns, valid_samples


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C; defaults follow Stable-Baselines3's (5-step rollouts, lambda = 1), with Adam by default
    (`optimizer="rmsprop"`: the paper's RMSprop, as SB3 and rl-zoo3 use)."""

    algo: ClassVar[str] = "a2c"

    learning_rate: float = 7e-4
    """Step size of the optimizer (of policy and value together)."""
    num_envs: int = 16
    n_steps: int = 5
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    """c_e, weight of the entropy bonus."""
    vf_coef: float = 0.5
    """c_v, weight of the value loss."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this."""
    normalize_advantages: bool = False
    """Standardize advantages within each batch."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run's budget (total_steps)."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """adam, or rmsprop: the A2C paper's (TensorFlow's) RMSprop, as rl-zoo3 runs A2C on Atari."""
    adam_eps: float = 1e-5
    """Adam's epsilon."""
    rmsprop_alpha: float = 0.99
    """RMSprop's decay of the running mean of squared gradients."""
    rmsprop_eps: float = 1e-5
    """RMSprop's epsilon (inside the square root)."""

    def validate(self) -> None:
        super().validate()
        require_step_size("learning_rate", self.learning_rate)
        require(self.optimizer in ("adam", "rmsprop"), "optimizer", self.optimizer, "adam or rmsprop")
        require(0 <= self.rmsprop_alpha < 1, "rmsprop_alpha", self.rmsprop_alpha, "in [0, 1)")
        require(self.rmsprop_eps > 0, "rmsprop_eps", self.rmsprop_eps, "positive")
        require(self.ent_coef >= 0, "ent_coef", self.ent_coef, ">= 0")
        require(self.vf_coef >= 0, "vf_coef", self.vf_coef, ">= 0")
        require(self.adam_eps > 0, "adam_eps", self.adam_eps, "positive (e.g. 1e-5)")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")


def a2c_loss(log_prob: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor, returns: torch.Tensor,
             entropy: torch.Tensor, vf_coef: float, ent_coef: float) -> dict[str, torch.Tensor]:
    """The actor-critic loss (to minimize) and its named terms: the loss is
    loss_policy + vf_coef loss_value - ent_coef entropy."""
    loss_policy = -(log_prob * advantages).mean()  # -E[log pi(a|s) A]
    loss_value = 0.5 * ((values - returns) ** 2).mean()
    mean_entropy = entropy.mean()
    return {"loss": loss_policy + vf_coef * loss_value - ent_coef * mean_entropy, "loss_policy": loss_policy,
            "loss_value": loss_value, "entropy": mean_entropy}


class A2C(OnPolicyAlgorithm):
    name = "a2c"
    config_class = A2CConfig
    config: A2CConfig

    def build(self) -> None:
        cfg = self.config
        self.policy, self.value = self.make_policy_and_value()
        self.buffer = self.make_rollout_buffer(cfg.n_steps)
        if cfg.optimizer == "rmsprop":
            self.optimizer: Optimizer = RMSprop(self.trainable_parameters(), lr=cfg.learning_rate,
                                                alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
        else:
            self.optimizer = Adam(self.trainable_parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "value": self.value}

    def optimizers(self) -> dict[str, Optimizer]:
        return {"optimizer": self.optimizer}

    def train_iteration(self, max_steps: int) -> dict[str, float]:
        cfg = self.config
        lr = cfg.learning_rate * self.progress_remaining() if cfg.anneal_lr else cfg.learning_rate
        self.optimizer.param_groups[0]["lr"] = lr
        self.collect_rollout(self.buffer, self.rollout_length(max_steps), self.value)
        advantages, returns = advantages_and_returns(self.buffer, cfg.gamma, cfg.gae_lambda)
        batch = self.to_device(valid_samples(self.buffer, advantages=advantages, returns=returns))
        advantages = standardize(batch["advantages"]) if cfg.normalize_advantages else batch["advantages"]

        dist, values = self.policy_and_value(batch["obs"])
        terms = a2c_loss(self.policy.log_prob(dist, batch["actions"]), advantages, values,
                         batch["returns"], self.policy.entropy(dist), cfg.vf_coef, cfg.ent_coef)
        self.optimizer.zero_grad()
        terms["loss"].backward()
        grad_norm = clip_grad_norm(self.optimizer.params, cfg.max_grad_norm)
        self.optimizer.step()
        metrics = {f"losses/{k}": v.item() for k, v in terms.items() if k != "loss"}
        metrics["losses/grad_norm"] = grad_norm
        metrics["losses/learning_rate"] = lr
        metrics["losses/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        return metrics
