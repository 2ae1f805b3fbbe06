"""The batched Bomber engine plays exactly the game of the plainly written reference: thousands of
random games through both, from the same seeds, must have identical trajectories (every array of
the state and every reward at every step)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bellmax.envs.bomber.config import BomberConfig, Rewards
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.layout import random_layout
from bellmax.envs.bomber.reference import Game

GAMES = 16
CONFIGS = {
    "duel": BomberConfig.duel(),
    "ffa": BomberConfig.ffa(),
    "team": BomberConfig.team(),
    "shaped": BomberConfig.ffa(rewards=Rewards(step=-0.01, kill=3.0, powerup=0.5, wood=0.25)),
    "small": BomberConfig(size=6, num_agents=4, rigid=4, wood=8, items=8, max_steps=60),
}


def kick_and_chains(engine: BomberEngine, games: list[Game], which: list[int]) -> None:
    """Start agents with the kick, more bombs and a longer blast, so that kicks, chain reactions and
    crowded moves happen in most games."""
    for i in which:
        engine.can_kick[i], engine.ammo[i], engine.blast[i] = True, 3, 4
        for agent in games[i].agents:
            agent.can_kick, agent.ammo, agent.blast = True, 3, 4


def play(config: BomberConfig, seed: int, boosted: bool, max_steps: int = 400) -> int:
    """Play GAMES games (and new ones as games end) through both; returns the games finished."""
    engine = BomberEngine(config, GAMES)
    rngs = [np.random.default_rng([seed, game]) for game in range(GAMES)]
    engine.reset(np.arange(GAMES), rngs=[np.random.default_rng([seed, game]) for game in range(GAMES)])
    games = [Game.start(config, random_layout(config, rng)) for rng in rngs]
    if boosted:
        kick_and_chains(engine, games, list(range(GAMES)))
    actions_rng = np.random.default_rng([seed, 10**6])
    finished = 0
    for step in range(max_steps):
        over = np.flatnonzero(engine.over)
        if len(over):
            finished += len(over)
            layout_rngs = [np.random.default_rng([seed, step, int(g)]) for g in over]
            engine.reset(over, rngs=[np.random.default_rng([seed, step, int(g)]) for g in over])
            for game, rng in zip(over, layout_rngs):
                games[game] = Game.start(config, random_layout(config, rng))
            if boosted:
                kick_and_chains(engine, games, list(over))
        # random actions, with more bombs than uniform
        actions = actions_rng.choice(6, size=(GAMES, config.num_agents), p=[0.1, 0.16, 0.16, 0.16, 0.16, 0.26])
        rewards = engine.step(actions)
        for game in range(GAMES):
            expected_rewards = games[game].step([int(a) for a in actions[game]])
            assert np.allclose(rewards[game], expected_rewards), (game, step)
            expected, got = games[game].state(), engine.state(game)
            for key, value in expected.items():
                assert np.array_equal(np.asarray(got[key]), np.asarray(value)), (key, game, step)
    return finished


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(CONFIGS)), boosted=st.booleans())
def test_the_batched_engine_plays_exactly_the_reference_game(seed, name, boosted):
    play(CONFIGS[name], seed, boosted, max_steps=120)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_thousands_of_random_games_agree(name):
    finished = sum(play(CONFIGS[name], seed, boosted=seed % 2 == 1) for seed in range(4))
    assert finished >= 200  # (random games are short: 16 at a time, new ones as they end)


def test_bomb_actions_are_common_enough_to_test_chains():
    """The comparison above exercises explosions, chain reactions and kicks, not only walking."""
    config = CONFIGS["ffa"]
    engine = BomberEngine(config, GAMES, seed=3)
    engine.can_kick[:], engine.ammo[:], engine.blast[:] = True, 3, 4
    rng = np.random.default_rng(0)
    chains = kicks = 0
    for _ in range(300):
        over = np.flatnonzero(engine.over)
        if len(over):
            engine.reset(over)
            engine.can_kick[over], engine.ammo[over], engine.blast[over] = True, 3, 4
        had_bomb, life_before, flames_before = engine.bomb_owner >= 0, engine.bomb_life.copy(), engine.flames.copy()
        actions = rng.choice(6, size=(GAMES, 4), p=[0.1, 0.16, 0.16, 0.16, 0.16, 0.26])
        engine.step(actions)
        has_bomb = engine.bomb_owner >= 0
        kicked_in = has_bomb & ~had_bomb & (engine.bomb_life < 9)  # arrived, and not laid this step
        kicks += int(kicked_in.sum())
        gone = had_bomb & ~has_bomb
        # bombs that went off before their time and not in old flames: set off by another bomb
        chains += int((gone & (life_before > 1) & (flames_before <= 1)).sum()) - int(kicked_in.sum())
    assert chains > 20 and kicks > 20
