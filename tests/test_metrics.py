"""One diagnostic vocabulary: every algorithm, in each of its variants, logs only the names that
`bellmax.core.metrics.METRICS` defines, each in an agreed namespace."""

import json

import pytest

from bellmax.algos import get_algorithm
from bellmax.core.metrics import METRICS, NAMESPACES
from bellmax.core.run import METRICS_JSONL, Run

ON_POLICY = dict(env="CartPole-v1", num_envs=2, n_steps=32, hidden_sizes=(8,), total_steps=128)
OFF_POLICY = dict(hidden_sizes=(8,), learning_starts=32, batch_size=16, buffer_size=500, log_every=64,
                  total_steps=128)
VARIANTS = {
    "vpg": dict(ON_POLICY, batch_size=32),
    "vpg-advantage": dict(ON_POLICY, batch_size=32, weighting="advantage", ent_coef=0.01),
    "a2c": dict(ON_POLICY, anneal_lr=True),
    "a2c-rmsprop": dict(ON_POLICY, optimizer="rmsprop", normalize_advantages=True),
    "ppo": dict(ON_POLICY, batch_size=32, anneal_lr=True, anneal_clip=True, target_kl=0.01),
    "trpo": dict(ON_POLICY, env="Pendulum-v1", batch_size=32),
    "dqn": dict(OFF_POLICY, env="CartPole-v1"),
    "dqn-prioritized": dict(OFF_POLICY, env="CartPole-v1", prioritized_replay=True, n_step=3, dueling=True),
    "ddpg": dict(OFF_POLICY, env="Pendulum-v1", noise_type="ornstein_uhlenbeck"),
    "td3": dict(OFF_POLICY, env="Pendulum-v1"),
    "sac": dict(OFF_POLICY, env="Pendulum-v1"),
    "sac-fixed-alpha": dict(OFF_POLICY, env="Pendulum-v1", alpha=0.2),
}


def test_every_name_has_a_meaning_in_an_agreed_namespace():
    for key, meaning in METRICS.items():
        assert key.split("/")[0] in NAMESPACES and meaning, key


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_algorithm_logs_only_agreed_names(tmp_path, variant):
    algo = get_algorithm(variant.partition("-")[0])
    config = algo.config_class(seed=0, eval_episodes=2, eval_every=64, **VARIANTS[variant])
    with Run(tmp_path, algo.name, config.to_dict(), tensorboard=False) as run:
        algo(config).learn(run=run)
    rows = [json.loads(line) for line in (tmp_path / METRICS_JSONL).read_text().splitlines()]
    logged = {key for row in rows for key in row} - {"step"}
    assert {"rollout/ep_return", "eval/return", "time/sps"} <= logged
    assert logged <= set(METRICS), sorted(logged - set(METRICS))
