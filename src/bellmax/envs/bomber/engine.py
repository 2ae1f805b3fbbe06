"""The batched Bomber engine: N games stepped together as NumPy arrays, with no loop over games.

The rules are those of `reference.py` (its docstring is the specification); this file computes
the same thing for a whole batch at once. Cells are flat indices (row * size + col), so an agent's
position is one integer and the board of game n is `board[n]`, a vector of size * size cells.

State, for N games of A agents on a size x size board (C = size * size cells):

    board        (N, C) int8   PASSAGE, RIGID or WOOD
    items        (N, C) int8   power-up of each cell (hidden while under wood)
    bomb_owner   (N, C) int8   the agent whose bomb lies there, -1 for none
    bomb_life    (N, C) int8   steps until it explodes
    bomb_strength(N, C) int8
    flames       (N, C) int8   steps the cell still burns
    position     (N, A) int64  flat cell of each agent
    alive, can_kick, done (N, A) bool;  ammo, blast (N, A) int64
    steps (N,) int64;  over (N,) bool

`tests/test_bomber_engine.py` plays thousands of random games through this engine and the
reference from the same seeds and requires identical trajectories.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bellmax.envs.bomber.config import (
    BOMB,
    BOMB_LIFE,
    EXTRA_BOMB,
    FLAME_LIFE,
    KICK,
    MOVES,
    NO_ITEM,
    PASSAGE,
    RANGE,
    RIGID,
    START_AMMO,
    START_BLAST,
    WOOD,
    BomberConfig,
)
from bellmax.envs.bomber.layout import random_layout, random_layouts

D_ROW = np.array([move[0] for move in MOVES])
D_COL = np.array([move[1] for move in MOVES])
DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))
LAYOUT_BATCH = 256  # boards drawn at a time for games that start anew


class BomberEngine:
    """N games of Bomber with the rules of `reference.py`, stepped together."""

    def __init__(self, config: BomberConfig, num_games: int, seed: int | None = None):
        config.validate()
        self.config = config
        self.num_games = num_games
        self.size = config.size
        self.cells = config.size * config.size
        self.num_agents = config.num_agents
        self.sides = np.array(config.teams())
        self.num_sides = int(self.sides.max()) + 1
        self.starts = np.array([r * self.size + c for r, c in config.start_positions()])
        self.rng = np.random.default_rng(seed)
        n, c, a = num_games, self.cells, self.num_agents
        self.board = np.zeros((n, c), np.int8)
        self.items = np.zeros((n, c), np.int8)
        self.bomb_owner = np.full((n, c), -1, np.int8)
        self.bomb_life = np.zeros((n, c), np.int8)
        self.bomb_strength = np.zeros((n, c), np.int8)
        self.flames = np.zeros((n, c), np.int8)
        self.position = np.zeros((n, a), np.int64)
        self.alive = np.zeros((n, a), bool)
        self.ammo = np.zeros((n, a), np.int64)
        self.blast = np.zeros((n, a), np.int64)
        self.can_kick = np.zeros((n, a), bool)
        self.done = np.zeros((n, a), bool)
        self.steps = np.zeros(n, np.int64)
        self.over = np.zeros(n, bool)
        self.spare_boards = np.zeros((0, c), np.int8)
        self.spare_items = np.zeros((0, c), np.int8)
        self.reset(np.arange(n))

    # -- starting games -----------------------------------------------------------------------
    def reset(self, games: np.ndarray, rngs: list[np.random.Generator] | None = None) -> None:
        """Start new games at indices `games`, each on a fresh random board (drawn with `rngs[i]`,
        one generator per game, or else with the engine's own)."""
        games = np.asarray(games)
        if rngs is None:
            boards, items = self.spare_layouts(len(games))
            self.board[games] = boards
            self.items[games] = items
        else:
            for game, rng in zip(games, rngs):
                layout = random_layout(self.config, rng)
                self.board[game] = layout.board.ravel()
                self.items[game] = layout.items.ravel()
        self.bomb_owner[games] = -1
        self.bomb_life[games] = 0
        self.bomb_strength[games] = 0
        self.flames[games] = 0
        self.position[games] = self.starts
        self.alive[games] = True
        self.ammo[games] = START_AMMO
        self.blast[games] = START_BLAST
        self.can_kick[games] = False
        self.done[games] = False
        self.steps[games] = 0
        self.over[games] = False

    def spare_layouts(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` fresh boards (flat) from a reserve drawn LAYOUT_BATCH at a time: drawing many boards
        in one go costs little more than drawing one, and games end a few at a time."""
        if len(self.spare_boards) < count:
            boards, items = random_layouts(self.config, self.rng, max(LAYOUT_BATCH, count))
            self.spare_boards = np.concatenate([self.spare_boards, boards.reshape(len(boards), -1)])
            self.spare_items = np.concatenate([self.spare_items, items.reshape(len(items), -1)])
        boards, items = self.spare_boards[:count], self.spare_items[:count]
        self.spare_boards, self.spare_items = self.spare_boards[count:], self.spare_items[count:]
        return boards, items

    GAME_ARRAYS = ("board", "items", "bomb_owner", "bomb_life", "bomb_strength", "flames", "position", "alive",
                   "ammo", "blast", "can_kick", "done", "steps", "over")

    def copy_games(self, games: np.ndarray) -> dict[str, np.ndarray]:
        """The state of `games`, to put back with `paste_games` (e.g. around a step they sit out)."""
        return {name: getattr(self, name)[games].copy() for name in self.GAME_ARRAYS}

    def paste_games(self, games: np.ndarray, saved: dict[str, np.ndarray]) -> None:
        for name in self.GAME_ARRAYS:
            getattr(self, name)[games] = saved[name]

    # -- one step of every game ---------------------------------------------------------------
    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply one step of the rules to every game (none may be over): actions (N, A) -> rewards (N, A)."""
        if self.over.any():
            raise RuntimeError("reset the games that are over before stepping them")
        cfg, games = self.config, np.arange(self.num_games)[:, None]
        actions = np.asarray(actions)
        rewards = np.zeros((self.num_games, self.num_agents))
        self.steps += 1
        # 1. flames age
        np.maximum(self.flames - 1, 0, out=self.flames)
        # 2. bombs are laid
        here = self.position
        lay = self.alive & (actions == BOMB) & (self.ammo > 0) & (self.bomb_owner[games, here] < 0)
        n_lay, a_lay = np.nonzero(lay)
        cells = here[n_lay, a_lay]
        self.bomb_owner[n_lay, cells] = a_lay
        self.bomb_life[n_lay, cells] = BOMB_LIFE
        self.bomb_strength[n_lay, cells] = self.blast[n_lay, a_lay]
        self.ammo -= lay
        # 3. agents move (and kick)
        self.move(actions)
        # 4. power-ups
        item = self.items[games, self.position]
        picked = self.alive & (item != NO_ITEM)
        n_pick, a_pick = np.nonzero(picked)
        self.items[n_pick, self.position[n_pick, a_pick]] = NO_ITEM
        self.ammo += picked & (item == EXTRA_BOMB)
        self.blast += picked & (item == RANGE)
        self.can_kick |= picked & (item == KICK)
        rewards += cfg.rewards.powerup * picked
        # 5. bombs tick and explode
        has_bomb = self.bomb_owner >= 0
        self.bomb_life -= has_bomb
        burning, exploded = self.explode(has_bomb)
        if cfg.rewards.wood or cfg.rewards.kill:
            burnt_by = self.burnt_by_owner(exploded)
        wood_burnt = burning & (self.board == WOOD)
        if cfg.rewards.wood:
            rewards += cfg.rewards.wood * (burnt_by & wood_burnt[:, None, :]).sum(2)
        self.items[burning & (self.board == PASSAGE)] = NO_ITEM  # visible power-ups burn
        self.board[wood_burnt] = PASSAGE  # wood burns down, revealing what it hid
        self.flames[burning] = FLAME_LIFE
        # 6. agents in flames die
        dying = self.alive & (self.flames[games, self.position] > 0)
        self.alive &= ~dying
        if cfg.rewards.kill and dying.any():
            rewards += cfg.rewards.kill * self.kills(dying, burnt_by)
        # 7. rewards and the end
        rewards += cfg.rewards.step * self.alive
        self.settle(rewards)
        return rewards

    def move(self, actions: np.ndarray) -> None:
        size, games = self.size, np.arange(self.num_games)[:, None]
        position, alive = self.position, self.alive
        moving = alive & (actions >= 1) & (actions <= 4)
        row, col = position // size + D_ROW[actions], position % size + D_COL[actions]
        inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
        target = np.where(inside, row * size + col, position)
        target = np.where(moving & inside & (self.board[games, np.clip(target, 0, self.cells - 1)] == PASSAGE),
                          target, position)
        # kicks: where each kicked bomb would slide, with everything that would stop it
        into_bomb = (target != position) & (self.bomb_owner[games, target] >= 0)
        kick_paths = np.zeros((self.num_games, self.num_agents, self.cells), bool)
        kick_end = target.copy()
        if into_bomb.any():
            occupied = np.zeros((self.num_games, self.cells), bool)
            for agent in range(self.num_agents):
                live = alive[:, agent]
                occupied[live, position[live, agent]] = True
                occupied[live, target[live, agent]] = True
            kicker = into_bomb & self.can_kick
            for n, agent in zip(*np.nonzero(kicker)):
                path = self.slide(n, target[n, agent], int(actions[n, agent]), occupied[n])
                if path:
                    kick_paths[n, agent, path] = True
                    kick_end[n, agent] = path[-1]
            kicked = kick_paths.any(2)
            overlap = np.zeros_like(kicked)
            for i in range(self.num_agents):
                for j in range(self.num_agents):
                    if i != j:
                        overlap[:, i] |= (kick_paths[:, i] & kick_paths[:, j]).any(1)
            refused = into_bomb & (~kicked | overlap)
            target = np.where(refused, position, target)
        # bounce conflicts back, everyone involved at once, until none is left
        while True:
            staying = target == position
            bounce = np.zeros_like(moving)
            for i in range(self.num_agents):
                for j in range(self.num_agents):
                    if i == j:
                        continue
                    same_target = target[:, j] == target[:, i]
                    swap = (target[:, i] == position[:, j]) & (target[:, j] == position[:, i])
                    into_stayer = (target[:, i] == position[:, j]) & staying[:, j]
                    bounce[:, i] |= alive[:, j] & (same_target | swap | into_stayer)
            bounce &= alive & ~staying
            if not bounce.any():
                break
            target = np.where(bounce, position, target)
        # kicked bombs move with their kickers
        n_kick, a_kick = np.nonzero(kick_paths.any(2) & (target != position))
        if len(n_kick):
            start, end = target[n_kick, a_kick], kick_end[n_kick, a_kick]
            for array in (self.bomb_owner, self.bomb_life, self.bomb_strength):
                moved = array[n_kick, start].copy()
                array[n_kick, start] = -1 if array is self.bomb_owner else 0
                array[n_kick, end] = moved
        self.position = target

    def slide(self, game: int, start: int, action: int, blocked: np.ndarray) -> list[int]:
        """The cells a bomb kicked at `start` passes through, ending where it stops ([] if it cannot
        move). Kicks are rare: one game at a time."""
        size, d_row, d_col = self.size, int(D_ROW[action]), int(D_COL[action])
        row, col = divmod(start, size)
        path: list[int] = []
        while True:
            row, col = row + d_row, col + d_col
            cell = row * size + col
            if (not (0 <= row < size and 0 <= col < size) or self.board[game, cell] != PASSAGE
                    or self.bomb_owner[game, cell] >= 0 or (blocked[cell] and cell != start)):
                return [start, *path] if path else []
            path.append(cell)

    def blast_cells(self, bombs: np.ndarray, strength: np.ndarray) -> np.ndarray:
        """Cells burnt by the bombs marked in `bombs` (N, C) with blast `strength` (N, C): each burns
        its cell and up to strength - 1 cells per direction, stopping before rigid walls and at the
        first wooden wall."""
        size = self.size
        burn = bombs.copy()
        games = np.flatnonzero(bombs.any(1))
        if len(games) == 0:
            return burn
        board = self.board[games].reshape(-1, size, size)
        reach = np.where(bombs[games], strength[games] - 1, 0).reshape(-1, size, size)
        sub_burn = burn[games].reshape(-1, size, size)
        for d_row, d_col in DIRECTIONS:
            front = reach
            while front.any():
                shifted = np.zeros_like(front)  # shifted[r, c] = front[r - d_row, c - d_col]
                rows_to = slice(max(d_row, 0), size + min(d_row, 0))
                rows_from = slice(max(-d_row, 0), size + min(-d_row, 0))
                cols_to = slice(max(d_col, 0), size + min(d_col, 0))
                cols_from = slice(max(-d_col, 0), size + min(-d_col, 0))
                shifted[:, rows_to, cols_to] = front[:, rows_from, cols_from]
                reached = (shifted > 0) & (board != RIGID)
                sub_burn |= reached
                front = np.where(reached & (board != WOOD), shifted - 1, 0)
        burn[games] = sub_burn.reshape(len(games), -1)
        return burn

    def explode(self, has_bomb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Explode bombs at life 0 or in flames and every bomb their flames reach, in one step.
        Returns (cells set burning, bombs that exploded)."""
        exploding = has_bomb & ((self.bomb_life <= 0) | (self.flames > 0))
        exploded = np.zeros_like(has_bomb)
        burning = np.zeros_like(has_bomb)
        while exploding.any():
            exploded |= exploding
            burning |= self.blast_cells(exploding, self.bomb_strength)
            exploding = has_bomb & burning & ~exploded
        # what the shaping rewards need of the exploded bombs, before they are cleared
        self.exploded_owner = np.where(exploded, self.bomb_owner, -1)
        self.exploded_strength = np.where(exploded, self.bomb_strength, 0)
        if exploded.any():
            n, cell = np.nonzero(exploded)
            np.add.at(self.ammo, (n, self.bomb_owner[n, cell].astype(np.int64)), 1)
            self.bomb_owner[exploded] = -1
            self.bomb_life[exploded] = 0
            self.bomb_strength[exploded] = 0
        return burning, exploded

    def burnt_by_owner(self, exploded: np.ndarray) -> np.ndarray:
        """(N, A, C): the cells burnt by each agent's exploded bombs (for the kill and wood rewards)."""
        burnt = np.zeros((self.num_games, self.num_agents, self.cells), bool)
        for agent in range(self.num_agents):
            own = exploded & (self.exploded_owner == agent)
            if own.any():
                burnt[:, agent] = self.blast_cells(own, self.exploded_strength)
        return burnt

    def kills(self, dying: np.ndarray, burnt_by: np.ndarray) -> np.ndarray:
        """(N, A): enemies each agent's exploded bombs killed this step."""
        games = np.arange(self.num_games)[:, None]
        kills = np.zeros((self.num_games, self.num_agents))
        for victim in range(self.num_agents):
            hit = burnt_by[games[:, 0], :, self.position[:, victim]]  # (N, A): whose flames cover the victim
            enemy = self.sides != self.sides[victim]
            kills += dying[:, victim, None] & hit & enemy[None, :]
        return kills

    def settle(self, rewards: np.ndarray) -> None:
        """Hand out win and lose, once per agent, and mark the games that are over."""
        cfg = self.config
        side_alive = np.zeros((self.num_games, self.num_sides), bool)
        for agent in range(self.num_agents):
            side_alive[:, self.sides[agent]] |= self.alive[:, agent]
        lost = ~self.done & ~side_alive[:, self.sides]
        rewards += cfg.rewards.lose * lost
        self.done |= lost
        sides_left = side_alive.sum(1)
        over = (sides_left <= 1) | (self.steps >= cfg.max_steps)
        final = over[:, None] & ~self.done
        rewards += np.where(final, np.where(sides_left[:, None] == 1, cfg.rewards.win, cfg.rewards.lose), 0.0)
        self.done |= final
        self.over = over

    # -- reading the state --------------------------------------------------------------------
    def winners(self, game: int) -> list[int]:
        """The agents of the winning side of a game that is over ([] for a draw)."""
        sides_alive = {int(self.sides[a]) for a in range(self.num_agents) if self.alive[game, a]}
        if not self.over[game] or len(sides_alive) != 1:
            return []
        side = sides_alive.pop()
        return [a for a in range(self.num_agents) if self.sides[a] == side]

    def state(self, game: int) -> dict[str, Any]:
        """The full state of one game as plain arrays (the `state()` the environments expose)."""
        size = self.size
        return {
            "board": self.board[game].reshape(size, size).copy(),
            "items": self.items[game].reshape(size, size).copy(),
            "bomb_owner": self.bomb_owner[game].reshape(size, size).copy(),
            "bomb_life": self.bomb_life[game].reshape(size, size).copy(),
            "bomb_strength": self.bomb_strength[game].reshape(size, size).copy(),
            "flames": self.flames[game].reshape(size, size).copy(),
            "position": np.stack(np.divmod(self.position[game], size), axis=1),
            "alive": self.alive[game].copy(),
            "ammo": self.ammo[game].copy(),
            "blast": self.blast[game].copy(),
            "can_kick": self.can_kick[game].copy(),
            "steps": int(self.steps[game]),
            "over": bool(self.over[game]),
        }

    def set_state(self, game: int, state: dict[str, Any]) -> None:
        """Put a state in the layout of `state()` into game `game` (hand-made positions for tests,
        a game copied from elsewhere)."""
        size = self.size
        for name in ("board", "items", "bomb_owner", "bomb_life", "bomb_strength", "flames"):
            getattr(self, name)[game] = np.asarray(state[name]).reshape(-1)
        position = np.asarray(state["position"])
        self.position[game] = position[:, 0] * size + position[:, 1]
        for name in ("alive", "ammo", "blast", "can_kick"):
            getattr(self, name)[game] = state[name]
        self.steps[game] = state["steps"]
        self.over[game] = state["over"]
        self.done[game] = state.get("done", ~np.asarray(state["alive"]))

