"""Matches between two players, many games at once in one batched engine, and round robins.

On the duel board the two players take the two seats (swapping seats from one game to the next);
on four-seat boards each player takes two seats, alternately (0 and 2 against 1 and 3: in team
mode the players are the two teams; in free-for-all a game is won by whichever copy survives).
A game a player's side wins is a win for it, a game nobody wins (everyone dead, or the step
limit) a draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bellmax.arena.players import Player
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.gym_env import board_config


@dataclass
class MatchResult:
    """The games of `first` against `second`: outcomes[i] is 1 (first won), 0 (draw) or -1."""

    first: str
    second: str
    outcomes: np.ndarray = field(repr=False)
    steps: int = 0

    @property
    def counts(self) -> tuple[int, int, int]:
        """(wins of first, draws, wins of second)."""
        return int((self.outcomes == 1).sum()), int((self.outcomes == 0).sum()), int((self.outcomes == -1).sum())


def play_games(players: list[Player], games: int, board: str, seed: int = 0,
               batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """`games` games on `board` between 2 players (each takes half the seats, alternating from game
    to game) or as many players as seats (each one seat, rotating from game to game), `batch` at
    a time. Returns (the winning player of each game or -1 for a draw, each game's length)."""
    config = board_config(board)
    seats = config.num_agents
    if len(players) not in (2, seats):
        raise ValueError(f"{len(players)} players for a {seats}-seat board: 2 or {seats}")
    rng = np.random.default_rng(seed)
    winners, lengths = [], []
    for start in range(0, games, batch):
        count = min(batch, games - start)
        engine = BomberEngine(config, count, seed=int(rng.integers(2**63)))
        # the player of each seat, rotating from game to game
        owner = (np.arange(seats)[None, :] + (start + np.arange(count))[:, None]) % len(players)
        playing = np.ones(count, bool)
        winner = np.full(count, -1, np.int64)
        while playing.any():
            actions = np.zeros((count, seats), np.int64)
            for index, player in enumerate(players):
                games_, agents = np.nonzero((owner == index) & engine.alive & playing[:, None])
                if len(games_):
                    actions[games_, agents] = player.opponent.act(engine, games_, agents, rng)
            freeze = np.flatnonzero(~playing)  # finished games sit out (engine.step steps every game)
            saved = engine.copy_games(freeze)
            engine.over[freeze] = False
            engine.step(actions)
            engine.paste_games(freeze, saved)
            for game in np.flatnonzero(playing & engine.over):
                won = engine.winners(int(game))
                winner[game] = owner[game, won[0]] if won else -1
            playing &= ~engine.over
        winners.append(winner)
        lengths.append(engine.steps.copy())
    return np.concatenate(winners), np.concatenate(lengths)


def play_match(first: Player, second: Player, games: int, board: str, seed: int = 0,
               batch: int = 256) -> MatchResult:
    """`games` games of `first` against `second` on `board`."""
    winners, lengths = play_games([first, second], games, board, seed, batch)
    outcomes = np.select([winners == 0, winners == 1], [1, -1], 0)
    return MatchResult(first.name, second.name, outcomes, int(lengths.sum()))


def play_against(player: Player, opponent: Player, games: int, board: str, seed: int = 0,
                 batch: int = 256) -> MatchResult:
    """`games` games of `player` alone against `opponent` in every other seat (on the free-for-all
    board: one learner against three, as in bellmax/Bomber-v0); `player` wins only when it is the
    last one standing."""
    others = board_config(board).num_agents - 1
    winners, lengths = play_games([player] + [opponent] * others, games, board, seed, batch)
    outcomes = np.select([winners == 0, winners > 0], [1, -1], 0)
    field_name = opponent.name if others == 1 else f"{others} x {opponent.name}"
    return MatchResult(player.name, field_name, outcomes, int(lengths.sum()))


def round_robin(players: list[Player], games: int, board: str, seed: int = 0) -> list[MatchResult]:
    """Every pair of players plays `games` games (pairs in order: (0, 1), (0, 2), ..., (1, 2), ...)."""
    results = []
    for i in range(len(players)):
        for j in range(i + 1, len(players)):
            results.append(play_match(players[i], players[j], games, board, seed=seed + 1000 * i + j))
    return results
