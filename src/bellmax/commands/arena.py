"""`bellmax arena PLAYER... --games N [--json]`: a round-robin tournament in the Bomber arena.

A player is a run directory trained on bellmax/BomberDuel-v0 or bellmax/Bomber-v0, or a built-in
agent: `random`, `filtered` (random, never stepping into a blast it sees coming), `rule`, `expert`.
A trained player acts through the action filter, as in training, and takes its most likely actions
unless its run evaluates by sampling (`--sampled` / `--deterministic` decide for all). Every
pair plays N games; the table gives each player's wins, draws and losses, its score (draws count
half) with a bootstrap 95% interval, and a TrueSkill-style rating (openskill); `--json` prints one
object with every pair's counts; the score matrix is saved as a heatmap PNG. With `--against
AGENT`, each player instead plays alone against AGENT in every other seat (`--board ffa`: one
against three, the setting of bellmax/Bomber-v0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bellmax.errors import ArgumentParser, BellmaxError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bellmax arena", description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("players", nargs="+", help="run directories or built-in agents (random, filtered, rule)")
    parser.add_argument("--games", type=int, default=100, help="games per pair (default 100)")
    parser.add_argument("--board", choices=["duel", "ffa", "team"], default=None,
                        help="the board (default: the one the trained players were made for, else the duel)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the boards and of the players' draws")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--deterministic", action="store_true", default=None,
                        help="trained players take their most likely action (default: as each run evaluates, "
                             "its eval_deterministic, which is on unless the run turned it off)")
    policy.add_argument("--sampled", dest="deterministic", action="store_false",
                        help="trained players sample their actions, as in training")
    parser.add_argument("--against", metavar="AGENT", default=None,
                        help="instead of a round robin, each player alone against this built-in agent in every "
                             "other seat (on --board ffa: one against three, as in bellmax/Bomber-v0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-o", "--output", default="arena.png", help="the score-matrix heatmap (default arena.png)")
    return parser


def main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv)
    if opts.games < 1:
        raise BellmaxError(f"--games {opts.games} must be at least 1")
    if len(opts.players) < 2 and opts.against is None:
        raise BellmaxError("an arena needs at least two players (or one and --against AGENT)")
    if len(set(opts.players)) != len(opts.players):
        raise BellmaxError("each player may appear once")
    from bellmax.arena import load_player, play_against, round_robin, standings
    from bellmax.arena.players import common_board
    from bellmax.arena.ratings import score_matrix

    players = [load_player(spec, opts.deterministic) for spec in opts.players]
    names = [p.name for p in players]
    if len(set(names)) != len(names):
        raise BellmaxError(f"two players have the same name ({', '.join(names)}): give run directories distinct names")
    board = common_board(players, opts.board)
    started = time.perf_counter()
    if opts.against is not None:
        from bellmax.envs.bomber.opponents import OPPONENTS

        if opts.against not in OPPONENTS:
            raise BellmaxError(f"--against {opts.against}: a built-in agent ({', '.join(OPPONENTS)})")
        field = load_player(opts.against)
        results = [play_against(player, field, opts.games, board, seed=opts.seed + i)
                   for i, player in enumerate(players)]
        names = [*names, results[0].second]
    else:
        results = round_robin(players, opts.games, board, seed=opts.seed)
    table = standings(results, seed=opts.seed)
    matrix = score_matrix(results, names)
    figure = heatmap(matrix, names, Path(opts.output), f"{board} board, {opts.games} games per pair")
    report: dict[str, Any] = {
        "board": board, "games_per_pair": opts.games, "seconds": time.perf_counter() - started,
        "pairs": [{"first": r.first, "second": r.second, "first_wins": r.counts[0], "draws": r.counts[1],
                   "second_wins": r.counts[2]} for r in results],
        "standings": [{"player": s.player, "games": s.games, "wins": s.wins, "draws": s.draws, "losses": s.losses,
                       "score": s.score, "score_95": [s.score_low, s.score_high], "mu": s.mu, "sigma": s.sigma,
                       "rating": s.rating} for s in table],
        "heatmap": str(figure),
    }
    if opts.json:
        print(json.dumps(report))
        return 0
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Bomber arena: {report['board']} board, {report['games_per_pair']} games per pair "
                        f"({report['seconds']:.0f} s)")
    for column in ("player", "games", "won", "drawn", "lost", "score (95% CI)", "rating (mu - 3 sigma)"):
        table.add_column(column, justify="left" if column == "player" else "right")
    for s in report["standings"]:
        low, high = s["score_95"]
        table.add_row(s["player"], str(s["games"]), str(s["wins"]), str(s["draws"]), str(s["losses"]),
                      f"{s['score']:.3f} ({low:.3f}-{high:.3f})", f"{s['rating']:.1f}")
    console = Console(soft_wrap=True)
    console.print(table)
    for pair in report["pairs"]:
        console.print(f"{pair['first']} vs {pair['second']}: {pair['first_wins']} won, {pair['draws']} drawn, "
                      f"{pair['second_wins']} lost")
    console.print(f"score matrix: {report['heatmap']}")


def heatmap(matrix: Any, names: list[str], output: Path, title: str) -> Path:
    """The score of each row player against each column player, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bellmax.plotting import save_figure

    size = 1.2 + 0.9 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=120)
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xlabel("opponent")
    ax.set_title(f"score of row against column\n({title}; draws count half)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, output)
