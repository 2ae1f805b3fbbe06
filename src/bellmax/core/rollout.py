"""On-policy rollout storage: the RolloutBuffer of n_steps x num_envs transitions, its
advantages and minibatches, and the EpisodeTracker of raw training returns (both families use it).
The estimators themselves are pure functions in `core/returns.py`."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from bellmax.core.returns import gae


@dataclass
class EpisodeTracker:
    """Raw (undiscounted, unnormalized) training returns and lengths per environment."""

    num_envs: int
    window: int = 100
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)
    recent_returns: deque = field(init=False)
    recent_lengths: deque = field(init=False)
    episodes: int = 0

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.recent_returns = deque(maxlen=self.window)
        self.recent_lengths = deque(maxlen=self.window)

    def update(self, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray) -> list[float]:
        """Add one vector step; return the returns of the episodes that ended in it."""
        self.returns += rewards * valid
        self.lengths += valid
        finished = [float(r) for r in self.returns[done]]
        for r, n in zip(self.returns[done], self.lengths[done]):
            self.recent_returns.append(float(r))
            self.recent_lengths.append(int(n))
        self.episodes += int(done.sum())
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return finished

    def mean_return(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    def mean_length(self) -> float | None:
        return float(np.mean(self.recent_lengths)) if self.recent_lengths else None


class RolloutBuffer:
    """n_steps x num_envs transitions of the current policy, for on-policy algorithms.

    obs: (T, N, *obs_shape); actions: (T, N, *act_shape); rewards, values, terminated,
    truncated, valid: (T, N). `valid` is False for the filler step that follows an episode end
    under NEXT_STEP autoreset (its action was ignored by the env): losses skip it. It lives in CPU
    memory whatever the networks' device (it is written through NumPy views every step).
    """

    def __init__(self, n_steps: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 obs_dtype: torch.dtype = torch.float32, action_dtype: torch.dtype = torch.float32):
        self.n_steps, self.num_envs = n_steps, num_envs
        shape, cpu = (n_steps, num_envs), torch.device("cpu")
        self.obs = torch.zeros((*shape, *obs_shape), dtype=obs_dtype, device=cpu)
        self.actions = torch.zeros((*shape, *action_shape), dtype=action_dtype, device=cpu)
        self.log_probs = torch.zeros(shape, device=cpu)
        self.rewards = torch.zeros(shape, device=cpu)
        self.values = torch.zeros(shape, device=cpu)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=cpu)
        self.truncated = torch.zeros(shape, dtype=torch.bool, device=cpu)
        self.valid = torch.ones(shape, dtype=torch.bool, device=cpu)
        self.last_value = torch.zeros(num_envs, device=cpu)
        self.length = n_steps  # steps filled in this rollout (the last rollout of a run may be shorter)

    def numpy(self) -> dict[str, np.ndarray]:
        """NumPy arrays sharing memory with the stored tensors (for fast writes while collecting)."""
        names = ("obs", "actions", "log_probs", "rewards", "values", "terminated", "truncated", "valid")
        return {name: getattr(self, name).numpy() for name in names}

    def view(self, name: str) -> torch.Tensor:
        return getattr(self, name)[: self.length]

    def next_values(self) -> torch.Tensor:
        """V(s_{t+1}) for t < T-1 from the stored values, V(s_T) from the final bootstrap."""
        values = self.view("values")
        return torch.cat([values[1:], self.last_value[None]], dim=0)

    def cut(self) -> torch.Tensor:
        cut = self.view("terminated") | self.view("truncated") | ~self.view("valid")
        cut[-1] = True
        return cut


def advantages_and_returns(buffer: RolloutBuffer, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages of a filled buffer and the value targets R_t = A_t + V(s_t)."""
    values = buffer.view("values")
    advantages = gae(buffer.view("rewards"), values, buffer.next_values(), buffer.view("terminated"),
                     buffer.cut(), gamma, lam)
    return advantages, advantages + values


def minibatches(batch_size: int, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of shuffled minibatches of equally long tensors: one random permutation, one
    gather per tensor, then consecutive views of `batch_size` rows (the last may be shorter)."""
    perm = torch.randperm(tensors[0].shape[0])
    return zip(*(t[perm].split(batch_size) for t in tensors))


def valid_samples(buffer: RolloutBuffer, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
    """The buffer's real transitions (NEXT_STEP filler steps dropped), flattened over time and
    envs: obs, actions, log_probs, values and any (T, N) `extra` arrays such as advantages."""
    valid = buffer.view("valid")
    names = ("obs", "actions", "log_probs", "values")
    samples = {name: buffer.view(name)[valid] for name in names}
    samples.update({name: array[valid] for name, array in extra.items()})
    return samples
