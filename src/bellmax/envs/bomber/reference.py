"""The rules of Bomber, as one plainly written game: the reference the batched engine is tested
against (`tests/test_bomber_engine.py` plays thousands of random games through both).

The rules are Pommerman's, written anew. One step, in this order:

1. Flames age: every burning cell loses one step of life; at 0 it goes out.
2. Bombs are laid: a living agent whose action is BOMB, with ammo left and no bomb under it, lays
   one there (life BOMB_LIFE, its current blast strength); its ammo drops by one.
3. Agents move. A move toward the board's edge, a rigid or a wooden wall is refused. A move into a
   bomb is refused too, unless the agent can kick: then the bomb slides in that direction to the
   last cell before an obstacle (a wall, the edge, another bomb, an agent, or a cell an agent is
   moving into); a bomb that cannot slide one cell is not kicked. Conflicts bounce back, alike for
   everyone involved, until none is left: agents moving into the same cell, agents swapping cells,
   an agent moving into a cell whose agent stays, and two kicked bombs whose slides overlap all
   stay where they were. A kicked bomb moves only if its kicker's move stands.
4. Power-ups are picked up: an agent on a visible power-up takes it (extra bomb: ammo + 1; range:
   blast strength + 1; kick: may kick bombs from now on).
5. Bombs tick and explode: every bomb loses one step of life; a bomb at life 0, or standing in
   flames, explodes, and so does every bomb its flames reach, in the same step (chain reactions).
   A bomb of blast strength s burns its own cell and up to s - 1 cells in each of the four
   directions; its flames stop before a rigid wall and at the first wooden wall, which burns down
   (revealing the power-up under it). Flames destroy the visible power-ups they reach and burn
   for FLAME_LIFE steps. An exploded bomb's ammo returns to its owner.
6. Agents in flames die (also those who walked into flames still burning from an earlier step).
7. Rewards and the end. Free-for-all: a dying agent gets `lose`; when at most one agent is left
   alive the game is over and the survivor gets `win`. Team mode (agents 0 and 2 against 1 and 3):
   when a team has no living agent left, each of its agents gets `lose` (dead or alive); when at
   most one team is left the game is over and the survivors' team gets `win`. At the step limit
   every agent still alive gets `lose`. Shaping terms (`Rewards.step`, `kill`, `powerup`, `wood`)
   come on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from bellmax.envs.bomber.layout import Layout

Cell = tuple[int, int]


@dataclass
class Bomb:
    life: int
    strength: int
    owner: int


@dataclass
class Agent:
    position: Cell
    alive: bool = True
    ammo: int = START_AMMO
    blast: int = START_BLAST
    can_kick: bool = False
    done: bool = False  # has received its final win or lose


@dataclass
class Game:
    """One game of Bomber. `step(actions)` applies the rules above and returns each agent's reward."""

    config: BomberConfig
    board: np.ndarray  # (size, size): PASSAGE, RIGID or WOOD
    items: np.ndarray  # (size, size): power-up at each cell (hidden while under wood)
    agents: list[Agent]
    bombs: dict[Cell, Bomb] = field(default_factory=dict)
    flames: dict[Cell, int] = field(default_factory=dict)  # cell -> steps left
    steps: int = 0
    over: bool = False

    @classmethod
    def start(cls, config: BomberConfig, layout: Layout) -> Game:
        return cls(config, layout.board.copy(), layout.items.copy(), [Agent(p) for p in config.start_positions()])

    # -- helpers ------------------------------------------------------------------------------
    def on_board(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.config.size and 0 <= cell[1] < self.config.size

    def living(self) -> list[int]:
        return [i for i, agent in enumerate(self.agents) if agent.alive]

    def blast_cells(self, cell: Cell, strength: int) -> tuple[set[Cell], set[Cell]]:
        """(cells a bomb at `cell` sets burning, wooden walls among them)."""
        burning, wood = {cell}, set()
        for d_row, d_col in MOVES[1:5]:
            for distance in range(1, strength):
                target = (cell[0] + d_row * distance, cell[1] + d_col * distance)
                if not self.on_board(target) or self.board[target] == RIGID:
                    break
                burning.add(target)
                if self.board[target] == WOOD:
                    wood.add(target)
                    break
        return burning, wood

    # -- one step -----------------------------------------------------------------------------
    def step(self, actions: list[int]) -> list[float]:
        cfg, rewards = self.config, [0.0] * len(self.agents)
        self.steps += 1
        # 1. flames age
        self.flames = {cell: life - 1 for cell, life in self.flames.items() if life > 1}
        # 2. bombs are laid
        for i, agent in enumerate(self.agents):
            if agent.alive and actions[i] == BOMB and agent.ammo > 0 and agent.position not in self.bombs:
                self.bombs[agent.position] = Bomb(BOMB_LIFE, agent.blast, i)
                agent.ammo -= 1
        # 3. agents move (and kick)
        self.move(actions)
        # 4. power-ups
        for i, agent in enumerate(self.agents):
            item = int(self.items[agent.position])
            if agent.alive and item != NO_ITEM and self.board[agent.position] == PASSAGE:
                self.items[agent.position] = NO_ITEM
                agent.ammo += item == EXTRA_BOMB
                agent.blast += item == RANGE
                agent.can_kick |= item == KICK
                rewards[i] += cfg.rewards.powerup
        # 5. bombs tick and explode
        for bomb in self.bombs.values():
            bomb.life -= 1
        burning, burnt_by = self.explode()
        for cell, owners in burnt_by.items():
            if self.board[cell] == WOOD:
                self.board[cell] = PASSAGE
                for owner in owners:
                    rewards[owner] += cfg.rewards.wood
            elif self.items[cell] != NO_ITEM:
                self.items[cell] = NO_ITEM  # a visible power-up burns
        for cell in burning:
            self.flames[cell] = FLAME_LIFE
        # 6. agents in flames die
        dying = [i for i in self.living() if self.agents[i].position in self.flames]
        teams = cfg.teams()
        for i in dying:
            self.agents[i].alive = False
            killers = burnt_by.get(self.agents[i].position, set())
            for owner in killers:
                if teams[owner] != teams[i]:
                    rewards[owner] += cfg.rewards.kill
        # 7. rewards and the end
        for i in self.living():
            rewards[i] += cfg.rewards.step
        self.settle(rewards)
        return rewards

    def move(self, actions: list[int]) -> None:
        agents = self.agents
        targets: list[Cell] = []
        for i, agent in enumerate(agents):
            d_row, d_col = MOVES[actions[i]] if agent.alive else (0, 0)
            target = (agent.position[0] + d_row, agent.position[1] + d_col)
            if not self.on_board(target) or self.board[target] in (RIGID, WOOD):
                target = agent.position
            targets.append(target)
        # kicks: where each kicked bomb would slide, with everything that would stop it
        living = [i for i in range(len(agents)) if agents[i].alive]
        occupied = {agents[i].position for i in living} | {targets[i] for i in living}
        kicks: dict[int, list[Cell]] = {}
        for i, agent in enumerate(agents):
            if targets[i] == agent.position or targets[i] not in self.bombs:
                continue
            path = self.slide(targets[i], actions[i], occupied - {targets[i]}) if agent.can_kick else []
            if path:
                kicks[i] = path
            else:
                targets[i] = agent.position
        for i in list(kicks):  # slides that overlap another slide both fail
            if any(j != i and set(kicks[i]) & set(kicks[j]) for j in kicks):
                targets[i] = agents[i].position
        kicks = {i: path for i, path in kicks.items() if targets[i] != agents[i].position}
        # bounce conflicts back, everyone involved at once, until none is left
        while True:
            bounced = set()
            for i in living:
                if targets[i] == agents[i].position:
                    continue
                for j in living:
                    same_target = j != i and targets[j] == targets[i]
                    swap = j != i and targets[i] == agents[j].position and targets[j] == agents[i].position
                    into_stayer = j != i and targets[i] == agents[j].position and targets[j] == agents[j].position
                    if same_target or swap or into_stayer:
                        bounced.add(i)
            if not bounced:
                break
            for i in bounced:
                targets[i] = agents[i].position
        for i, path in kicks.items():
            if targets[i] != agents[i].position:
                self.bombs[path[-1]] = self.bombs.pop(path[0])
        for i, agent in enumerate(agents):
            agent.position = targets[i]

    def slide(self, start: Cell, action: int, blocked: set[Cell]) -> list[Cell]:
        """The cells a bomb kicked at `start` in the direction of `action` passes through, ending
        where it stops ([] when it cannot move at all)."""
        d_row, d_col = MOVES[action]
        path: list[Cell] = []
        cell = start
        while True:
            following = (cell[0] + d_row, cell[1] + d_col)
            if (not self.on_board(following) or self.board[following] != PASSAGE or following in self.bombs
                    or following in blocked):
                return [start, *path] if path else []
            path.append(following)
            cell = following

    def explode(self) -> tuple[set[Cell], dict[Cell, set[int]]]:
        """Explode every bomb at life 0 or in flames, and the chains they set off. Returns the cells
        set burning and, for each, the owners of the bombs that burnt it."""
        burning: set[Cell] = set()
        burnt_by: dict[Cell, set[int]] = {}
        pending = [cell for cell, bomb in self.bombs.items() if bomb.life <= 0 or cell in self.flames]
        while pending:
            cell = pending.pop()
            if cell not in self.bombs:
                continue
            bomb = self.bombs.pop(cell)
            self.agents[bomb.owner].ammo += 1
            cells, _ = self.blast_cells(cell, bomb.strength)
            for burnt in cells:
                burnt_by.setdefault(burnt, set()).add(bomb.owner)
                if burnt in self.bombs:
                    pending.append(burnt)
            burning |= cells
        return burning, burnt_by

    def settle(self, rewards: list[float]) -> None:
        """Hand out win and lose, once per agent, and decide whether the game is over."""
        cfg, teams = self.config, self.config.teams()
        alive_sides = {teams[i] for i in self.living()}
        for i, agent in enumerate(self.agents):  # a side without a living agent has lost
            if not agent.done and teams[i] not in alive_sides:
                rewards[i] += cfg.rewards.lose
                agent.done = True
        if len(alive_sides) <= 1 or self.steps >= cfg.max_steps:
            self.over = True
            for i, agent in enumerate(self.agents):  # the survivors win, or everyone left loses at the limit
                if not agent.done:
                    rewards[i] += cfg.rewards.win if len(alive_sides) == 1 else cfg.rewards.lose
                    agent.done = True

    def winners(self) -> list[int]:
        """The agents of the winning side once the game is over ([] for a draw)."""
        teams = self.config.teams()
        alive_sides = {teams[i] for i in self.living()}
        if not self.over or len(alive_sides) != 1:
            return []
        side = alive_sides.pop()
        return [i for i in range(len(self.agents)) if teams[i] == side]

    def state(self) -> dict[str, object]:
        """The full state as plain arrays, in the layout of `BomberEngine.state`."""
        size = self.config.size
        grids = {name: np.full((size, size), fill, np.int8) for name, fill in
                 (("bomb_owner", -1), ("bomb_life", 0), ("bomb_strength", 0), ("flames", 0))}
        for (row, col), bomb in self.bombs.items():
            grids["bomb_owner"][row, col] = bomb.owner
            grids["bomb_life"][row, col] = bomb.life
            grids["bomb_strength"][row, col] = bomb.strength
        for (row, col), life in self.flames.items():
            grids["flames"][row, col] = life
        return {
            "board": self.board.copy(), "items": self.items.copy(), **grids,
            "position": np.array([agent.position for agent in self.agents]),
            "alive": np.array([agent.alive for agent in self.agents]),
            "ammo": np.array([agent.ammo for agent in self.agents]),
            "blast": np.array([agent.blast for agent in self.agents]),
            "can_kick": np.array([agent.can_kick for agent in self.agents]),
            "steps": self.steps, "over": self.over,
        }
