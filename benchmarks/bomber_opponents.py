"""How strong the built-in Bomber players are against each other: free-for-all with four players
(each a seat, rotating from game to game) and duels (seats alternating), every match's games
played at once in the batched engine.

    python benchmarks/bomber_opponents.py [--games 512] [--seeds 0,1] [--out docs/images/bomber_opponents.json]

Prints one line per match: each player's share of wins, the draws, the mean game length.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bellmax.arena.players import load_player
from bellmax.arena.tournament import play_games

MATCHES = [
    ("ffa", ("rule", "rule", "rule", "rule")),
    ("ffa", ("filtered", "rule", "rule", "rule")),
    ("ffa", ("random", "rule", "rule", "rule")),
    ("ffa", ("expert", "rule", "rule", "rule")),
    ("duel", ("rule", "random")),
    ("duel", ("rule", "filtered")),
    ("duel", ("filtered", "random")),
    ("duel", ("expert", "rule")),
    ("duel", ("expert", "random")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=512, help="games per match (default 512)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--out", default=None, help="also write the results as JSON")
    opts = parser.parse_args()
    results = []
    for seed in (int(s) for s in opts.seeds.split(",")):
        for board, names in MATCHES:
            start = time.perf_counter()
            players = [load_player(name) for name in names]
            for player, seat in zip(players, range(len(players))):  # a name per seat: rule, rule#1, ...
                player.name = f"{player.name}#{seat}" if names.count(player.name) > 1 else player.name
            winners, lengths = play_games(players, opts.games, board, seed=seed)
            shares = {player.name: float((winners == i).mean()) for i, player in enumerate(players)}
            result = {"board": board, "players": list(names), "seed": seed, "games": opts.games,
                      "win_share": shares, "draws": float((winners == -1).mean()),
                      "mean_length": float(lengths.mean()), "seconds": time.perf_counter() - start}
            results.append(result)
            wins = ", ".join(f"{name} {share:.3f}" for name, share in shares.items())
            print(f"{board:4s} seed {seed}: {wins}; draws {result['draws']:.3f}; "
                  f"mean length {result['mean_length']:.0f} steps", flush=True)
    if opts.out:
        Path(opts.out).write_text(json.dumps({"results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
