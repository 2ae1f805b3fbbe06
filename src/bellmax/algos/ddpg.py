"""Deep Deterministic Policy Gradient (Lillicrap et al., 2016).

A deterministic actor mu_theta(s) and a critic Q_phi(s, a), both with slowly tracking target
copies (polyak factor tau). From replayed transitions:

    critic:  y = r + gamma (1 - d) Q_phi'(s', mu_theta'(s')),   L_Q = E[(Q_phi(s, a) - y)^2]
    actor:   maximize E[Q_phi(s, mu_theta(s))]   (the deterministic policy gradient)

Exploration adds Gaussian or Ornstein-Uhlenbeck noise to mu_theta(s), scaled to the action
range. TD3 (td3.py) is this file plus its three fixes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from bellmax.config import OffPolicyConfig, require
from bellmax.core.nets import BoundedActor, QNet, frozen, polyak_update
from bellmax.core.offpolicy import OffPolicyAlgorithm
from bellmax.core.optim import Adam


@dataclass
class DDPGConfig(OffPolicyConfig):
    """DDPG; defaults follow the TD3 paper's re-implementation of it (256x256 ReLU nets)."""

    algo: ClassVar[str] = "ddpg"

    learning_rate: float = 1e-3
    """Adam step size of actor and critic."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    learning_starts: int = 10_000
    exploration_noise: float = 0.1
    """Std of the exploration noise, as a fraction of half the action range."""
    noise_type: Literal["gaussian", "ornstein_uhlenbeck"] = "gaussian"
    """Independent Gaussian noise, or temporally correlated Ornstein-Uhlenbeck noise."""
    ou_theta: float = 0.15
    """Mean reversion of the Ornstein-Uhlenbeck process."""
    policy_delay: int = 1
    """Critic updates per actor (and target) update."""

    def validate(self) -> None:
        super().validate()
        require(self.exploration_noise >= 0, "exploration_noise", self.exploration_noise, ">= 0")
        require(0 < self.ou_theta <= 1, "ou_theta", self.ou_theta, "in (0, 1]")
        require(self.policy_delay >= 1, "policy_delay", self.policy_delay, "at least 1")


class DDPG(OffPolicyAlgorithm):
    name = "ddpg"
    config_class = DDPGConfig
    config: DDPGConfig
    supports_discrete = False
    twin_critics = False  # TD3: two critics and the minimum of their targets

    def build(self) -> None:
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.action_box()
        self.actor = BoundedActor(obs_space, action_space, cfg.hidden_sizes)
        self.critics = nn.ModuleList(QNet(obs_space, action_space, cfg.hidden_sizes, nn.ReLU, orthogonal=False)
                                     for _ in range(2 if self.twin_critics else 1))
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.policy = self.actor
        self.actor_optimizer = Adam(self.actor.parameters(), lr=cfg.learning_rate)
        self.critic_optimizer = Adam(self.critics.parameters(), lr=cfg.learning_rate)
        self.updates = 0
        self.ou_noise = np.zeros((self.env.num_envs, *action_space.shape), dtype=np.float32)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics, "actor_target": self.actor_target,
                "critics_target": self.critics_target}

    def optimizers(self) -> dict[str, Adam]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # -- acting -------------------------------------------------------------------------------
    def explore(self, obs: torch.Tensor) -> np.ndarray:
        """a = clip(mu(s) + noise, low, high), noise scaled to half the action range."""
        cfg = self.config
        mu = self.actor(obs).cpu().numpy()
        scale = self.actor.scale.cpu().numpy()
        gaussian = self.rng.normal(0.0, cfg.exploration_noise, size=mu.shape).astype(np.float32)
        if cfg.noise_type == "ornstein_uhlenbeck":  # x <- x - theta x + sigma N(0, 1), reset per episode
            self.ou_noise[self.prev_done] = 0.0
            self.ou_noise = self.ou_noise - cfg.ou_theta * self.ou_noise + gaussian
            noise = self.ou_noise
        else:
            noise = gaussian
        space = self.action_box()
        return np.clip(mu + scale * noise, space.low, space.high).astype(np.float32)

    # -- learning -----------------------------------------------------------------------------
    def target_actions(self, next_obs: torch.Tensor) -> torch.Tensor:
        """a' for the critic target: mu_theta'(s')."""
        return self.actor_target(next_obs)

    def critic_targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """y = r + gamma (1 - d) Q'(s', a'), the minimum over the target critics when twinned."""
        next_actions = self.target_actions(batch["next_obs"])
        next_q = torch.stack([q(batch["next_obs"], next_actions) for q in self.critics_target]).min(0).values
        return batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"]) * next_q  # discounts: gamma^n

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        with torch.no_grad():
            targets = self.critic_targets(batch)
        q_values = [q(batch["obs"], batch["actions"]) for q in self.critics]
        loss_q = sum(((q - targets) ** 2).mean() for q in q_values)
        self.critic_optimizer.zero_grad()
        loss_q.backward()
        self.critic_optimizer.step()
        self.updates += 1
        metrics = {"losses/loss_q": loss_q.item(), "losses/q_values": q_values[0].mean().item()}

        if self.updates % cfg.policy_delay == 0:
            # maximize Q(s, mu(s)): gradient ascent through the critic into the actor
            with frozen(self.critics):
                loss_actor = -self.critics[0](batch["obs"], self.actor(batch["obs"])).mean()
                self.actor_optimizer.zero_grad()
                loss_actor.backward()
            self.actor_optimizer.step()
            polyak_update(self.actor_target, self.actor, cfg.tau)
            polyak_update(self.critics_target, self.critics, cfg.tau)
            metrics["losses/loss_actor"] = loss_actor.item()
        return metrics

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "updates": self.updates, "ou_noise": self.ou_noise}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.updates, self.ou_noise = state["updates"], state["ou_noise"]
