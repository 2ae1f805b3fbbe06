"""Multi-agent play in the Bomber arena: players (trained runs and built-in agents), round-robin
tournaments played in batches of games, and ratings with confidence intervals.

    from bellmax.arena import load_player, round_robin, standings
    players = [load_player("runs/ppo-duel"), load_player("rule"), load_player("filtered")]
    results = round_robin(players, games=400, board="duel", seed=0)
    table = standings(results)

`bellmax arena PLAYER... --games N` is the command line for it (bellmax/commands/arena.py).
"""

from bellmax.arena.players import Player, load_player
from bellmax.arena.ratings import standings
from bellmax.arena.tournament import MatchResult, play_against, play_match, round_robin

__all__ = ["MatchResult", "Player", "load_player", "play_against", "play_match", "round_robin", "standings"]
