"""Twin Delayed DDPG (Fujimoto et al., 2018): DDPG (ddpg.py) with three fixes for its
overestimation of Q:

1. Clipped double Q: two critics, and the target uses the smaller of their target values,
       y = r + gamma (1 - d) min_{i=1,2} Q_i'(s', a').
2. Target policy smoothing: a' = clip(mu'(s') + clip(eps, -c, c), low, high), eps ~ N(0, sigma),
   so the critic cannot exploit a sharp peak of Q at one action.
3. Delayed policy updates: the actor and the targets move once every `policy_delay` critic steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bellmax.algos.ddpg import DDPG, DDPGConfig
from bellmax.config import require


@dataclass
class TD3Config(DDPGConfig):
    """TD3; defaults from the paper (delay 2, target noise 0.2 clipped at 0.5)."""

    algo: ClassVar[str] = "td3"

    policy_delay: int = 2
    target_policy_noise: float = 0.2
    """sigma of the target policy smoothing noise, as a fraction of half the action range."""
    target_noise_clip: float = 0.5
    """c: the smoothing noise is clipped to [-c, c] (same units)."""

    def validate(self) -> None:
        super().validate()
        require(self.target_policy_noise >= 0, "target_policy_noise", self.target_policy_noise, ">= 0")
        require(self.target_noise_clip >= 0, "target_noise_clip", self.target_noise_clip, ">= 0")


class TD3(DDPG):
    name = "td3"
    config_class = TD3Config
    config: TD3Config
    twin_critics = True  # fix 1; fix 3 is policy_delay = 2 in the config

    def target_actions(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Fix 2: a' = clip(mu'(s') + clip(eps, -c, c), low, high)."""
        cfg, actor = self.config, self.actor_target
        mu = actor(next_obs)
        eps = (torch.randn_like(mu) * cfg.target_policy_noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
        return torch.max(torch.min(mu + actor.scale * eps, actor.bias + actor.scale), actor.bias - actor.scale)
