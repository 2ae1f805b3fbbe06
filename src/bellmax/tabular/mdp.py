"""TabularMDP: a finite MDP as arrays, the object every exact method in `tabular/dp.py` reads.

An MDP here is (S, A, P, R) with

    P[s, a, s'] = P(s' | s, a)        rows sum to 1 over s'
    R[s, a, s'] = reward for the transition s -a-> s'

plus a boolean `terminal` mask. Terminal states are absorbing with zero reward
(P[t, a, t] = 1, R[t, a, :] = 0), so a backup through them adds nothing and no value is
bootstrapped past the end of an episode: V(t) = 0 for every Bellman operator in dp.py.

Two constructors build one:
- `bellmax.envs.gridworld.gridworld_mdp(...)`: the lecture's 4x3 gridworld or any text map,
  defined beside its Gymnasium environment;
- `from_gymnasium(env_id, **kwargs)`, from a Gymnasium toy-text environment's `P` table
  (FrozenLake, Taxi, CliffWalking). Each transition flagged `done=True` in that table leads to
  one added absorbing state (named "terminal", the last index), keeping its reward.

Gymnasium is imported lazily, inside the functions that need it, so `bellmax solve` starts fast.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bellmax.errors import BellmaxError

TERMINAL_STATE_NAME = "terminal"

# Gymnasium toy-text action meanings, from each environment's documentation.
_TOY_TEXT_ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "FrozenLake": ("left", "down", "right", "up"),
    "FrozenLake8x8": ("left", "down", "right", "up"),
    "Taxi": ("south", "north", "east", "west", "pickup", "dropoff"),
    "CliffWalking": ("up", "right", "down", "left"),
    "CliffWalkingSlippery": ("up", "right", "down", "left"),
}


@dataclass(frozen=True)
class GridGeometry:
    """Where each state sits on a 2-D grid, for rendering values and policies as a map.

    Row 0 is the top row of the map as printed. `cells[s]` is the (row, col) of state s, or None
    for states that are not drawn (the absorbing terminal state). `tiles` labels special
    positions, e.g. "#" for a wall, "+1" for an exit, "H" for a FrozenLake hole.
    """

    n_rows: int
    n_cols: int
    cells: tuple[tuple[int, int] | None, ...]
    tiles: dict[tuple[int, int], str] = field(default_factory=dict)
    # Column / row headers for printing, e.g. ("x=1", ...) for the lecture's x,y naming.
    col_labels: tuple[str, ...] | None = None
    row_labels: tuple[str, ...] | None = None


@dataclass(eq=False)
class TabularMDP:
    """A finite MDP: P[s, a, s'], R[s, a, s'], terminal mask, and names for printing.

    Arrays are float64; `__post_init__` validates shapes, probabilities and that terminal states
    are absorbing with zero reward, raising `BellmaxError` with the offending entry otherwise.
    """

    P: np.ndarray  # (n_states, n_actions, n_states): P(s' | s, a)
    R: np.ndarray  # (n_states, n_actions, n_states): reward of s -a-> s'
    terminal: np.ndarray  # (n_states,) bool: absorbing, zero-reward states
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    initial_distribution: np.ndarray | None = None  # (n_states,) start-state distribution mu_0
    grid: GridGeometry | None = None
    name: str = "mdp"

    def __post_init__(self) -> None:
        self.P = np.asarray(self.P, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        self.terminal = np.asarray(self.terminal, dtype=bool)
        self.state_names = tuple(str(n) for n in self.state_names)
        self.action_names = tuple(str(n) for n in self.action_names)
        if self.initial_distribution is not None:
            self.initial_distribution = np.asarray(self.initial_distribution, dtype=np.float64)
        self._validate()
        # r(s, a) = sum_s' P(s'|s,a) R(s,a,s'): the expected one-step reward every backup uses.
        self.expected_reward = np.einsum("ijk,ijk->ij", self.P, self.R)
        self._index_of_name = {name: i for i, name in enumerate(self.state_names)}

    def _validate(self) -> None:
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2]:
            raise BellmaxError(
                f"P must have shape (n_states, n_actions, n_states), got {self.P.shape}; "
                "index it as P[s, a, s']."
            )
        if self.R.shape != self.P.shape:
            raise BellmaxError(
                f"R has shape {self.R.shape} but P has shape {self.P.shape}; give R[s, a, s'] "
                "with the same shape as P."
            )
        n_states, n_actions, _ = self.P.shape
        if self.terminal.shape != (n_states,):
            raise BellmaxError(
                f"terminal mask has shape {self.terminal.shape}, expected ({n_states},): one "
                "flag per state."
            )
        if len(self.state_names) != n_states or len(self.action_names) != n_actions:
            raise BellmaxError(
                f"got {len(self.state_names)} state names and {len(self.action_names)} action "
                f"names for an MDP with {n_states} states and {n_actions} actions; give one "
                "name each."
            )
        if not (np.all(np.isfinite(self.P)) and np.all(np.isfinite(self.R))):
            raise BellmaxError("P and R must be finite; replace NaN/inf entries.")
        if np.any(self.P < 0):
            s, a, s_next = np.argwhere(self.P < 0)[0]
            raise BellmaxError(
                f"P[{s}, {a}, {s_next}] = {self.P[s, a, s_next]} is negative; "
                "probabilities must be >= 0."
            )
        row_sums = self.P.sum(axis=2)
        bad = np.argwhere(np.abs(row_sums - 1.0) > 1e-9)
        if bad.size:
            s, a = bad[0]
            raise BellmaxError(
                f"P[{s}, {a}, :] sums to {row_sums[s, a]:.12g}, not 1; each (state, action) "
                "row must be a probability distribution over next states."
            )
        for t in np.flatnonzero(self.terminal):
            if not np.all(self.P[t, :, t] == 1.0) or np.any(self.R[t] != 0.0):
                raise BellmaxError(
                    f"terminal state {self.state_names[t]!r} must be absorbing with zero reward "
                    f"(P[{t}, a, {t}] = 1 and R[{t}] = 0 for every action)."
                )
        if self.initial_distribution is not None:
            mu0 = self.initial_distribution
            if mu0.shape != (n_states,) or np.any(mu0 < 0) or abs(mu0.sum() - 1.0) > 1e-9:
                raise BellmaxError(
                    f"initial_distribution must be a probability vector of length {n_states}."
                )

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def state_index(self, name: str) -> int:
        """Index of the state called `name` (e.g. "3,3" in the gridworld, "0" in FrozenLake)."""
        try:
            return self._index_of_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.state_names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BellmaxError(f"no state named {name!r} in {self.name}{hint}") from None

    def decision_states(self) -> np.ndarray:
        """Bool mask of states where the choice of action matters.

        False for terminal states and for states where every action has the same outcome
        (P and R equal across actions), e.g. the gridworld's exit cells and FrozenLake's holes
        and goal: a greedy "policy" there is an arbitrary tie-break, so printouts omit it.
        """
        same_P = np.all(np.abs(self.P - self.P[:, :1, :]) <= 1e-12, axis=(1, 2))
        same_R = np.all(np.abs(self.R - self.R[:, :1, :]) <= 1e-12, axis=(1, 2))
        return ~self.terminal & ~(same_P & same_R)

    @classmethod
    def from_gymnasium(cls, env_id: str, **kwargs: Any) -> TabularMDP:
        """A Gymnasium toy-text environment's `P` table as a TabularMDP; see `from_gymnasium`."""
        return from_gymnasium(env_id, **kwargs)


# ---------------------------------------------------------------------------------------------
# Gymnasium toy-text environments
# ---------------------------------------------------------------------------------------------


def _split_version(env_id: str) -> tuple[str, int | None]:
    match = re.fullmatch(r"(.*)-v(\d+)", env_id)
    return (match.group(1), int(match.group(2))) if match else (env_id, None)


def resolve_gymnasium_id(env_id: str) -> str:
    """The registered Gymnasium id for `env_id`, accepting other versions of the same name.

    Gymnasium 1.x renamed some toy-text versions (Taxi-v3 -> Taxi-v4, CliffWalking-v0 -> v1);
    asking for a version that is not installed resolves to the newest installed version of that
    name. An unknown name raises BellmaxError listing close matches.
    """
    import gymnasium as gym

    registered = list(gym.registry.keys())
    if env_id in gym.registry:
        return env_id
    base, _ = _split_version(env_id)
    versions = [
        (version, key)
        for key in registered
        for key_base, version in [_split_version(key)]
        if key_base == base and version is not None
    ]
    if versions:
        return max(versions)[1]
    toy_text = [k for k in registered if _split_version(k)[0] in _TOY_TEXT_ACTION_NAMES]
    candidates = list(dict.fromkeys(toy_text + registered))  # toy-text first, no duplicates
    close = difflib.get_close_matches(env_id, candidates, n=3, cutoff=0.5)
    if not close:
        lowered = {k.lower(): k for k in candidates}
        close = [lowered[k] for k in difflib.get_close_matches(env_id.lower(), lowered, n=3)]
    hint = f"did you mean {', '.join(close)}?" if close else f"try one of {', '.join(toy_text)}."
    raise BellmaxError(f"unknown environment id {env_id!r}; {hint}")


def from_gymnasium(env_id: str, **kwargs: Any) -> TabularMDP:
    """Build a TabularMDP from a Gymnasium toy-text env's `P[s][a] = [(p, s', r, done), ...]`.

    `kwargs` go to `gymnasium.make` (e.g. `is_slippery=False`, `map_name="8x8"`). A transition
    with done=True leads to one added absorbing state (index n, named "terminal") and keeps its
    reward, so values never bootstrap past the end of an episode. Several entries with the same
    (s, a, s') add their probabilities, and R[s, a, s'] becomes their probability-weighted mean
    reward, which keeps r(s, a) = sum_s' P R exact.
    """
    import gymnasium as gym

    resolved_id = resolve_gymnasium_id(env_id)
    try:
        env = gym.make(resolved_id, **kwargs)
    except TypeError as error:
        raise BellmaxError(
            f"{resolved_id} does not accept {sorted(kwargs)}: {error}; drop those options."
        ) from None
    except (KeyError, ValueError) as error:  # e.g. FrozenLake map_name="9x9"
        raise BellmaxError(
            f"{resolved_id} rejected options {kwargs}: {error!r}; check their values."
        ) from None
    except gym.error.Error as error:  # e.g. a missing optional dependency
        raise BellmaxError(f"cannot build {resolved_id}: {error}") from None
    base_env = env.unwrapped
    table = getattr(base_env, "P", None)
    if not isinstance(table, dict):
        raise BellmaxError(
            f"{resolved_id} has no transition table `P`; exact methods need a toy-text env such "
            "as FrozenLake-v1, Taxi-v4 or CliffWalking-v1."
        )
    if getattr(base_env, "fickle_passenger", False):
        raise BellmaxError(
            "Taxi's fickle_passenger changes destinations outside its P table; solve it with "
            "fickle_passenger=False."
        )
    obs_space, action_space = base_env.observation_space, base_env.action_space
    if not isinstance(obs_space, gym.spaces.Discrete) or not isinstance(action_space, gym.spaces.Discrete):
        raise BellmaxError(
            f"{resolved_id} has {obs_space} observations and {action_space} actions; exact methods "
            "need Discrete ones (a finite table of states and actions)."
        )
    n_env_states = int(obs_space.n)
    n_actions = int(action_space.n)
    n_states = n_env_states + 1  # + the absorbing terminal state
    absorbing = n_env_states
    P = np.zeros((n_states, n_actions, n_states))
    reward_mass = np.zeros((n_states, n_actions, n_states))  # sum of p * r per (s, a, s')
    for s, per_action in table.items():
        for a, outcomes in per_action.items():
            for prob, s_next, reward, done in outcomes:
                target = absorbing if done else int(s_next)
                P[s, a, target] += prob
                reward_mass[s, a, target] += prob * reward
    P[absorbing, :, absorbing] = 1.0
    R = np.divide(reward_mass, P, out=np.zeros_like(P), where=P > 0)
    terminal = np.zeros(n_states, dtype=bool)
    terminal[absorbing] = True

    initial = getattr(base_env, "initial_state_distrib", None)
    initial_distribution = None
    if initial is not None:
        initial_distribution = np.append(np.asarray(initial, dtype=np.float64), 0.0)
    base_name, _ = _split_version(resolved_id)
    action_names = _TOY_TEXT_ACTION_NAMES.get(base_name, tuple(str(a) for a in range(n_actions)))
    env.close()
    return TabularMDP(
        P=P,
        R=R,
        terminal=terminal,
        state_names=tuple(str(s) for s in range(n_env_states)) + (TERMINAL_STATE_NAME,),
        action_names=action_names,
        initial_distribution=initial_distribution,
        grid=_toy_text_grid(base_env, n_env_states),
        name=resolved_id,
    )


def _toy_text_grid(base_env: Any, n_env_states: int) -> GridGeometry | None:
    """Grid geometry for FrozenLake (its `desc` map) and CliffWalking (4x12); None for Taxi."""
    desc = getattr(base_env, "desc", None)
    if desc is not None and getattr(base_env, "nrow", None) is not None:  # FrozenLake
        n_rows, n_cols = int(base_env.nrow), int(base_env.ncol)
        letters = [[bytes(c).decode() for c in row] for row in np.asarray(desc)]
        tiles = {
            (r, c): letters[r][c]
            for r in range(n_rows)
            for c in range(n_cols)
            if letters[r][c] in "SHG"
        }
    elif getattr(base_env, "_cliff", None) is not None:  # CliffWalking
        n_rows, n_cols = (int(x) for x in base_env.shape)
        tiles = {(int(r), int(c)): "C" for r, c in np.argwhere(base_env._cliff)}
        tiles[(n_rows - 1, 0)] = "S"
        tiles[(n_rows - 1, n_cols - 1)] = "G"
    else:
        return None
    if n_rows * n_cols != n_env_states:
        return None
    cells = tuple((s // n_cols, s % n_cols) for s in range(n_env_states)) + (None,)
    return GridGeometry(n_rows=n_rows, n_cols=n_cols, cells=cells, tiles=tiles)
