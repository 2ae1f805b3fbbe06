"""On a Ray cluster of two nodes started inside the test (Ray's own multi-node test cluster on this
machine): `--num-workers` spreads its workers over both nodes and the run still ends with exactly
the single-process run's parameters; a sweep's trials, one CPU each, run on both nodes."""

import json

import pytest

from bellmax.algos import PPO, PPOConfig

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_workers_spread_over_the_nodes_and_change_nothing(two_nodes):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    config = PPOConfig(env="Acrobot-v1", num_envs=3, n_steps=32, batch_size=48, n_epochs=2, total_steps=3 * 32 * 3,
                       eval_episodes=0, seed=5, num_workers=3)
    agent = PPO(config)
    try:
        nodes = ray.get([worker.node.remote() for worker in agent.env.workers])
        assert len(set(nodes)) == 2  # one CPU on the head node, two on the other: three workers need both
        agent.learn()
        assert agent.params_sha256() == PPO(config.replace(num_workers=0)).learn().params_sha256()
    finally:
        agent.env.close()


def test_sweep_trials_spread_over_the_nodes(two_nodes, tmp_path):
    from bellmax.distributed.sweep import SweepSpec, run_sweep

    spec = SweepSpec(algo="ppo", base={"env": "Acrobot-v1", "total_steps": 6000, "eval_every": 2000,
                                       "eval_episodes": 1, "num_envs": 4, "n_steps": 128},
                     seeds=[0, 1, 2], cpus_per_trial=1)
    results = run_sweep(spec, tmp_path / "sweep")
    assert results[0].finished == [True, True, True]
    nodes = {}
    for path in (tmp_path / "sweep" / "tune").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        nodes[path.parent.name] = {row["node_id"] for row in rows}
    assert len(nodes) == 3 and all(len(n) == 1 for n in nodes.values())
    # three one-CPU trials at once on a head of one CPU and a node of two: both nodes take trials
    assert len(set.union(*nodes.values())) == 2
