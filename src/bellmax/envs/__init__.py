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

# the Bomber arena: one learner against built-in opponents (bellmax.envs.bomber.gym_env)
for _id, _board in (("bellmax/Bomber-v0", "ffa"), ("bellmax/BomberDuel-v0", "duel")):
    if _id not in gymnasium.registry:
        gymnasium.register(
            id=_id,
            entry_point="bellmax.envs.bomber.gym_env:BomberEnv",
            vector_entry_point="bellmax.envs.bomber.gym_env:BomberVectorEnv",
            kwargs={"board": _board},
            disable_env_checker=True,
        )
