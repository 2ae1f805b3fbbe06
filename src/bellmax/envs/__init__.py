"""Environments bellmax owns, registered with Gymnasium, and environment construction.

Importing this package registers `bellmax/GridWorld-v0` (the lecture's 4x3 gridworld), so
`gymnasium.make("bellmax/GridWorld-v0")` works after `import bellmax.envs`.
"""

import gymnasium

if "bellmax/GridWorld-v0" not in gymnasium.registry:
    gymnasium.register(
        id="bellmax/GridWorld-v0",
        entry_point="bellmax.envs.gridworld:GridWorldEnv",
        max_episode_steps=100,
    )
