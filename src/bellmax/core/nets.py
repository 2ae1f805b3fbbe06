"""Networks: MLP torsos and the policy heads the lecture uses.

- Categorical policy for Discrete actions: pi(a|s) = softmax(logits(s))_a.
- Diagonal Gaussian policy for Box actions: a ~ N(mu(s), diag(exp(log_std)^2)), with a
  state-independent log_std as in Spinning Up and the PPO paper's MuJoCo setup.
- Value head V(s) and action-value head Q(s, a) regressed on returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from bellmax.errors import BellmaxError


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.Tanh,
        out_gain: float = 1.0) -> nn.Sequential:
    """Linear-activation stack with orthogonal init (sqrt(2) gain inside, `out_gain` at the output)."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2)), activation()]
    layers.append(_orthogonal(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def flat_dim(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise BellmaxError(f"observation/action space {space} is not supported yet (Discrete and Box are)")


class ObsEncoder(nn.Module):
    """Flattens Box observations; one-hot encodes Discrete ones (tabular envs such as GridWorld)."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.discrete_n = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.dim = flat_dim(space)
        self.obs_ndim = 0 if self.discrete_n is not None else len(space.shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.discrete_n is not None:
            return nn.functional.one_hot(obs.long().reshape(-1), self.discrete_n).float().reshape(
                *obs.shape, self.discrete_n)
        batch_shape = obs.shape[: obs.dim() - self.obs_ndim]
        return obs.float().reshape(*batch_shape, self.dim)


class Policy(nn.Module):
    """pi_theta(a|s) for Discrete (categorical) or Box (diagonal Gaussian) action spaces."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes: Sequence[int]):
        super().__init__()
        self.encoder = ObsEncoder(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(action_space, gym.spaces.Box):
            raise BellmaxError(f"action space {action_space} is not supported (Discrete and Box are)")
        out = flat_dim(action_space)
        self.net = mlp(self.encoder.dim, hidden_sizes, out, out_gain=0.01)
        if not self.discrete:
            self.action_shape = action_space.shape
            self.log_std = nn.Parameter(torch.zeros(out))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        out = self.net(self.encoder(obs))
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s), summed over action dimensions for the Gaussian."""
        if self.discrete:
            return dist.log_prob(actions.long())
        return dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy() if self.discrete else dist.entropy().sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        if deterministic:
            return dist.probs.argmax(-1) if self.discrete else dist.mean
        return dist.sample()


class ValueNet(nn.Module):
    """V_phi(s): a scalar per observation."""

    def __init__(self, obs_space: gym.Space, hidden_sizes: Sequence[int]):
        super().__init__()
        self.encoder = ObsEncoder(obs_space)
        self.net = mlp(self.encoder.dim, hidden_sizes, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(obs)).squeeze(-1)


class QNet(nn.Module):
    """Q_phi(s, a): a scalar per (observation, action); discrete actions enter one-hot."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes: Sequence[int]):
        super().__init__()
        self.encoder = ObsEncoder(obs_space)
        self.action_encoder = ObsEncoder(action_space)
        self.net = mlp(self.encoder.dim + self.action_encoder.dim, hidden_sizes, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), self.action_encoder(actions)], dim=-1)
        return self.net(x).squeeze(-1)
