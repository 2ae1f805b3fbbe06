"""Networks: MLP torsos and the policy heads the lecture uses.

- Categorical policy for Discrete actions: pi(a|s) = softmax(logits(s))_a.
- Diagonal Gaussian policy for Box actions: a ~ N(mu(s), diag(exp(log_std)^2)), with a
  state-independent log_std as in Spinning Up and the PPO paper's MuJoCo setup.
- Value head V(s) and action-value head Q(s, a) regressed on returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeGuard, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal, kl_divergence, register_kl
from torch.types import _size

from bellmax.core.resources import check_fits_in_memory
from bellmax.errors import BellmaxError

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.Tanh,
        out_gain: float = 1.0, orthogonal: bool = True) -> nn.Sequential:
    """Linear-activation stack with orthogonal init (sqrt(2) gain inside, `out_gain` at the output),
    or with PyTorch's default Linear init when `orthogonal` is False."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    weights = sum((a + 1) * b for a, b in zip(sizes, [*hidden_sizes, out_dim]))
    # float32 parameters, their gradients and Adam's two moments
    check_fits_in_memory(16 * weights, f"an MLP of widths {tuple(hidden_sizes)} ({weights:,} weights)",
                         "use smaller --hidden-sizes")
    for a, b in zip(sizes[:-1], sizes[1:]):
        layer = nn.Linear(a, b)
        layers += [_orthogonal(layer, math.sqrt(2)) if orthogonal else layer, activation()]
    out = nn.Linear(sizes[-1], out_dim)
    layers.append(_orthogonal(out, out_gain) if orthogonal else out)
    return nn.Sequential(*layers)


_Layer = TypeVar("_Layer", nn.Linear, nn.Conv2d)


def _orthogonal(layer: _Layer, gain: float) -> _Layer:
    nn.init.orthogonal_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def flat_dim(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(space.nvec.sum())
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise BellmaxError(f"observation/action space {space} is not supported yet (Discrete and Box are)")


def space_shape(space: gym.Space) -> tuple[int, ...]:
    """The shape of one element of `space` (every space bellmax supports has one; Discrete's is ())."""
    if space.shape is None:
        raise BellmaxError(f"observation/action space {space} is not supported (Discrete, MultiDiscrete and Box are)")
    return space.shape


class Encoder(nn.Module):
    """A torso from observations to features: (*batch, *obs_shape) -> (*batch, dim)."""

    dim: int


class ObsEncoder(Encoder):
    """Flattens Box observations; one-hot encodes Discrete ones (tabular envs such as GridWorld)."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.discrete_n = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.nvec = [int(n) for n in space.nvec] if isinstance(space, gym.spaces.MultiDiscrete) else None
        self.dim = flat_dim(space)
        self.obs_ndim = 0 if self.discrete_n is not None else len(space_shape(space))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.discrete_n is not None:
            return nn.functional.one_hot(obs.long().reshape(-1), self.discrete_n).float().reshape(
                *obs.shape, self.discrete_n)
        if self.nvec is not None:  # one one-hot block per dimension
            return torch.cat([nn.functional.one_hot(x.long(), n).float()
                              for x, n in zip(obs.unbind(-1), self.nvec)], dim=-1)
        batch_shape = obs.shape[: obs.dim() - self.obs_ndim]
        return obs.float().reshape(*batch_shape, self.dim)


class NatureCNN(Encoder):
    """The DQN Nature paper's torso: 3 conv layers and a 512-unit layer on (C, 84, 84) uint8 frames,
    or on (H, W, C) images (CarRacing's 96x96x3: a last axis of 1, 3 or 4 channels after a larger
    first one), which it reads as (C, H, W) without a copy.

    The convolutions run in the channels-last layout (N, H, W, C in memory; shapes unchanged),
    which oneDNN's CPU kernels prefer: a DQN gradient step on 32 frame stacks takes 6-14% less time
    on one core than in PyTorch's default layout (benchmarks/cnn_layout.py)."""

    def __init__(self, obs_space: gym.spaces.Box, features: int = 512):
        super().__init__()
        shape = obs_space.shape
        self.height_width_channels = shape[-1] in (1, 3, 4) and shape[0] > 4
        channels, height, width = (shape[2], shape[0], shape[1]) if self.height_width_channels else shape
        if min(height, width) < 36:  # 8x8 stride 4, then 4x4 stride 2, then 3x3 leave nothing below 36
            raise BellmaxError(f"image observations of shape {shape} are too small for the Nature CNN (at least "
                               "36x36 pixels); resize them (gymnasium.wrappers.ResizeObservation) or flatten them "
                               "(FlattenObservation) for an MLP")
        self.net = nn.Sequential(
            _orthogonal(nn.Conv2d(channels, 32, 8, stride=4), math.sqrt(2)), nn.ReLU(),
            _orthogonal(nn.Conv2d(32, 64, 4, stride=2), math.sqrt(2)), nn.ReLU(),
            _orthogonal(nn.Conv2d(64, 64, 3, stride=1), math.sqrt(2)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.net(torch.zeros(1, channels, height, width)).shape[1]
        self.head = nn.Sequential(_orthogonal(nn.Linear(n_flat, features), math.sqrt(2)), nn.ReLU())
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
        self.dim = features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch_shape = obs.shape[:-3]
        frames = obs.reshape(-1, *obs.shape[-3:])
        if self.height_width_channels:  # (N, H, W, C) seen as (N, C, H, W): already the channels-last layout
            frames = frames.permute(0, 3, 1, 2)
        frames = frames.to(torch.float32, memory_format=torch.channels_last)
        x = frames / 255.0  # out of place: float frames passed in (`to` may return them) stay untouched
        return self.head(self.net(x)).reshape(*batch_shape, self.dim)


class GridCNN(Encoder):
    """A torso for board games seen as planes (C, H, W) of small floats, one channel per kind of
    object (the Bomber arena): two 3x3 convolutions that keep the board's resolution, a strided one,
    and a 128-unit layer. Small boards need no 8x8 stride-4 filters, which would skip whole cells;
    these widths train about three times as fast as (32, 64, 64) and 256 units on a CPU, and learn
    the duel as well."""

    def __init__(self, obs_space: gym.spaces.Box, widths: tuple[int, int, int] = (16, 32, 32), features: int = 128):
        super().__init__()
        channels = obs_space.shape[0]
        self.net = nn.Sequential(
            _orthogonal(nn.Conv2d(channels, widths[0], 3, padding=1), math.sqrt(2)), nn.ReLU(),
            _orthogonal(nn.Conv2d(widths[0], widths[1], 3, padding=1), math.sqrt(2)), nn.ReLU(),
            _orthogonal(nn.Conv2d(widths[1], widths[2], 3, stride=2, padding=1), math.sqrt(2)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.net(torch.zeros(1, *obs_space.shape)).shape[1]
        self.head = nn.Sequential(_orthogonal(nn.Linear(n_flat, features), math.sqrt(2)), nn.ReLU())
        self.dim = features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch_shape = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float()
        return self.head(self.net(x)).reshape(*batch_shape, self.dim)


def is_grid_space(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    """Board planes (C, H, W) of floats on a small board: the GridCNN's input."""
    return (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype != np.uint8
            and max(space.shape[1:]) <= 32)


def is_image_space(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class Actor(nn.Module):
    """A network that acts: `act(obs, deterministic)` gives the actions that `Algorithm.predict`
    and evaluation use."""

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        raise NotImplementedError


class Policy(Actor):
    """pi_theta(a|s): categorical for Discrete, independent categoricals for MultiDiscrete,
    diagonal Gaussian for Box actions. `torso` (e.g. a NatureCNN shared with the value net)
    replaces the default observation encoder."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes: Sequence[int],
                 torso: Encoder | None = None, activation: type[nn.Module] = nn.Tanh, log_std_init: float = 0.0):
        super().__init__()
        self.encoder = torso if torso is not None else ObsEncoder(obs_space)
        self.kind = _action_kind(action_space)
        self.discrete = self.kind != "box"
        out = flat_dim(action_space)  # a logit per action (per dimension's action), or the Gaussian's mean
        if isinstance(action_space, gym.spaces.MultiDiscrete):
            self.nvec = [int(n) for n in action_space.nvec]
        elif self.kind == "box":
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))
        self.net = mlp(self.encoder.dim, hidden_sizes, out, activation, out_gain=0.01)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return self.distribution_from(self.encoder(obs))

    def distribution_from(self, features: torch.Tensor) -> Distribution:
        """pi(.|s) from the encoder's features of s (a torso shared with V computes them once)."""
        out = self.net(features)
        if self.kind == "discrete":
            return Categorical(logits=out, validate_args=False)
        if self.kind == "multi_discrete":
            return MultiCategorical(out, self.nvec)
        return Normal(out, self.log_std.exp().expand_as(out), validate_args=False)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s), summed over action dimensions (Gaussian; MultiCategorical sums itself)."""
        if self.kind == "box":
            return dist.log_prob(actions).sum(-1)
        return dist.log_prob(actions.long())

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy().sum(-1) if self.kind == "box" else dist.entropy()

    def kl(self, old: Distribution, new: Distribution) -> torch.Tensor:
        """KL(old || new) per state, summed over action dimensions (MultiCategorical sums itself)."""
        kl = kl_divergence(old, new)
        return kl.sum(-1) if self.kind == "box" else kl

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a ~ pi(.|s), log pi(a|s)) for acting in rollouts. For the Gaussian this is written out,
        a = mu + sigma eps and log N(a; mu, sigma) = sum_i -eps_i^2 / 2 - log sigma_i - log(2 pi) / 2,
        because building a torch `Normal` for every vector step costs a fifth of the policy's time;
        the update still uses `distribution` (tests check the two agree)."""
        return self.sample_from(self.encoder(obs))

    def sample_from(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` from the encoder's features. For Discrete actions this is what torch's
        `Categorical(logits=...)` computes, written out (the same numbers and the same draw from
        the RNG), without building the distribution object every vector step."""
        if self.kind == "multi_discrete":
            dist = self.distribution_from(features)
            actions = dist.sample()
            return actions, self.log_prob(dist, actions)
        if self.kind == "discrete":
            logits = self.net(features)
            log_pi = logits - logits.logsumexp(-1, keepdim=True)  # log pi(.|s)
            actions = torch.multinomial(log_pi.softmax(-1).reshape(-1, log_pi.shape[-1]), 1, True)
            actions = actions.reshape(log_pi.shape[:-1])
            return actions, log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        mean = self.net(features)
        eps = torch.randn_like(mean)
        log_prob = (-0.5 * eps.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        return mean + self.log_std.exp() * eps, log_prob

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if deterministic and self.kind == "discrete":  # argmax_a pi(a|s) = argmax_a logits(s)_a: no distribution
            return self.net(self.encoder(obs)).argmax(-1)
        dist = self.distribution(obs)
        return dist.mode if deterministic else dist.sample()  # mode: argmax_a pi(a|s) (per dimension), or mu(s)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _action_kind(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        return "multi_discrete"
    if isinstance(space, gym.spaces.Box):
        return "box"
    raise BellmaxError(f"action space {space} is not supported (Discrete, MultiDiscrete and Box are)")


class MultiCategorical(Distribution):
    """Independent categoricals over the dimensions of a MultiDiscrete action; log-probs,
    entropies and KL divergences add up."""

    def __init__(self, logits: torch.Tensor, nvec: list[int]):
        self.dists = [Categorical(logits=chunk, validate_args=False) for chunk in logits.split(nvec, dim=-1)]
        super().__init__(logits.shape[:-1], torch.Size([len(nvec)]), validate_args=False)

    def sample(self, sample_shape: _size = ()) -> torch.Tensor:
        return torch.stack([d.sample(sample_shape) for d in self.dists], dim=-1)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([d.probs.argmax(-1) for d in self.dists], dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return sum(d.log_prob(a) for d, a in zip(self.dists, value.unbind(-1)))

    def entropy(self) -> torch.Tensor:
        return sum(d.entropy() for d in self.dists)


@register_kl(MultiCategorical, MultiCategorical)
def _kl_multi_categorical(p: MultiCategorical, q: MultiCategorical) -> torch.Tensor:
    """KL(p || q) = sum_i KL(p_i || q_i) over the independent dimensions (at least one, so a tensor)."""
    return cast(torch.Tensor, sum(kl_divergence(p_i, q_i) for p_i, q_i in zip(p.dists, q.dists)))


class ValueNet(nn.Module):
    """V_phi(s): a scalar per observation."""

    def __init__(self, obs_space: gym.Space, hidden_sizes: Sequence[int], torso: Encoder | None = None,
                 activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.encoder = torso if torso is not None else ObsEncoder(obs_space)
        self.net = mlp(self.encoder.dim, hidden_sizes, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.encoder(obs))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """V(s) from the encoder's features of s."""
        return self.net(features).squeeze(-1)


class QNet(nn.Module):
    """Q_phi(s, a): a scalar per (observation, action); discrete actions enter one-hot."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes: Sequence[int],
                 activation: type[nn.Module] = nn.Tanh, orthogonal: bool = True):
        super().__init__()
        self.encoder = ObsEncoder(obs_space)
        self.action_encoder = ObsEncoder(action_space)
        self.net = mlp(self.encoder.dim + self.action_encoder.dim, hidden_sizes, 1, activation, orthogonal=orthogonal)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), self.action_encoder(actions)], dim=-1)
        return self.net(x).squeeze(-1)


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, `module`'s parameters take no gradient (restored afterwards). For an
    actor loss through a critic, Q(s, mu(s)): the gradient still flows through the critic into
    the action, but the critic's own weight gradients, which the actor step would throw away,
    are never computed (a sixth of an update's matrix products in SAC)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_target <- tau theta_online + (1 - tau) theta_target (tau = 1: hard copy)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


class QHead(nn.Module):
    """Q(s, .) for discrete actions: one output per action; optionally dueling,
    Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al., 2016)."""

    def __init__(self, obs_space: gym.Space, n_actions: int, hidden_sizes: Sequence[int], dueling: bool = False,
                 torso: Encoder | None = None):
        super().__init__()
        self.encoder = torso if torso is not None else ObsEncoder(obs_space)
        self.dueling = dueling
        if dueling:
            self.value = mlp(self.encoder.dim, hidden_sizes, 1, nn.ReLU)
            self.advantage = mlp(self.encoder.dim, hidden_sizes, n_actions, nn.ReLU)
        else:
            self.net = mlp(self.encoder.dim, hidden_sizes, n_actions, nn.ReLU)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.encoder(obs)
        if not self.dueling:
            return self.net(x)
        advantage = self.advantage(x)
        return self.value(x) + advantage - advantage.mean(-1, keepdim=True)


class BoundedActor(Actor):
    """Deterministic mu_theta(s) for DDPG/TD3, squashed into the Box: low + (tanh(.) + 1)/2 (high - low).

    PyTorch's default Linear init, as in the TD3 authors' code and SB3: its smaller weights start mu
    nearer the middle of the Box, where tanh has slope for the critic's gradient (on HalfCheetah
    observations mean |mu| about 0.3 of the half-range, against 0.5 with the orthogonal sqrt(2) init
    of the policy-gradient nets, which also learned worse in TD3: docs/BENCHMARKS.md)."""

    scale: torch.Tensor  # buffers: (high - low) / 2 and (high + low) / 2
    bias: torch.Tensor

    def __init__(self, obs_space: gym.Space, action_space: gym.spaces.Box, hidden_sizes: Sequence[int]):
        super().__init__()
        self.encoder = ObsEncoder(obs_space)
        self.net = mlp(self.encoder.dim, hidden_sizes, int(np.prod(action_space.shape)), nn.ReLU, orthogonal=False)
        self.register_buffer("scale", torch.as_tensor((action_space.high - action_space.low) / 2, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((action_space.high + action_space.low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.bias + self.scale * torch.tanh(self.net(self.encoder(obs)))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(obs)


class SquashedGaussianActor(Actor):
    """SAC's policy: u ~ N(mu(s), sigma(s)^2), a = bias + scale tanh(u). Its log-density is that of
    the normalized action tanh(u) in [-1, 1]^d, log pi = log N(u) - sum_i log(1 - tanh(u_i)^2), as in
    the SAC paper (appendix C), Stable-Baselines3 and Spinning Up: the Box's own scale adds the
    constant -sum_i log(scale_i), which would shift the entropy that alpha tunes to -dim(A), so the
    same policy would get a different alpha on [-2, 2] (Pendulum) than on [-1, 1]. (CleanRL keeps
    the scale term.)"""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    scale: torch.Tensor  # buffers: (high - low) / 2 and (high + low) / 2
    bias: torch.Tensor

    def __init__(self, obs_space: gym.Space, action_space: gym.spaces.Box, hidden_sizes: Sequence[int]):
        super().__init__()
        dim = int(np.prod(action_space.shape))
        self.encoder = ObsEncoder(obs_space)
        self.torso = mlp(self.encoder.dim, hidden_sizes[:-1], hidden_sizes[-1], nn.ReLU)
        self.mean = nn.Linear(hidden_sizes[-1], dim)
        self.log_std = nn.Linear(hidden_sizes[-1], dim)
        self.register_buffer("scale", torch.as_tensor((action_space.high - action_space.low) / 2, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((action_space.high + action_space.low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.torso(self.encoder(obs)))
        log_std = self.log_std(h).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        return self.mean(h), log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, log pi(a|s)) with a reparameterized, so gradients flow through the sample; log pi is
        measured in the normalized action space [-1, 1]^d (the class docstring says why)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return self.squash(u), squashed_log_prob(u, mean, log_std)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.bias + self.scale * torch.tanh(u)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        mean, log_std = self(obs)
        return self.squash(mean if deterministic else mean + log_std.exp() * torch.randn_like(mean))


def squashed_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(y) for y = tanh(u) in [-1, 1], u ~ N(mean, exp(log_std)^2), summed over dimensions:
    log N(u) - sum_i log(1 - tanh(u_i)^2), the tanh Jacobian only (no action-scale term).

    log(1 - tanh(u)^2) is computed as 2 (log 2 - u - softplus(-2u)), exact and stable for large |u|.
    """
    log_normal = Normal(mean, log_std.exp(), validate_args=False).log_prob(u)
    log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (log_normal - log_det).sum(-1)
