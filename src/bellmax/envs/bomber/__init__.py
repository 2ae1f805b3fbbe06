"""The Bomber arena: the lecture's Pommerman, written anew from its published rules.

- `reference.py`: the rules, as one plainly written game (the specification);
- `engine.py`: the same rules for a batch of games as NumPy arrays (what training runs);
- `observe.py`: state versus observation (an agent's window, as planes or Pommerman's dict);
- `opponents.py`: built-in players (random, filtered random, rule-based in the manner of SimpleAgent, expert), batched;
- `gym_env.py`: `bellmax/Bomber-v0` and `bellmax/BomberDuel-v0` for one learner, with native vector forms;
- `pettingzoo_env.py`: `parallel_env()`, the multi-agent PettingZoo ParallelEnv;
- `render.py`: text and RGB frames, GIFs.
"""

from typing import Any

from bellmax.envs.bomber.config import BomberConfig, Rewards


def parallel_env(**kwargs: Any) -> Any:
    """The PettingZoo ParallelEnv (needs the `arena` extra): see `pettingzoo_env.parallel_env`."""
    from bellmax.envs.bomber.pettingzoo_env import parallel_env as make

    return make(**kwargs)


__all__ = ["BomberConfig", "Rewards", "parallel_env"]
