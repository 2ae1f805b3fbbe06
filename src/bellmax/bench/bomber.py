"""`bellmax bench bomber`: how fast the Bomber arena steps, on one core, in this process.

- `batched_agent_steps_per_s`: agent steps per second of the batched engine (`--games` games
  stepped together, random actions, games that end restarted on fresh boards);
- `reference_agent_steps_per_s`: the same with the plain single-game reference, one game at a time;
- `pettingzoo_agent_steps_per_s`: the PettingZoo ParallelEnv (one game, observations included);
- `opponent_seconds_per_step`: seconds one call of each built-in opponent takes to choose the
  actions of one agent in every game (what training against it adds to an engine step).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def engine_rate(board: str, games: int, steps: int, seed: int = 0) -> float:
    """Agent steps per second of the batched engine with random actions."""
    from bellmax.envs.bomber.engine import BomberEngine
    from bellmax.envs.bomber.gym_env import board_config

    engine = BomberEngine(board_config(board), games, seed=seed)
    actions = np.random.default_rng(seed).integers(6, size=(steps, games, engine.num_agents))
    start = time.perf_counter()
    for t in range(steps):
        engine.reset(np.flatnonzero(engine.over))
        engine.step(actions[t])
    return steps * games * engine.num_agents / (time.perf_counter() - start)


def reference_rate(board: str, steps: int, seed: int = 0) -> float:
    """Agent steps per second of the reference game (one game at a time)."""
    from bellmax.envs.bomber.gym_env import board_config
    from bellmax.envs.bomber.layout import random_layout
    from bellmax.envs.bomber.reference import Game

    config, rng = board_config(board), np.random.default_rng(seed)
    game = Game.start(config, random_layout(config, rng))
    actions = rng.integers(6, size=(steps, config.num_agents)).tolist()
    start = time.perf_counter()
    for t in range(steps):
        if game.over:
            game = Game.start(config, random_layout(config, rng))
        game.step(actions[t])
    return steps * config.num_agents / (time.perf_counter() - start)


def pettingzoo_rate(board: str, steps: int, seed: int = 0) -> float:
    """Agent steps per second of the PettingZoo ParallelEnv, observations included."""
    from bellmax.envs.bomber.pettingzoo_env import parallel_env

    env = parallel_env(board=board)
    env.reset(seed=seed)
    rng, agent_steps = np.random.default_rng(seed), 0
    start = time.perf_counter()
    for _ in range(steps):
        if not env.agents:
            env.reset()
        actions = {agent: int(rng.integers(6)) for agent in env.agents}
        env.step(actions)
        agent_steps += len(actions)
    return agent_steps / (time.perf_counter() - start)


def opponent_costs(board: str, games: int, calls: int = 200, seed: int = 0) -> dict[str, float]:
    """Seconds per call of each built-in opponent choosing one agent's action in every game."""
    from bellmax.envs.bomber.engine import BomberEngine
    from bellmax.envs.bomber.gym_env import board_config
    from bellmax.envs.bomber.opponents import OPPONENTS, make_opponent

    engine = BomberEngine(board_config(board), games, seed=seed)
    rng = np.random.default_rng(seed)
    costs = {}
    for name in OPPONENTS:
        opponent, spent = make_opponent(name), 0.0
        for _ in range(calls):
            engine.reset(np.flatnonzero(engine.over))
            live = engine.alive[:, 0]
            games_, agents = np.flatnonzero(live), np.zeros(int(live.sum()), np.int64)
            start = time.perf_counter()
            opponent.act(engine, games_, agents, rng)
            spent += time.perf_counter() - start
            engine.step(rng.integers(6, size=(games, engine.num_agents)))
        costs[name] = spent / calls
    return costs


def measure(board: str, games: int, steps: int) -> dict[str, Any]:
    import torch

    from bellmax.bench.harness import machine_info

    torch.set_num_threads(1)  # one core: the engine itself is single-threaded NumPy
    return {
        "board": board, "games": games, "steps": steps,
        "batched_agent_steps_per_s": engine_rate(board, games, steps),
        "reference_agent_steps_per_s": reference_rate(board, min(steps * 5, 20_000)),
        "pettingzoo_agent_steps_per_s": pettingzoo_rate(board, min(steps * 2, 5_000)),
        "opponent_seconds_per_step": opponent_costs(board, games),
        "machine": machine_info(),
    }


def main(opts: argparse.Namespace) -> int:
    result = measure(opts.board, opts.games, opts.steps)
    if opts.out_dir:
        path = Path(opts.out_dir) / f"bench_bomber_{opts.board}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    if opts.json:
        print(json.dumps(result))
        return 0
    print(f"Bomber {opts.board}, {opts.games} games at once, random actions, one core:")
    for key in ("batched_agent_steps_per_s", "reference_agent_steps_per_s", "pettingzoo_agent_steps_per_s"):
        print(f"  {key:32s} {result[key]:>12,.0f}")
    for name, seconds in result["opponent_seconds_per_step"].items():
        print(f"  opponent {name:23s} {seconds * 1e3:>9.3f} ms per step for {opts.games} games "
              f"({seconds / opts.games * 1e6:.1f} us per agent)")
    return 0
