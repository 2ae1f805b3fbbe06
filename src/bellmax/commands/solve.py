"""`bellmax solve TARGET`: exact values and greedy policy for the gridworld or a toy-text env.

    bellmax solve gridworld [--method value-iteration|q-value-iteration|policy-iteration]
                  [--gamma 0.9] [--noise 0.2] [--living-reward 0] [--horizon H]
                  [--layout '...+/.#.-/S...'] [--json]
    bellmax solve FrozenLake-v1 [--map-name 8x8] [--slippery/--no-slippery] [--json]
    bellmax solve Taxi-v3 | CliffWalking-v0 ...   (resolved to the installed version)

`--json` prints one object {"method", "gamma", "noise", "iterations", "values", "policy"}:
values are keyed by state name ("x,y" for the gridworld, the state index as a string for
toy-text envs) and cover every state but the added absorbing terminal state; policy maps
state name -> action name and covers only states where the action matters, so the gridworld's
exit cells (and FrozenLake's holes and goal) appear in "values" but not in "policy".
`noise` is null for toy-text envs.

Neither torch nor gymnasium is imported for the gridworld beyond what `bellmax.envs` needs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from typing import Any

import numpy as np

from bellmax.errors import ArgumentParser, BellmaxError
from bellmax.tabular.dp import DPResult, policy_iteration, q_value_iteration, value_iteration
from bellmax.tabular.mdp import TabularMDP

METHODS = ("value-iteration", "q-value-iteration", "policy-iteration")
GRIDWORLD_TARGETS = ("gridworld", "bellmax/gridworld-v0")
DEFAULT_NOISE = 0.2
DEFAULT_LIVING_REWARD = 0.0

_ARROWS = {
    "up": "↑", "north": "↑", "down": "↓", "south": "↓",
    "left": "←", "west": "←", "right": "→", "east": "→",
}
_ASCII_ARROWS = {"↑": "^", "↓": "v", "←": "<", "→": ">"}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="bellmax solve",
        description="Exact values and greedy policy of a finite MDP (the lecture's gridworld or "
        "a Gymnasium toy-text env) by dynamic programming.",
    )
    parser.add_argument("target", help="'gridworld' or a toy-text id: FrozenLake-v1, "
                        "FrozenLake8x8-v1, Taxi-v3, CliffWalking-v0 (any installed version)")
    parser.add_argument("--method", choices=METHODS, default="value-iteration",
                        help="dynamic-programming method (default: value-iteration)")
    parser.add_argument("--gamma", type=float, default=0.9,
                        help="discount factor in (0, 1] (default: 0.9)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="exactly H Bellman backups from V_0 = 0 (default: to convergence)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a table")
    grid = parser.add_argument_group("gridworld only")
    grid.add_argument("--noise", type=float, default=None,
                      help=f"slip probability in [0, 1] (default: {DEFAULT_NOISE})")
    grid.add_argument("--living-reward", type=float, default=None,
                      help="reward per move from a non-exit cell (default: 0)")
    grid.add_argument("--layout", default=None,
                      help="text map, rows top to bottom separated by '/': '.' empty, '#' wall, "
                      "'S' start, '+'/'-'/digit exit (default: the lecture's '...+/.#.-/S...')")
    toy = parser.add_argument_group("toy-text envs only")
    toy.add_argument("--map-name", default=None, help="FrozenLake map, e.g. 4x4 or 8x8")
    toy.add_argument("--slippery", action=argparse.BooleanOptionalAction, default=None,
                     help="FrozenLake / CliffWalking is_slippery (default: the env's own)")
    return parser


def _is_gridworld(target: str) -> bool:
    return target.lower() in GRIDWORLD_TARGETS


def _validate(args: argparse.Namespace) -> None:
    if not 0.0 < args.gamma <= 1.0:  # also rejects NaN
        raise BellmaxError(f"--gamma {args.gamma} is outside (0, 1]; try --gamma 0.9.")
    if args.horizon is not None and args.horizon < 0:
        raise BellmaxError(
            f"--horizon {args.horizon} is negative; give H >= 0 backups or leave it out to "
            "iterate to convergence."
        )
    if args.horizon is not None and args.method == "policy-iteration":
        raise BellmaxError(
            "--horizon applies to value-iteration and q-value-iteration; policy iteration "
            "always solves the infinite-horizon problem."
        )
    if args.noise is not None and not 0.0 <= args.noise <= 1.0:  # also rejects NaN
        raise BellmaxError(f"--noise {args.noise} is outside [0, 1]; it is the slip probability.")
    if args.living_reward is not None and not math.isfinite(args.living_reward):
        raise BellmaxError(f"--living-reward {args.living_reward} must be a finite number.")
    if _is_gridworld(args.target):
        used = [flag for flag, value in (("--map-name", args.map_name),
                                         ("--slippery/--no-slippery", args.slippery))
                if value is not None]
        if used:
            raise BellmaxError(
                f"{', '.join(used)} applies to toy-text envs, not the gridworld; use --noise "
                "and --layout there."
            )
    else:
        used = [flag for flag, value in (("--noise", args.noise),
                                         ("--living-reward", args.living_reward),
                                         ("--layout", args.layout))
                if value is not None]
        if used:
            raise BellmaxError(
                f"{', '.join(used)} applies only to the gridworld, not {args.target}; for "
                "FrozenLake / CliffWalking use --slippery/--no-slippery and --map-name."
            )


def build_mdp(args: argparse.Namespace) -> TabularMDP:
    """The TabularMDP the parsed arguments describe."""
    if _is_gridworld(args.target):
        from bellmax.envs.gridworld import LECTURE_LAYOUT, gridworld_mdp

        return gridworld_mdp(
            noise=DEFAULT_NOISE if args.noise is None else args.noise,
            living_reward=(DEFAULT_LIVING_REWARD if args.living_reward is None
                           else args.living_reward),
            layout=LECTURE_LAYOUT if args.layout is None else args.layout,
        )
    from bellmax.tabular.mdp import from_gymnasium

    kwargs: dict[str, Any] = {}
    if args.map_name is not None:
        kwargs["map_name"] = args.map_name
    if args.slippery is not None:
        kwargs["is_slippery"] = args.slippery
    if difflib.get_close_matches(args.target.lower(), ["gridworld"], cutoff=0.75):
        raise BellmaxError(f"unknown target {args.target!r}; did you mean gridworld?")
    return from_gymnasium(args.target, **kwargs)


def run_method(mdp: TabularMDP, method: str, gamma: float, horizon: int | None) -> DPResult:
    if method == "value-iteration":
        return value_iteration(mdp, gamma=gamma, horizon=horizon)
    if method == "q-value-iteration":
        return q_value_iteration(mdp, gamma=gamma, horizon=horizon)
    return policy_iteration(mdp, gamma=gamma)


def solution_dict(mdp: TabularMDP, result: DPResult, method: str, gamma: float,
                  noise: float | None) -> dict[str, Any]:
    """The `--json` object: values of all non-terminal states, policy of decision states."""
    shown = ~mdp.terminal
    decides = mdp.decision_states()
    return {
        "method": method,
        "gamma": gamma,
        "noise": noise,
        "iterations": result.iterations,
        "values": {mdp.state_names[s]: float(result.V[s]) for s in np.flatnonzero(shown)},
        "policy": {
            mdp.state_names[s]: mdp.action_names[int(result.policy[s])]
            for s in np.flatnonzero(decides)
        },
    }


# ---------------------------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------------------------


def _arrow(action_name: str, unicode_ok: bool) -> str:
    arrow = _ARROWS.get(action_name, action_name)
    return arrow if unicode_ok else _ASCII_ARROWS.get(arrow, arrow)


def _stdout_takes_unicode() -> bool:
    try:
        "↑↓←→".encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def format_grid(mdp: TabularMDP, result: DPResult, unicode_ok: bool = True) -> str:
    """Values with policy arrows laid out on the map (gridworld, FrozenLake, CliffWalking)."""
    geometry = mdp.grid
    assert geometry is not None
    decides = mdp.decision_states()
    state_at = {cell: s for s, cell in enumerate(geometry.cells) if cell is not None}
    width = 11
    row_labels = geometry.row_labels or tuple(f"row {r}" for r in range(geometry.n_rows))
    col_labels = geometry.col_labels or tuple(f"col {c}" for c in range(geometry.n_cols))
    label_width = max(len(label) for label in row_labels)
    lines = [" " * label_width + "".join(f"{label:>{width - 3}}   " for label in col_labels)]
    for row in range(geometry.n_rows):
        cells = []
        for col in range(geometry.n_cols):
            tile = geometry.tiles.get((row, col))
            s = state_at.get((row, col))
            if s is None:  # a wall
                cells.append(f"{tile or '':^{width}}")
                continue
            if (tile and tile != "S") or not decides[s]:
                mark = tile or ""  # exit reward, hole, goal, cliff: no action to show
            else:
                mark = _arrow(mdp.action_names[int(result.policy[s])], unicode_ok)
            cells.append(f"{result.V[s]:7.3f} {mark:<3}")
        lines.append(f"{row_labels[row]:<{label_width}}" + "".join(cells).rstrip())
    return "\n".join(lines)


def format_table(mdp: TabularMDP, result: DPResult) -> str:
    """One line per state: name, value, greedy action (Taxi and other grid-less MDPs)."""
    decides = mdp.decision_states()
    lines = [f"{'state':>8}  {'value':>10}  action"]
    for s in np.flatnonzero(~mdp.terminal):
        action = mdp.action_names[int(result.policy[s])] if decides[s] else "-"
        lines.append(f"{mdp.state_names[s]:>8}  {result.V[s]:10.4f}  {action}")
    return "\n".join(lines)


def format_header(mdp: TabularMDP, args: argparse.Namespace, result: DPResult,
                  noise: float | None) -> str:
    parts = [f"{mdp.name}: {args.method}", f"gamma={args.gamma:g}"]
    if noise is not None:
        living = DEFAULT_LIVING_REWARD if args.living_reward is None else args.living_reward
        parts += [f"noise={noise:g}", f"living reward={living:g}"]
    if args.horizon is None:
        parts.append(f"converged in {result.iterations} iterations")
    else:
        parts.append(f"horizon H={args.horizon}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run `bellmax solve` with `argv` (the arguments after `solve`); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0)
    _validate(args)
    mdp = build_mdp(args)
    result = run_method(mdp, args.method, args.gamma, args.horizon)
    noise = None
    if _is_gridworld(args.target):
        noise = DEFAULT_NOISE if args.noise is None else args.noise
    if args.json:
        print(json.dumps(solution_dict(mdp, result, args.method, args.gamma, noise)))
        return 0
    print(format_header(mdp, args, result, noise))
    if mdp.grid is not None:
        print(format_grid(mdp, result, unicode_ok=_stdout_takes_unicode()))
    else:
        print(format_table(mdp, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
