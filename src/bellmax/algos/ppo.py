"""Proximal Policy Optimization, the clipped-surrogate version (Schulman et al., 2017).

Each iteration collects n_steps x num_envs transitions with the current policy pi_old, computes
GAE(gamma, lambda) advantages, then takes n_epochs passes of minibatch Adam steps on

    L(theta) = E_t[ min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]       r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)
               - c_v E_t[(V_phi(s_t) - R_t)^2] / 2 + c_e E_t[H[pi_theta(.|s_t)]]

The min makes the objective flat (zero gradient) once the ratio has moved past the clip range in
the direction the advantage favours: for A > 0 above 1 + eps, for A < 0 below 1 - eps. Around
it: advantage normalization per minibatch, optional value clipping, gradient-norm clipping,
linear learning-rate and clip-range annealing, and an optional early stop of the epochs when the
approximate KL to pi_old passes 1.5 target_kl. As in Stable-Baselines3 and Spinning Up, that KL is
measured on each minibatch before its Adam step, and the minibatch that finds it too large is not
stepped: the update ends on the last parameters within the bound, not on one step past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bellmax.config import OnPolicyConfig, require, require_step_size
from bellmax.core.onpolicy import OnPolicyAlgorithm
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.returns import explained_variance, standardize
from bellmax.core.rollout import advantages_and_returns, minibatches, valid_samples


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO-Clip; defaults follow the PPO paper's MuJoCo settings where they apply."""

    algo: ClassVar[str] = "ppo"

    learning_rate: float = 3e-4
    """Adam step size (of policy and value together)."""
    num_envs: int = 8
    n_steps: int = 256
    batch_size: int = 256
    """Minibatch size of the Adam steps."""
    n_epochs: int = 10
    """Passes over each batch."""
    clip_range: float = 0.2
    """eps in clip(r, 1 - eps, 1 + eps)."""
    clip_range_vf: float | None = None
    """Clip V_phi to within this of the rollout's values (None: no value clipping)."""
    ent_coef: float = 0.0
    """c_e, weight of the entropy bonus."""
    vf_coef: float = 0.5
    """c_v, weight of the value loss."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this."""
    target_kl: float | None = None
    """End the update when a minibatch's approximate KL to pi_old, measured before its step, exceeds 1.5
    target_kl; that minibatch is not stepped (SB3 / Spinning Up; None: never stop early)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run's budget (total_steps)."""
    anneal_clip: bool = False
    """Decay clip_range linearly to 0 over the run's budget (total_steps)."""
    normalize_advantages: bool = True
    """Standardize advantages within each minibatch."""
    adam_eps: float = 1e-5
    """Adam's epsilon."""

    def validate(self) -> None:
        super().validate()
        require_step_size("learning_rate", self.learning_rate)
        require(self.n_epochs >= 1, "n_epochs", self.n_epochs, "at least 1")
        require(0 < self.clip_range < 1, "clip_range", self.clip_range, "in (0, 1)")
        require(self.clip_range_vf is None or self.clip_range_vf > 0, "clip_range_vf", self.clip_range_vf,
                "positive or None")
        require(self.ent_coef >= 0, "ent_coef", self.ent_coef, ">= 0")
        require(self.vf_coef >= 0, "vf_coef", self.vf_coef, ">= 0")
        require(self.adam_eps > 0, "adam_eps", self.adam_eps, "positive (e.g. 1e-5)")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.target_kl is None or self.target_kl > 0, "target_kl", self.target_kl, "positive or None")
        self.require_minibatch("batch_size", self.batch_size)


def ppo_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
             new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, entropy: torch.Tensor,
             clip_range: float, clip_range_vf: float | None, vf_coef: float,
             ent_coef: float) -> dict[str, torch.Tensor]:
    """The PPO-Clip loss (to minimize) and its named terms: the loss is
    loss_policy + vf_coef loss_value - ent_coef entropy."""
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    # L_clip = E[min(r A, clip(r, 1 - eps, 1 + eps) A)]
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages)
    loss_policy = -surrogate.mean()
    # L_V = E[(V_phi(s) - R)^2] / 2, optionally the max with the clipped prediction's error
    value_error = (new_values - returns) ** 2
    if clip_range_vf is not None:
        clipped = old_values + (new_values - old_values).clamp(-clip_range_vf, clip_range_vf)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    loss_value = 0.5 * value_error.mean()
    mean_entropy = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # k3 estimator of KL(pi_old || pi_theta), >= 0
        clip_fraction = ((ratio - 1).abs() > clip_range).float().mean()
    return {"loss": loss_policy + vf_coef * loss_value - ent_coef * mean_entropy, "loss_policy": loss_policy,
            "loss_value": loss_value, "entropy": mean_entropy, "approx_kl": approx_kl,
            "clip_fraction": clip_fraction}


class PPO(OnPolicyAlgorithm):
    name = "ppo"
    config_class = PPOConfig
    config: PPOConfig

    def build(self) -> None:
        cfg = self.config
        self.policy, self.value = self.make_policy_and_value()
        self.buffer = self.make_rollout_buffer(cfg.n_steps)
        self.optimizer = Adam(self.trainable_parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "value": self.value}

    def optimizers(self) -> dict[str, Adam]:
        return {"optimizer": self.optimizer}

    # -- one iteration: collect -> advantages -> epochs of minibatch updates ------------------
    def train_iteration(self, max_steps: int) -> dict[str, float]:
        cfg = self.config
        frac = self.progress_remaining()
        lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
        clip_range = cfg.clip_range * frac if cfg.anneal_clip else cfg.clip_range
        self.optimizer.param_groups[0]["lr"] = lr

        self.collect_rollout(self.buffer, self.rollout_length(max_steps), self.value)
        advantages, returns = advantages_and_returns(self.buffer, cfg.gamma, cfg.gae_lambda)
        batch = self.to_device(valid_samples(self.buffer, advantages=advantages, returns=returns))
        metrics = self.update(batch, clip_range)
        metrics["losses/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        metrics["losses/learning_rate"] = lr
        metrics["losses/clip_range"] = clip_range
        return metrics

    def update(self, batch: dict[str, torch.Tensor], clip_range: float) -> dict[str, float]:
        cfg = self.config
        sums: dict[str, float] = {}
        updates, epochs_done = 0, 0
        for _ in range(cfg.n_epochs):
            stop = False
            for values in minibatches(cfg.batch_size, *batch.values()):
                terms = self.minibatch_loss(dict(zip(batch, values)), clip_range)
                # approx_kl is that of the parameters about to be stepped: past the bound, keep them
                if cfg.target_kl is not None and terms["approx_kl"] > 1.5 * cfg.target_kl:
                    stop = True
                    break
                self.optimizer.zero_grad()
                terms["loss"].backward()
                clip_grad_norm(self.optimizer.params, cfg.max_grad_norm)
                self.optimizer.step()
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value.item()
                updates += 1
            epochs_done += 1
            if stop:
                break
        metrics = {f"losses/{k}": v / max(updates, 1) for k, v in sums.items() if k != "loss"}
        metrics["losses/epochs"] = epochs_done
        metrics["losses/updates"] = updates
        return metrics

    def minibatch_loss(self, mb: dict[str, torch.Tensor], clip_range: float) -> dict[str, torch.Tensor]:
        advantages = standardize(mb["advantages"]) if self.config.normalize_advantages else mb["advantages"]
        dist, values = self.policy_and_value(mb["obs"])
        return ppo_loss(
            new_log_prob=self.policy.log_prob(dist, mb["actions"]), old_log_prob=mb["log_probs"],
            advantages=advantages, new_values=values, old_values=mb["values"],
            returns=mb["returns"], entropy=self.policy.entropy(dist), clip_range=clip_range,
            clip_range_vf=self.config.clip_range_vf, vf_coef=self.config.vf_coef, ent_coef=self.config.ent_coef,
        )
