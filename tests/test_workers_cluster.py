"""`--num-workers` on a Ray cluster of two nodes started inside the test (Ray's own multi-node test
cluster on this machine): the workers spread over both nodes and the run still ends with exactly
the single-process run's parameters."""

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
