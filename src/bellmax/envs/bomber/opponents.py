"""Built-in Bomber players, acting on a whole batch of games at once like the engine.

An opponent chooses the actions of some agents in some games of a `BomberEngine`:
`act(engine, games, agents, rng)` gets two equally long index arrays (the i-th controlled agent
is agent `agents[i]` of game `games[i]`) and returns one action per pair, computed with array
operations over all pairs together (no loop over games), so training against them runs at the
engine's speed. With partial observation they use only what their agent can see.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from bellmax.envs.bomber.engine import BomberEngine
from bellmax.errors import unknown_name


class Opponent(Protocol):
    name: str

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        """Actions (len(games),) for agent agents[i] of game games[i]."""
        ...


class RandomOpponent:
    """Uniformly random actions."""

    name = "random"

    def act(self, engine: BomberEngine, games: np.ndarray, agents: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
        return rng.integers(6, size=len(games))


OPPONENTS: dict[str, type] = {"random": RandomOpponent}


def make_opponent(name: str) -> Opponent:
    """The built-in opponent called `name`."""
    if name not in OPPONENTS:
        raise unknown_name("Bomber opponent", name, list(OPPONENTS))
    opponent: Opponent = OPPONENTS[name]()
    return opponent
