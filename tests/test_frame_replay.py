"""The Atari replay buffer stores each frame once, rebuilds stacks exactly, and never lets a
sampled stack reach across an episode boundary or into overwritten frames."""

import gymnasium as gym
import numpy as np

from bellmax.core.replay import FrameStackReplayBuffer

STACK = 4


class Frames(gym.Env):
    """Stacked 2x2 frames: pixel (0,0) = episode id, (0,1) = step; resets pad with zeros like ALE."""

    observation_space = gym.spaces.Box(0, 255, (STACK, 2, 2), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self):
        self.episode = 0

    def _frame(self):
        frame = np.zeros((2, 2), np.uint8)
        frame[0, 0], frame[0, 1] = self.episode, self.t
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = self.episode % 250 + 1
        self.t = 1
        self.stack = np.zeros((STACK, 2, 2), np.uint8)
        self.stack[-1] = self._frame()
        return self.stack.copy(), {}

    def step(self, action):
        self.t += 1
        self.stack = np.concatenate([self.stack[1:], self._frame()[None]])
        return self.stack.copy(), float(action), bool(self.np_random.random() < 0.1), False, {}


gym.register("bellmax-test/Frames-v0", entry_point=Frames, max_episode_steps=15)


def fill(capacity: int, steps: int, num_envs: int = 2, n_step: int = 1, gamma: float = 0.99, log: dict | None = None,
         buffer_class: type = FrameStackReplayBuffer):
    """A buffer filled from `steps` vector steps, and the set of real (obs, action, next_obs);
    `log`, if given, gets (episode, t) -> (reward, terminated) of every transition taken."""
    env = gym.vector.SyncVectorEnv([lambda: gym.make("bellmax-test/Frames-v0") for _ in range(num_envs)])
    obs, _ = env.reset(seed=0)
    buffer = buffer_class(capacity, num_envs, (STACK, 2, 2), (), gamma=gamma, n_step=n_step)
    prev_done = np.zeros(num_envs, bool)
    rng = np.random.default_rng(0)
    real_pairs = set()
    for _ in range(steps):
        actions = rng.integers(3, size=num_envs)
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        done = terminated | truncated
        buffer.add(obs, actions, rewards, next_obs, terminated, ~prev_done, done)
        for i in np.flatnonzero(~prev_done):
            real_pairs.add((obs[i].tobytes(), int(actions[i]), next_obs[i].tobytes()))
            if log is not None:
                log[int(obs[i][-1, 0, 0]), int(obs[i][-1, 0, 1])] = (float(rewards[i]), bool(terminated[i]))
        obs, prev_done = next_obs, done
    return buffer, real_pairs


def test_every_sampled_transition_is_a_real_one_and_stacks_stay_inside_their_episode():
    buffer, real_pairs = fill(capacity=60, steps=400)  # wraps the rings many times
    batch = buffer.sample(512, np.random.default_rng(1))
    for obs, action, next_obs in zip(batch["obs"].numpy(), batch["actions"].numpy(), batch["next_obs"].numpy()):
        assert (obs.tobytes(), int(action), next_obs.tobytes()) in real_pairs
        episodes = {int(f[0, 0]) for f in obs if f[0, 0] != 0}
        assert len(episodes) == 1, "a stack mixes two episodes"
        assert next_obs[-1, 0, 1] == obs[-1, 0, 1] + 1


def test_rewards_and_actions_travel_with_their_transition():
    buffer, _ = fill(capacity=100, steps=200)
    batch = buffer.sample(256, np.random.default_rng(2))
    assert np.array_equal(batch["rewards"].numpy(), batch["actions"].numpy().astype(np.float32))


def test_a_million_atari_transitions_fit_well_under_8_gb():
    buffer = FrameStackReplayBuffer(1_000_000, 8, (4, 84, 84), ())
    total = sum(a.nbytes for a in (buffer.frames, buffer.actions, buffer.rewards, buffer.terminated,
                                   buffer.has_next, buffer.stamp))
    assert total < 7.5e9 and buffer.nbytes >= total  # nbytes: what the memory check before training counts
    assert buffer.frames.nbytes < 4 * 84 * 84 * 1_000_000 / 3.9  # each frame once, not once per stack slot


def test_n_step_transitions_are_read_off_the_ring_and_stop_where_the_episode_does():
    n, gamma, log = 3, 0.9, {}
    buffer, real_pairs = fill(capacity=60, steps=400, n_step=n, gamma=gamma, log=log)
    batch = buffer.sample(512, np.random.default_rng(3))
    lengths = set()
    for obs, action, ret, next_obs, term, discount in zip(*(batch[k].numpy() for k in (
            "obs", "actions", "rewards", "next_obs", "terminated", "discounts"))):
        episode, t = int(obs[-1, 0, 0]), int(obs[-1, 0, 1])
        assert log[episode, t][0] == float(action)  # the env rewards the action taken
        expected, m = 0.0, 0
        while True:  # r_t + gamma r_{t+1} + ... until n steps, a termination, or no further step
            reward, terminated = log[episode, t + m]
            expected += gamma**m * reward
            m += 1
            if m == n or terminated or (episode, t + m) not in log:
                break
        lengths.add(m)
        assert np.isclose(ret, expected, rtol=1e-6)
        assert (int(next_obs[-1, 0, 0]), int(next_obs[-1, 0, 1])) == (episode, t + m)
        assert {int(f[0, 0]) for f in next_obs if f[0, 0] != 0} == {episode}, "next stack leaves the episode"
        assert term == float(log[episode, t + m - 1][1])
        assert np.isclose(discount, gamma**m)
    assert lengths == {1, 2, 3}  # full n-step transitions and ones cut short by episode ends


def test_one_step_sampling_is_unchanged_by_the_n_step_code():
    one, _ = fill(capacity=60, steps=200, n_step=1)
    batch = one.sample(256, np.random.default_rng(4))
    assert np.allclose(batch["discounts"].numpy(), 0.99)
    env, index = np.arange(256) % 2, np.random.default_rng(5).integers(0, one.ring, 256)
    keep = one._sampleable(env, index)
    one.n_step = 1
    rewards, last, terminated, discounts = FrameStackReplayBuffer.n_step_transitions(one, env[keep], index[keep])
    assert np.array_equal(rewards, one.rewards[env[keep], index[keep]])
    assert np.array_equal(last, (index[keep] + 1) % one.ring) and np.allclose(discounts, 0.99)


def test_prioritized_frame_replay_samples_only_real_transitions_in_proportion_to_priority():
    from bellmax.core.replay import PrioritizedFrameStackReplayBuffer

    buffer, real_pairs = fill(capacity=60, steps=400, buffer_class=PrioritizedFrameStackReplayBuffer)
    buffer.alpha = 1.0
    batch = buffer.sample(512, np.random.default_rng(6))  # stale entries of earlier laps are dropped on the way
    for obs, action, next_obs in zip(batch["obs"].numpy(), batch["actions"].numpy(), batch["next_obs"].numpy()):
        assert (obs.tobytes(), int(action), next_obs.tobytes()) in real_pairs
    leaves = np.unique(batch["indices"].numpy())
    live = np.flatnonzero(buffer.priorities.get(np.arange(buffer.num_envs * buffer.ring)) > 0)
    assert set(leaves) <= set(live)
    # give one transition 50 times the priority of every other: it fills about 50 / (49 + n) of the draws
    others = np.setdiff1d(live, leaves[:1])
    buffer.update_priorities(others, np.ones(len(others)) - buffer.eps)
    buffer.update_priorities(leaves[:1], np.array([50.0 - buffer.eps]))
    draws = np.concatenate([buffer.sample(256, np.random.default_rng(k))["indices"].numpy() for k in range(20)])
    share = np.mean(draws == leaves[0])
    expected = 50 / (50 + len(others))
    assert abs(share - expected) < 0.35 * expected
    weights = buffer.sample(256, np.random.default_rng(99))
    w = weights["weights"].numpy()[weights["indices"].numpy() == leaves[0]]
    assert len(w) and np.allclose(w, w.min()) and w.max() < 1  # the favoured one is down-weighted
