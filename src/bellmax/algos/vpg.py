"""Vanilla policy gradient (the lecture's Algorithm 1), with every weighting from the slides.

The log-derivative trick gives

    grad J(pi_theta) = E_tau[ sum_t grad log pi_theta(a_t|s_t) Psi_t ]

and the choice of the weight Psi_t is the whole story of this file (lecture options 1-6, plus GAE):

    total_return            Psi_t = R(tau) = sum_t' gamma^t' r_t'          (option 1)
    reward_to_go            Psi_t = R_t = sum_{t'>=t} gamma^(t'-t) r_t'    (option 2)
    reward_to_go_baseline   Psi_t = R_t - V(s_t)                          (option 3, b = V)
    q_estimate              Psi_t = Q_phi(s_t, a_t)                       (option 4)
    advantage               Psi_t = Q_phi(s_t, a_t) - V_phi(s_t)          (option 5)
    td_residual             Psi_t = r_t + gamma V(s_{t+1}) - V(s_t)       (option 6)
    gae                     Psi_t = sum_l (gamma lambda)^l delta_{t+l}    (GAE, Schulman et al.)

The slides write option 2 with sum_{t'=1}^T and option 3 with b(s_t'); the math they derive is
the reward from time t on, sum_{t'=t}^T, and a baseline of the current state, b(s_t).

Each iteration: collect a batch with the current policy (step 3), compute rewards-to-go (4) and
the weights with the current critics (5), take one gradient step on the policy (6-7), then fit
V_phi (and Q_phi where used) by regression on the rewards-to-go (8). On image or board
observations the policy and V_phi each get their own CNN torso, so the critic regression never
moves the policy (and the policy step never moves V_phi).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from bellmax.config import OnPolicyConfig, require, require_step_size
from bellmax.core.nets import ACTIVATIONS, QNet
from bellmax.core.onpolicy import OnPolicyAlgorithm
from bellmax.core.optim import Adam
from bellmax.core.returns import discounted_returns, explained_variance, gae, segment_start_values, td_residuals
from bellmax.core.rollout import minibatches

Weighting = Literal[
    "total_return", "reward_to_go", "reward_to_go_baseline", "q_estimate", "advantage", "td_residual", "gae"
]


@dataclass
class VPGConfig(OnPolicyConfig):
    """Vanilla policy gradient; defaults solve CartPole-v1 in well under a minute on one CPU core."""

    algo: ClassVar[str] = "vpg"
    renamed: ClassVar[dict[str, str | None]] = {"entropy_coef": "ent_coef"}

    learning_rate: float = 5e-3
    """Adam step size of the policy."""
    num_envs: int = 8
    n_steps: int = 250
    weighting: Weighting = "gae"
    """Psi_t in grad log pi(a_t|s_t) Psi_t: which estimator weights the log-likelihood."""
    value_learning_rate: float = 3e-3
    """Adam step size of the critics V_phi and Q_phi."""
    value_epochs: int = 5
    """Passes over the batch when regressing the critics on the rewards-to-go."""
    batch_size: int = 250
    """Minibatch size of the critic regression."""
    scale_weights: bool = True
    """Divide Psi by its standard deviation (no centering, so each weighting keeps its own baseline)."""
    ent_coef: float = 0.0
    """c_e, weight of the entropy bonus c_e H[pi(.|s)] added to the objective."""

    def validate(self) -> None:
        super().validate()
        require_step_size("learning_rate", self.learning_rate)
        require_step_size("value_learning_rate", self.value_learning_rate)
        require(self.value_epochs >= 0, "value_epochs", self.value_epochs, ">= 0")
        require(self.ent_coef >= 0, "ent_coef", self.ent_coef, ">= 0")
        self.require_minibatch("batch_size", self.batch_size)


class VPG(OnPolicyAlgorithm):
    name = "vpg"
    config_class = VPGConfig
    config: VPGConfig

    def build(self) -> None:
        cfg, env = self.config, self.env
        obs_space, action_space = env.single_observation_space, env.single_action_space
        self.policy, self.value = self.make_policy_and_value(share_torso=False)
        activation = ACTIVATIONS[cfg.activation]
        self.q_value = QNet(obs_space, action_space, cfg.hidden_sizes, activation) if self.uses_q else None
        self.policy_optimizer = Adam(self.policy.parameters(), lr=cfg.learning_rate)
        critics = list(self.value.parameters()) + (list(self.q_value.parameters()) if self.q_value else [])
        self.value_optimizer = Adam(critics, lr=cfg.value_learning_rate)
        self.buffer = self.make_rollout_buffer(cfg.n_steps)

    @property
    def uses_q(self) -> bool:
        return self.config.weighting in ("q_estimate", "advantage")

    def modules(self) -> dict[str, torch.nn.Module]:
        modules = {"policy": self.policy, "value": self.value}
        if self.q_value is not None:
            modules["q_value"] = self.q_value
        return modules

    def optimizers(self) -> dict[str, Adam]:
        return {"policy": self.policy_optimizer, "value": self.value_optimizer}

    # -- one iteration: collect -> weights -> policy step -> critic regression ----------------
    def train_iteration(self, max_steps: int) -> dict[str, float]:
        self.collect_rollout(self.buffer, self.rollout_length(max_steps), self.value)
        b = self.buffer
        rewards, values, terminated, valid, obs, actions = (
            b.view(name).to(self.device) for name in ("rewards", "values", "terminated", "valid", "obs", "actions"))
        next_values, cut = b.next_values().to(self.device), b.cut().to(self.device)

        reward_to_go = discounted_returns(rewards, next_values, terminated, cut, self.config.gamma)
        weights = self.policy_weights(obs, actions, rewards, values, next_values, terminated, cut, reward_to_go)

        metrics = self.update_policy(obs[valid], actions[valid], weights[valid])
        metrics.update(self.fit_critics(obs[valid], actions[valid], reward_to_go[valid]))
        metrics["losses/explained_variance"] = explained_variance(values[valid], reward_to_go[valid])
        return metrics

    def policy_weights(self, obs, actions, rewards, values, next_values, terminated, cut, reward_to_go):
        """Psi_t for every step, by the configured weighting (all computed with the current critics)."""
        gamma, w = self.config.gamma, self.config.weighting
        if w == "total_return":
            return segment_start_values(reward_to_go, cut)
        if w == "reward_to_go":
            return reward_to_go
        if w == "reward_to_go_baseline":
            return reward_to_go - values
        if w == "td_residual":
            return td_residuals(rewards, values, next_values, terminated, gamma)
        if w == "gae":
            return gae(rewards, values, next_values, terminated, cut, gamma, self.config.gae_lambda)
        assert self.q_value is not None  # q_estimate and advantage: uses_q, so build() made Q_phi
        with torch.no_grad():
            q = self.q_value(obs, actions)
        return q if w == "q_estimate" else q - values  # option 4 / option 5: A = Q - V

    def update_policy(self, obs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor) -> dict[str, float]:
        """One ascent step on g = mean_t grad log pi(a_t|s_t) Psi_t (mean over steps: the lecture's
        1/|D| sum over trajectories differs by a constant factor that the step size absorbs)."""
        if self.config.scale_weights:
            weights = weights / (weights.std() + 1e-8)
        dist = self.policy.distribution(obs)
        log_prob = self.policy.log_prob(dist, actions)
        entropy = self.policy.entropy(dist).mean()
        loss_policy = -(log_prob * weights).mean()
        loss = loss_policy - self.config.ent_coef * entropy
        self.policy_optimizer.zero_grad()
        loss.backward()
        self.policy_optimizer.step()
        return {"losses/loss_policy": loss_policy.item(), "losses/entropy": entropy.item()}

    def fit_critics(self, obs: torch.Tensor, actions: torch.Tensor, reward_to_go: torch.Tensor) -> dict[str, float]:
        """phi <- argmin 1/|D|T sum (V_phi(s_t) - R_t)^2 (and the same for Q_phi(s_t, a_t))."""
        total, updates = 0.0, 0
        for _ in range(self.config.value_epochs):
            for obs_mb, actions_mb, target_mb in minibatches(self.config.batch_size, obs, actions, reward_to_go):
                loss = ((self.value(obs_mb) - target_mb) ** 2).mean()
                if self.q_value is not None:
                    loss = loss + ((self.q_value(obs_mb, actions_mb) - target_mb) ** 2).mean()
                self.value_optimizer.zero_grad()
                loss.backward()
                self.value_optimizer.step()
                total += loss.item()
                updates += 1
        return {"losses/loss_value": total / max(updates, 1)}
