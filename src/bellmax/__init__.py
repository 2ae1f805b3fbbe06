"""bellmax: reinforcement learning from Bellman to RLHF.

Importing `bellmax` is cheap: torch, gymnasium and the algorithms load only when used, so
`bellmax solve` starts fast. Library use mirrors the CLI::

    from bellmax.algos import VPG, VPGConfig
    agent = VPG(VPGConfig(env="CartPole-v1", seed=1))
    agent.learn(50_000)
"""

__version__ = "0.1.0"
