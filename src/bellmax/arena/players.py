"""Arena players: a built-in agent by name, or a trained run directory's policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bellmax.envs.bomber.gym_env import PolicyOpponent
from bellmax.envs.bomber.opponents import OPPONENTS, Opponent, make_opponent
from bellmax.errors import BellmaxError

# the Gymnasium ids of the arena and the board each is played on
ARENA_BOARDS = {"bellmax/BomberDuel-v0": "duel", "bellmax/Bomber-v0": "ffa"}


@dataclass
class Player:
    """A name, the board it was made for (None: any board) and what chooses its actions."""

    name: str
    board: str | None
    opponent: Opponent


def load_player(spec: str, deterministic: bool | None = None) -> Player:
    """A built-in agent (`random`, `filtered`, `rule`, `expert`) or the policy in a run directory trained on
    an arena environment, which takes its most likely actions or samples them as `deterministic` says
    (None: as the run evaluates, its config's `eval_deterministic`), through the action filter it was
    trained with."""
    if spec in OPPONENTS:
        return Player(spec, None, make_opponent(spec))
    path = Path(spec)
    if not path.exists():
        raise BellmaxError(f"arena player {spec!r} is neither a built-in agent ({', '.join(OPPONENTS)}) "
                           "nor an existing run directory")
    from bellmax.algos import load
    from bellmax.core.run import CHECKPOINT_FILE, read_run_config

    config = read_run_config(path).get("config", {})
    env = config.get("env")
    if env not in ARENA_BOARDS:
        raise BellmaxError(f"{path} was trained on {env}, not in the arena: train on one of "
                           f"{', '.join(ARENA_BOARDS)}")
    agent = load(path / CHECKPOINT_FILE, mmap=True, device="cpu")
    agent.policy.eval()
    if deterministic is None:
        deterministic = bool(config.get("eval_deterministic", True))
    return Player(path.name, ARENA_BOARDS[env], PolicyOpponent(path.name, agent.policy, deterministic))


def common_board(players: list[Player], board: str | None) -> str:
    """The board every player can play: the one the trained players were made for (all the same),
    or `board`, or the duel."""
    boards = {player.board for player in players if player.board is not None}
    if len(boards) > 1:
        detail = ", ".join(f"{p.name}: {p.board}" for p in players if p.board)
        raise BellmaxError(f"the players were trained on different boards ({detail}): pick players of one board")
    trained = boards.pop() if boards else None
    if board is not None and trained is not None and board != trained:
        raise BellmaxError(f"--board {board}: the trained players were made for the {trained} board "
                           "(a checkpoint plays only the board size it was trained on)")
    return board or trained or "duel"
