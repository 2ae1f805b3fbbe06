"""Replay buffers for the off-policy family: a flat ring of transitions, n-step transitions,
the Atari frame-ring buffer that stores each frame once, and proportional prioritized replay
over either (a sum tree)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import torch


class SavedAsTensors:
    """Pickles a buffer's NumPy arrays as torch tensors that share their memory, so that
    `torch.save` writes them to the checkpoint as raw storages, straight from memory, instead of
    into its pickle. A pickle of that protocol cannot hold an array over 4 GiB (a 1M-frame Atari
    replay is 6.6 GiB) and would first copy every array into it. Loading turns them back into
    arrays without a copy; checkpoints that pickled the arrays themselves load as before."""

    def __getstate__(self) -> dict[str, Any]:
        state, as_tensors = dict(vars(self)), []
        for key, value in state.items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # the kinds torch stores
                state[key] = torch.from_numpy(value)
                as_tensors.append(key)
        state["_saved_as_tensors"] = as_tensors
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for key in state.pop("_saved_as_tensors", []):
            state[key] = state[key].numpy()
        self.__dict__.update(state)

    @property
    def nbytes(self) -> int:
        """Memory the buffer takes once full: its arrays (and those of buffers it holds, a SumTree)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray | SavedAsTensors))


class Replay(SavedAsTensors):
    """What the off-policy loop uses of a replay buffer: `add` one vector step, `sample` a batch."""

    def __len__(self) -> int:
        raise NotImplementedError

    def add(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Add the valid rows of one vector step; return the entries that now hold them."""
        raise NotImplementedError

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ReplayBuffer(Replay):
    """A ring buffer of transitions (s, a, r, s', terminated) for off-policy learning.

    Stored as NumPy arrays of `capacity` rows; each vector step adds one row per environment whose
    step was a real transition (the NEXT_STEP autoreset filler is skipped), and s' is the true
    next observation (the final one at an episode end). `terminated` is True only for true ends:
    a time-limit truncation is stored with terminated False, so its target bootstraps from V(s').
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 obs_dtype: npt.DTypeLike = np.float32, action_dtype: npt.DTypeLike = np.float32):
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)  # gamma^k of an n-step transition
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, valid: np.ndarray, done: np.ndarray | None = None,
            discounts: np.ndarray | float = 0.99) -> np.ndarray:
        """Add the valid rows of one vector step (arrays with a leading num_envs axis); returns
        the rows that now hold them.

        `discounts` is what multiplies the bootstrap in the target: gamma for one-step
        transitions, gamma^k for k-step ones (see NStepAccumulator)."""
        discounts = np.broadcast_to(np.asarray(discounts, dtype=np.float32), (len(valid),))
        added = []
        for i in np.flatnonzero(valid):
            row = self.pos
            self.obs[row], self.next_obs[row] = obs[i], next_obs[i]
            self.actions[row], self.rewards[row], self.terminated[row] = actions[i], rewards[i], terminated[i]
            self.discounts[row] = discounts[i]
            added.append(row)
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
        return np.asarray(added, dtype=np.int64)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A uniform minibatch as tensors: obs, actions, rewards, next_obs, terminated."""
        idx = rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.as_tensor(self.obs[idx]), "actions": torch.as_tensor(self.actions[idx]),
            "rewards": torch.as_tensor(self.rewards[idx]), "next_obs": torch.as_tensor(self.next_obs[idx]),
            "terminated": torch.as_tensor(self.terminated[idx]), "discounts": torch.as_tensor(self.discounts[idx]),
        }


class NStepAccumulator:
    """Turns one-step transitions into n-step ones, per environment:

        (s_t, a_t, R = r_t + gamma r_{t+1} + ... + gamma^(k-1) r_{t+k-1}, s_{t+k}, d, gamma^k)

    with k = n, or fewer when the episode ends first (then every pending transition is emitted
    with the final state; d is 1 only for a true termination, so a time-limit truncation still
    bootstraps from the final state with gamma^k)."""

    def __init__(self, num_envs: int, n: int, gamma: float):
        self.n, self.gamma = n, gamma
        self.pending: list[deque] = [deque() for _ in range(num_envs)]

    def step(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
             terminated: np.ndarray, valid: np.ndarray, done: np.ndarray) -> list[tuple]:
        """Feed one vector step; return the n-step transitions that are complete:
        (obs, action, n-step return, next_obs, terminated, discount)."""
        ready = []
        for i in np.flatnonzero(valid):
            queue = self.pending[i]
            queue.append((obs[i], actions[i], float(rewards[i])))
            ends = bool(terminated[i]) or bool(done[i])
            while queue and (ends or len(queue) == self.n):
                first_obs, first_action, _ = queue[0]
                n_return = sum(self.gamma**k * r for k, (_, _, r) in enumerate(queue))
                ready.append((first_obs, first_action, n_return, next_obs[i], float(terminated[i]),
                              self.gamma ** len(queue)))
                queue.popleft()
        return ready


class FrameStackReplayBuffer(Replay):
    """Replay for stacked-frame observations (Atari: 4 x 84 x 84 uint8) that stores every frame
    once, so 1M transitions take about 7 GB instead of the 56 GB of storing (s, s') stacks.

    Each env has its own ring of single frames. A transition's observation is entry k, its next
    observation entry k + 1, and a stack is the `stack` entries ending at k. When an episode
    starts, the whole reset stack is written first, so every stack is rebuilt exactly and never
    reaches into the previous episode. Each entry keeps a write stamp: an entry is sampled only if
    its stack and its successor were written contiguously and are not overwritten yet.

    With n_step > 1 the n-step transition is read off the ring when sampled, since the entries
    k, k + 1, ... of an episode lie next to each other: R = r_k + gamma r_{k+1} + ... +
    gamma^(m-1) r_{k+m-1} with next observation the stack ending at k + m and discount gamma^m,
    where m = n, or fewer when the episode terminates or was truncated at step k + m (or its next
    step has not happened yet). No frame is stored twice for it.
    """

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: npt.DTypeLike = np.int64, gamma: float = 0.99, n_step: int = 1):
        self.gamma, self.n_step = gamma, n_step
        self.stack = obs_shape[0]
        self.num_envs = num_envs
        self.ring = max(capacity // num_envs, 1) + self.stack + 1
        self.frames = np.zeros((num_envs, self.ring, *obs_shape[1:]), dtype=np.uint8)
        self.actions = np.zeros((num_envs, self.ring, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((num_envs, self.ring), dtype=np.float32)
        self.terminated = np.zeros((num_envs, self.ring), dtype=np.float32)
        self.has_next = np.zeros((num_envs, self.ring), dtype=bool)  # entry k holds a transition k -> k+1
        self.stamp = np.full((num_envs, self.ring), -1, dtype=np.int64)  # write counter per entry
        self.writes = np.zeros(num_envs, dtype=np.int64)
        self.episode_start = np.ones(num_envs, dtype=bool)  # the next observation begins an episode
        self.transitions = 0

    def __len__(self) -> int:
        return int(min(self.transitions, self.num_envs * (self.ring - self.stack - 1)))

    def _write(self, env: int | np.integer, frame: np.ndarray) -> int:
        index = self.writes[env] % self.ring
        self.frames[env, index] = frame
        self.has_next[env, index] = False
        self.stamp[env, index] = self.writes[env]
        self.writes[env] += 1
        return int(index)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, valid: np.ndarray, done: np.ndarray | None = None,
            discounts: np.ndarray | float | None = None) -> np.ndarray:
        """Add one vector step. `done` marks true episode ends (the env resets before the next step).
        Returns the entries (env * ring + index) that now hold the step's transitions."""
        added = []
        for i in np.flatnonzero(valid):
            if self.episode_start[i]:
                for frame in obs[i]:
                    current = self._write(i, frame)
                self.episode_start[i] = False
            else:
                current = int((self.writes[i] - 1) % self.ring)
            self.actions[i, current], self.rewards[i, current] = actions[i], rewards[i]
            self.terminated[i, current] = terminated[i]
            self._write(i, next_obs[i][-1])
            self.has_next[i, current] = True
            added.append(i * self.ring + current)
            self.transitions += 1
            if done is not None and done[i]:
                self.episode_start[i] = True
        return np.asarray(added, dtype=np.int64)

    def _sampleable(self, env: np.ndarray, index: np.ndarray) -> np.ndarray:
        offsets = np.arange(-(self.stack - 1), 2)  # the stack ending at k, and k + 1
        stamps = self.stamp[env[:, None], (index[:, None] + offsets) % self.ring]
        contiguous = np.all(stamps == stamps[:, :1] + np.arange(len(offsets)), axis=1) & (stamps[:, 0] >= 0)
        return self.has_next[env, index] & contiguous

    def stacks(self, env: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The stacked observations ending at entries `index` of envs `env`: (B, stack, H, W)."""
        positions = (index[:, None] + np.arange(-(self.stack - 1), 1)) % self.ring
        return self.frames[env[:, None], positions]

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        envs: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        while sum(len(e) for e in envs) < batch_size:
            env = rng.integers(0, self.num_envs, size=batch_size)
            index = rng.integers(0, self.ring, size=batch_size)
            keep = self._sampleable(env, index)
            envs.append(env[keep])
            indices.append(index[keep])
        env, index = np.concatenate(envs)[:batch_size], np.concatenate(indices)[:batch_size]
        return self.transitions_at(env, index)

    def transitions_at(self, env: np.ndarray, index: np.ndarray) -> dict[str, torch.Tensor]:
        """The (n-step) transitions starting at entries `index` of envs `env`, as a batch."""
        batch_size = len(env)
        if self.n_step == 1:
            rewards, last, terminated = self.rewards[env, index], (index + 1) % self.ring, self.terminated[env, index]
            discounts = np.full(batch_size, self.gamma, dtype=np.float32)
        else:
            rewards, last, terminated, discounts = self.n_step_transitions(env, index)
        return {
            "obs": torch.as_tensor(self.stacks(env, index)),
            "actions": torch.as_tensor(self.actions[env, index]),
            "rewards": torch.as_tensor(rewards),
            "next_obs": torch.as_tensor(self.stacks(env, last)),
            "terminated": torch.as_tensor(terminated),
            "discounts": torch.as_tensor(discounts),
        }

    def n_step_transitions(self, env: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, ...]:
        """(n-step return, entry of the next observation, terminated, gamma^m) for entries k."""
        returns = np.zeros(len(env), dtype=np.float32)
        discounts = np.ones(len(env), dtype=np.float32)
        last, terminated = (index + 1) % self.ring, np.zeros(len(env), dtype=np.float32)
        going = np.ones(len(env), dtype=bool)  # still adding rewards
        for j in range(self.n_step):
            at = (index + j) % self.ring
            after = (at + 1) % self.ring
            returns += np.where(going, discounts * self.rewards[env, at], 0.0).astype(np.float32)
            terminated = np.where(going, self.terminated[env, at], terminated)
            last = np.where(going, after, last)
            discounts = np.where(going, discounts * self.gamma, discounts).astype(np.float32)
            # the episode goes on from `after` only if it did not terminate and `after` has a transition
            going &= (self.terminated[env, at] == 0) & self.has_next[env, after] & (
                self.stamp[env, after] == self.stamp[env, at] + 1)
        return returns, last, terminated, discounts


class PrioritySampling(Replay):
    """What proportional prioritized replay (Schaul et al., 2016) adds to a buffer: transition i
    is drawn with probability P(i) = p_i^alpha / sum_j p_j^alpha, p_i = |delta_i| + eps from its
    last TD error (new transitions get the largest priority so far), and its loss is weighted by
    w_i = (N P(i))^-beta / max_j w_j, which undoes the bias. The maximum is over the whole buffer,
    as in the paper: max_j w_j = (N min_j P(j))^-beta, from the smallest priority stored, so a
    transition's weight does not depend on which others share its batch (dividing by the batch's
    largest weight instead would scale every batch differently). A sum tree over `size` slots,
    which also tracks the smallest priority, keeps sampling and updates O(log N)."""

    def init_priorities(self, size: int, alpha: float, eps: float) -> None:
        self.alpha, self.eps, self.beta = alpha, eps, 0.4
        self.priorities = SumTree(size)
        self.max_priority = 1.0

    def add(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The buffer's own add; the entries it filled get the largest priority so far."""
        added = super().add(*args, **kwargs)
        if len(added):
            self.priorities.set(added, np.full(len(added), self.max_priority**self.alpha))
        return added

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.priorities.set(np.asarray(indices), priorities**self.alpha)


class PrioritizedFrameStackReplayBuffer(PrioritySampling, FrameStackReplayBuffer):
    """Prioritized replay over the Atari frame rings: one priority per ring entry. An entry that
    stopped being a transition (overwritten, or its stack reaches into overwritten frames) keeps
    its stale priority until it is drawn, then gets priority 0 and the draw is repeated, so every
    sampled transition is a real one. Until then its priority also counts in the smallest one that
    the importance weights are normalized by."""

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: npt.DTypeLike = np.int64, gamma: float = 0.99, n_step: int = 1, alpha: float = 0.6,
                 eps: float = 1e-6):
        super().__init__(capacity, num_envs, obs_shape, action_shape, action_dtype, gamma, n_step)
        self.init_priorities(num_envs * self.ring, alpha, eps)  # slot = env * ring + entry

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        leaves = self.priorities.stratified(batch_size, rng)
        while True:
            stale = ~self._sampleable(leaves // self.ring, leaves % self.ring)
            if not stale.any():
                break
            dropped = np.unique(leaves[stale])
            self.priorities.set(dropped, np.zeros(len(dropped)))
            leaves[stale] = self.priorities.stratified(int(stale.sum()), rng)
        env, index = leaves // self.ring, leaves % self.ring
        return {**self.transitions_at(env, index), **importance(self.priorities, leaves, len(self), self.beta)}


class SumTree(SavedAsTensors):
    """Non-negative weights on `size` leaves in a binary tree whose every node holds the sum of
    its two children, and beside it a tree of the smallest positive weight below each node (empty
    and dropped leaves, weight 0, can never be drawn): setting weights, drawing a leaf with
    probability weight / total and reading the smallest weight take O(log size) or less."""

    def __init__(self, size: int):
        self.leaves = 1 << max(size - 1, 1).bit_length()
        self.tree = np.zeros(2 * self.leaves)  # tree[1] is the total; leaves at [leaves, 2 leaves)
        self.min_tree = np.full(2 * self.leaves, np.inf)  # min_tree[1]: the smallest positive weight

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "min_tree" not in vars(self):  # saved before the tree of minima existed: rebuild it
            self.min_tree = np.full(2 * self.leaves, np.inf)
            self.set(np.arange(self.leaves), self.tree[self.leaves:].copy())

    @property
    def total(self) -> float:
        return float(self.tree[1])

    @property
    def min_positive(self) -> float:
        """The smallest positive leaf weight (inf while every leaf is 0)."""
        return float(self.min_tree[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(leaves) + self.leaves]

    def set(self, leaves: np.ndarray, weights: np.ndarray) -> None:
        nodes = np.asarray(leaves) + self.leaves
        self.tree[nodes] = weights
        self.min_tree[nodes] = np.where(weights > 0, weights, np.inf)
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            self.min_tree[nodes] = np.minimum(self.min_tree[2 * nodes], self.min_tree[2 * nodes + 1])
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def stratified(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` leaves, one drawn from each of `count` equal slices of the total weight."""
        targets = (np.arange(count) + rng.random(count)) * (self.total / count)
        nodes = np.ones(count, dtype=np.int64)
        while nodes[0] < self.leaves:
            left = 2 * nodes
            go_right = targets > self.tree[left]
            targets = np.where(go_right, targets - self.tree[left], targets)
            nodes = np.where(go_right, left + 1, left)
        return nodes - self.leaves


class PrioritizedReplayBuffer(PrioritySampling, ReplayBuffer):
    """Prioritized replay (`PrioritySampling`) over a flat buffer: one priority per row."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 obs_dtype: npt.DTypeLike = np.float32, action_dtype: npt.DTypeLike = np.float32, alpha: float = 0.6,
                 eps: float = 1e-6):
        super().__init__(capacity, obs_shape, action_shape, obs_dtype, action_dtype)
        self.init_priorities(capacity, alpha, eps)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = np.minimum(self.priorities.stratified(batch_size, rng), self.size - 1)
        batch = {
            "obs": torch.as_tensor(self.obs[idx]), "actions": torch.as_tensor(self.actions[idx]),
            "rewards": torch.as_tensor(self.rewards[idx]), "next_obs": torch.as_tensor(self.next_obs[idx]),
            "terminated": torch.as_tensor(self.terminated[idx]), "discounts": torch.as_tensor(self.discounts[idx]),
        }
        return {**batch, **importance(self.priorities, idx, self.size, self.beta)}


def importance(priorities: SumTree, leaves: np.ndarray, n: int, beta: float) -> dict[str, torch.Tensor]:
    """The importance weights w_i = (N P(i))^-beta / max_j w_j of sampled leaves, the maximum over
    the whole buffer, (N min_j P(j))^-beta (Schaul et al., 2016), and the leaves themselves (for the
    priority update after the TD errors are known)."""
    probabilities = priorities.get(leaves) / priorities.total
    min_probability = priorities.min_positive / priorities.total
    # w_i / w_max = (N P(i))^-beta / (N P_min)^-beta = (P_min / P(i))^beta, in (0, 1]
    weights = (min_probability / probabilities) ** beta
    return {"weights": torch.as_tensor(weights, dtype=torch.float32), "indices": torch.as_tensor(leaves)}
