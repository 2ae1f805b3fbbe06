"""Deep Q-Network (Mnih et al., Nature 2015), with the common options: Double DQN, dueling heads.

Q-learning turns the Bellman optimality equation into a regression target: with a replay buffer
of transitions (s, a, r, s', d) and a periodically copied target network Q_target,

    y = r + gamma (1 - d) max_a' Q_target(s', a')                      (DQN)
    y = r + gamma (1 - d) Q_target(s', argmax_a' Q(s', a'))            (Double DQN: the online net
                                                                       picks, the target net rates)
    L = E[ Huber(Q(s, a) - y) ]

Actions are epsilon-greedy with epsilon decaying linearly from exploration_initial to
exploration_final over the first exploration_fraction of training. d is 1 only for true
terminations: after a time-limit truncation the target still bootstraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bellmax.config import OffPolicyConfig, require
from bellmax.core.nets import Actor, NatureCNN, QHead, is_image_space, polyak_update, space_shape
from bellmax.core.offpolicy import OffPolicyAlgorithm
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.replay import (
    FrameStackReplayBuffer,
    PrioritizedFrameStackReplayBuffer,
    PrioritizedReplayBuffer,
    PrioritySampling,
    ReplayBuffer,
)
from bellmax.errors import BellmaxError


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN; defaults are Stable-Baselines3's for classic control."""

    algo: ClassVar[str] = "dqn"

    learning_rate: float = 1e-4
    buffer_size: int = 100_000
    learning_starts: int = 1000
    batch_size: int = 32
    train_freq: int = 4
    tau: float = 1.0
    """1.0: the target network is a hard copy every target_update_interval steps."""
    target_update_interval: int = 1000
    """Environment steps between target-network updates."""
    exploration_initial: float = 1.0
    """epsilon at the start."""
    exploration_final: float = 0.05
    """epsilon after the decay."""
    exploration_fraction: float = 0.1
    """Share of the run's budget (total_steps) over which epsilon decays linearly."""
    max_grad_norm: float = 10.0
    """Clip the global gradient norm to this."""
    double_q: bool = True
    """Double DQN target: the online net picks a', the target net evaluates it."""
    dueling: bool = False
    """Dueling head Q = V + A - mean(A)."""
    prioritized_replay: bool = False
    """Sample transitions in proportion to |TD error|^alpha, with importance weights."""
    priority_alpha: float = 0.6
    """alpha: 0 is uniform sampling, 1 fully proportional."""
    priority_beta: float = 0.4
    """Initial beta of the importance weights (w = (N P(i))^-beta), annealed linearly to 1 over the budget."""
    hidden_sizes: tuple[int, ...] = (64, 64)

    def validate(self) -> None:
        super().validate()
        require(self.target_update_interval >= 1, "target_update_interval", self.target_update_interval, ">= 1")
        for name in ("exploration_initial", "exploration_final", "exploration_fraction"):
            require(0 <= getattr(self, name) <= 1, name, getattr(self, name), "in [0, 1]")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(0 <= self.priority_alpha <= 1, "priority_alpha", self.priority_alpha, "in [0, 1]")
        require(0 <= self.priority_beta <= 1, "priority_beta", self.priority_beta, "in [0, 1]")


def dqn_targets(rewards: torch.Tensor, terminated: torch.Tensor, next_q_online: torch.Tensor,
                next_q_target: torch.Tensor, gamma: float | torch.Tensor, double_q: bool) -> torch.Tensor:
    """y = r + gamma (1 - d) Q_target(s', a*), a* = argmax of the online (double) or target net.
    With n-step transitions r is the n-step return and gamma is gamma^n, per sample."""
    if double_q:
        best = next_q_online.argmax(-1, keepdim=True)
    else:
        best = next_q_target.argmax(-1, keepdim=True)
    return rewards + gamma * (1.0 - terminated) * next_q_target.gather(-1, best).squeeze(-1)


class DQN(OffPolicyAlgorithm):
    name = "dqn"
    config_class = DQNConfig
    config: DQNConfig
    supports_continuous = False

    def build(self) -> None:
        cfg = self.config
        obs_space, action_space = self.env.single_observation_space, self.env.single_action_space
        if not isinstance(action_space, gym.spaces.Discrete):  # MultiDiscrete: no single argmax over actions
            raise BellmaxError(f"{self.name} needs Discrete actions (one Q-value per action), "
                               f"but {cfg.env} has {action_space}")
        self.n_actions = int(action_space.n)

        def make_q() -> QHead:
            if is_image_space(obs_space):
                return QHead(obs_space, self.n_actions, (), cfg.dueling, torso=NatureCNN(obs_space))
            return QHead(obs_space, self.n_actions, cfg.hidden_sizes, cfg.dueling)

        self.q = make_q()
        self.q_target = make_q()
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.policy = _GreedyPolicy(self.q)
        self.optimizer = Adam(self.q.parameters(), lr=cfg.learning_rate)
        self.last_target_update = 0

    def make_replay(self) -> ReplayBuffer | FrameStackReplayBuffer:  # the prioritized variant replaces the uniform one
        cfg = self.config
        if not cfg.prioritized_replay:
            return super().make_replay()
        space = self.env.single_observation_space
        if is_image_space(space):  # Atari: priorities over the frame rings
            return PrioritizedFrameStackReplayBuffer(cfg.buffer_size, self.env.num_envs, space.shape, (),
                                                     gamma=cfg.gamma, n_step=cfg.n_step, alpha=cfg.priority_alpha)
        return PrioritizedReplayBuffer(cfg.buffer_size, space_shape(space), (), obs_dtype=self.replay_obs_dtype(),
                                       action_dtype=np.int64, alpha=cfg.priority_alpha)

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target}

    def optimizers(self) -> dict[str, Adam]:
        return {"q": self.optimizer}

    def epsilon(self) -> float:
        cfg = self.config
        progress = min(1.0, self.global_step / max(1.0, cfg.exploration_fraction * cfg.total_steps))
        return cfg.exploration_initial + progress * (cfg.exploration_final - cfg.exploration_initial)

    def before_sampling(self) -> None:
        """Anneal the importance-weight exponent beta linearly to 1 over the run's budget."""
        if isinstance(self.replay, PrioritySampling):
            progress = min(1.0, self.global_step / self.config.total_steps)
            self.replay.beta = self.config.priority_beta + progress * (1.0 - self.config.priority_beta)

    def train_iteration(self, max_steps: int) -> dict[str, float]:
        metrics = super().train_iteration(max_steps)
        metrics["rollout/epsilon"] = self.epsilon()
        if isinstance(self.replay, PrioritySampling):
            metrics["losses/priority_beta"] = self.replay.beta
        return metrics

    def explore(self, obs: torch.Tensor) -> np.ndarray:
        """epsilon-greedy: a random action with probability epsilon, else argmax_a Q(s, a)."""
        greedy = self.q(obs).argmax(-1).cpu().numpy()
        random_actions = self.rng.integers(self.n_actions, size=len(greedy))
        return np.where(self.rng.random(len(greedy)) < self.epsilon(), random_actions, greedy)

    def gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        with torch.no_grad():
            next_q_target = self.q_target(batch["next_obs"])
            next_q_online = self.q(batch["next_obs"]) if cfg.double_q else next_q_target
            targets = dqn_targets(batch["rewards"], batch["terminated"], next_q_online, next_q_target,
                                  batch["discounts"], cfg.double_q)
        q_taken = self.q(batch["obs"]).gather(-1, batch["actions"].long()[:, None]).squeeze(-1)
        huber = nn.functional.smooth_l1_loss(q_taken, targets, reduction="none")
        if isinstance(self.replay, PrioritySampling):  # prioritized: importance-weighted, new priorities |delta|
            loss = (batch["weights"] * huber).mean()
            self.replay.update_priorities(batch["indices"].cpu().numpy(), (q_taken - targets).detach().cpu().numpy())
        else:
            loss = huber.mean()
        self.optimizer.zero_grad()
        loss.backward()
        clip_grad_norm(self.optimizer.params, cfg.max_grad_norm)  # q's parameters, without walking its modules
        self.optimizer.step()
        if self.global_step - self.last_target_update >= cfg.target_update_interval:
            polyak_update(self.q_target, self.q, cfg.tau)
            self.last_target_update = self.global_step
        return {"losses/loss_q": loss.item(), "losses/q_values": q_taken.mean().item()}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "last_target_update": self.last_target_update}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.last_target_update = state["last_target_update"]


class _GreedyPolicy(Actor):
    """argmax_a Q(s, a) with the interface evaluation expects (`act`)."""

    def __init__(self, q: QHead):
        super().__init__()
        self.q = q

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.q(obs).argmax(-1)

