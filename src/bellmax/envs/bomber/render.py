"""Pictures of a Bomber game: text for a terminal, RGB frames for videos, and animated GIFs.

Both pictures take one game's full state in the layout of `BomberEngine.state(game)` (a dict of
plain arrays: board, items, bomb_owner, bomb_life, bomb_strength, flames, position, alive, ammo,
blast, can_kick, steps, over) and its `BomberConfig`.

`ansi` draws one character per cell, separated by spaces so the board looks square:

    #  rigid wall      +  wooden wall     .  passage        *  flames
    b  bomb           0-3 agents (living ones; an agent on its own bomb hides the `b`)
    a  extra bomb      r  range           k  kick            (visible power-ups)

with a header line (the step, and each agent's ammo, blast strength and kick) and a line per bomb
below the board (its life, strength and owner), so nothing of the state a player sees is lost.
Power-ups under wood are hidden, as in the game.

`rgb_array` draws sprites: a sand passage, bevelled grey rigid blocks, wooden crates, bombs as dark
circles showing their remaining life (a number and a bar that shrinks from green to red), flames
orange and yellow (dimmer and redder as they die down), power-ups as small badges (a bomb on white for the extra
bomb, a white cross on green for range, a white boot on purple for kick), agents as coloured discs
with their index (red 0, blue 1, pink 2, cyan 3; dead agents are not drawn). Each distinct cell is
drawn once with Pillow, four times oversampled for smooth edges, and cached; a frame is then one
NumPy gather of cached cells: 0.1-0.3 ms for an 11 x 11 board at 32 pixels a cell once its cells
are cached (about 2 ms for the first frame, which draws them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bellmax.envs.bomber.config import (
    BOMB_LIFE,
    EXTRA_BOMB,
    FLAME_LIFE,
    KICK,
    NO_ITEM,
    PASSAGE,
    RANGE,
    RIGID,
    WOOD,
    BomberConfig,
)

# -- text -------------------------------------------------------------------------------------
BOARD_CHARS = {PASSAGE: ".", RIGID: "#", WOOD: "+"}
ITEM_CHARS = {EXTRA_BOMB: "a", RANGE: "r", KICK: "k"}
BOMB_CHAR, FLAME_CHAR = "b", "*"


def ansi(state: dict[str, Any], config: BomberConfig) -> str:
    """One game's state as text: a header line, one character per cell (see the module docstring),
    then one line per bomb. Deterministic: the same state gives the same string."""
    board, items = np.asarray(state["board"]), np.asarray(state["items"])
    bomb_owner, flames = np.asarray(state["bomb_owner"]), np.asarray(state["flames"])
    size = board.shape[0]
    grid = [[BOARD_CHARS.get(int(code), "?") for code in row] for row in board]
    # later layers cover earlier ones: power-ups, flames, bombs, agents
    for (row, col), item in np.ndenumerate(items):
        if board[row, col] != WOOD and item != NO_ITEM:
            grid[row][col] = ITEM_CHARS.get(int(item), "?")
    for row, col in zip(*np.nonzero(flames > 0)):
        grid[row][col] = FLAME_CHAR
    for row, col in zip(*np.nonzero(bomb_owner >= 0)):
        grid[row][col] = BOMB_CHAR
    for agent, (row, col) in enumerate(np.asarray(state["position"])):
        if state["alive"][agent]:
            grid[row][col] = str(agent)
    lines = [_header(state, config), *(" ".join(grid[row]) for row in range(size))]
    for row, col in zip(*np.nonzero(bomb_owner >= 0)):
        lines.append(f"bomb at ({row}, {col}): life {int(state['bomb_life'][row, col])}, "
                     f"blast {int(state['bomb_strength'][row, col])}, owner {int(bomb_owner[row, col])}")
    return "\n".join(lines) + "\n"


def _header(state: dict[str, Any], config: BomberConfig) -> str:
    """`step 12/800 | 0 ammo 1 blast 2 | 1 dead | 2 ammo 2 blast 3 kick | ...` (and `| over`)."""
    parts = [f"step {int(state['steps'])}/{config.max_steps}"]
    for agent, alive in enumerate(state["alive"]):
        if not alive:
            parts.append(f"{agent} dead")
            continue
        kick = " kick" if state["can_kick"][agent] else ""
        parts.append(f"{agent} ammo {int(state['ammo'][agent])} blast {int(state['blast'][agent])}{kick}")
    if state["over"]:
        parts.append("over")
    return " | ".join(parts)


# -- frames -----------------------------------------------------------------------------------
RGB = tuple[int, int, int]
AGENT_COLOURS: tuple[RGB, ...] = ((220, 40, 40), (40, 90, 230), (230, 80, 200), (30, 200, 220))
PASSAGE_COLOUR, PASSAGE_EDGE = (222, 211, 171), (200, 188, 146)
RIGID_COLOUR, RIGID_LIGHT, RIGID_DARK = (92, 96, 108), (140, 146, 160), (50, 53, 62)
WOOD_COLOUR, WOOD_DARK = (170, 115, 58), (105, 66, 30)
BOMB_COLOUR = (28, 28, 34)
OUTLINE = (20, 20, 24)
FOG = np.array([16, 18, 30], np.float32)  # cells outside the view window fade toward this
FOG_KEEP = 0.35  # share of a hidden cell's colour that stays
OVERSAMPLE = 4  # sprites are drawn this many times larger, then shrunk for smooth edges

# a cell's appearance as one integer: board, visible item, flame life, bomb life (+1, 0 for none),
# agent (+1, 0 for none), and whether it is outside the view window
_LAYERS = (("board", 3), ("item", 4), ("flame", FLAME_LIFE + 1), ("bomb", BOMB_LIFE + 2), ("agent", 5),
           ("hidden", 2))


def rgb_array(state: dict[str, Any], config: BomberConfig, cell: int = 32,
              view: tuple[int, int] | None = None) -> np.ndarray:
    """One game's state as a picture: uint8 (size * cell, size * cell, 3), row 0 at the top.

    view=(agent, radius) fades the cells farther than `radius` from that agent (the Chebyshev
    distance, the (2 radius + 1)-cell window of partial observation) to show what it sees."""
    if cell < 4:
        raise ValueError(f"cell={cell} pixels is too small to draw a Bomber cell: use cell >= 4")
    board = np.asarray(state["board"]).astype(np.int64)
    size = config.size
    if board.shape != (size, size):
        raise ValueError(f"state board has shape {board.shape}, but config.size={size}: pass the game's own config")
    if board.min() < 0 or board.max() > WOOD:
        raise ValueError(f"board codes must be PASSAGE, RIGID or WOOD (0-2), got {sorted(set(board.ravel()))}")
    codes = _cell_codes(state, board, view)
    unique, inverse = np.unique(codes.ravel(), return_inverse=True)
    sprites = np.stack([_sprite(int(code), cell) for code in unique])
    tiles = sprites[inverse].reshape(size, size, cell, cell, 3)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(size * cell, size * cell, 3)


def _cell_codes(state: dict[str, Any], board: np.ndarray, view: tuple[int, int] | None) -> np.ndarray:
    """(size, size) int64: each cell's appearance encoded as in `_LAYERS` (mixed radix)."""
    size = board.shape[0]
    items = np.where(board == WOOD, NO_ITEM, np.asarray(state["items"]))  # power-ups under wood are hidden
    flames = np.clip(np.asarray(state["flames"]), 0, FLAME_LIFE)
    bombs = np.where(np.asarray(state["bomb_owner"]) >= 0, np.clip(np.asarray(state["bomb_life"]), 0, BOMB_LIFE) + 1, 0)
    agents = np.zeros((size, size), np.int64)
    position = np.asarray(state["position"])
    for agent in range(len(position)):
        if state["alive"][agent]:
            agents[position[agent, 0], position[agent, 1]] = agent + 1
    hidden = np.zeros((size, size), np.int64)
    if view is not None:
        agent, radius = view
        rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        centre_row, centre_col = position[agent]
        hidden = (np.maximum(np.abs(rows - centre_row), np.abs(cols - centre_col)) > radius).astype(np.int64)
    code = np.zeros((size, size), np.int64)
    for (_, base), layer in zip(_LAYERS, (board, items, flames, bombs, agents, hidden)):
        code = code * base + layer
    return code


def _decode(code: int) -> dict[str, int]:
    values = {}
    for name, base in reversed(_LAYERS):
        code, values[name] = divmod(code, base)
    return values


@functools.lru_cache(maxsize=4096)
def _sprite(code: int, cell: int) -> np.ndarray:
    """The picture of one cell, (cell, cell, 3) uint8, drawn once per appearance and cell size."""
    parts = _decode(code)
    big = cell * OVERSAMPLE
    image = Image.new("RGB", (big, big), PASSAGE_COLOUR)
    draw = ImageDraw.Draw(image)
    _draw_board(draw, parts["board"], big)
    if parts["flame"]:
        _draw_flames(draw, parts["flame"], big)
    if parts["item"]:
        _draw_item(draw, parts["item"], big)
    bomb_life = parts["bomb"] - 1
    agent = parts["agent"] - 1
    if bomb_life >= 0:
        _draw_bomb(draw, bomb_life, big, show_life=agent < 0)
    if agent >= 0:
        # on its own bomb an agent shrinks so the bomb shows as a dark ring around it
        _draw_agent(draw, agent, big, radius=0.3 if bomb_life >= 0 else 0.4)
    if bomb_life >= 0:
        _draw_fuse_bar(draw, bomb_life, big)
    pixels = np.asarray(image.reduce(OVERSAMPLE), dtype=np.float32)  # each pixel the mean of 4 x 4
    if parts["hidden"]:
        pixels = FOG_KEEP * pixels + (1 - FOG_KEEP) * FOG
    sprite = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    sprite.flags.writeable = False  # shared by every frame that shows this cell
    return sprite


def _box(size: int, left: float, top: float, right: float, bottom: float) -> tuple[float, float, float, float]:
    """A rectangle given in fractions of the cell, in pixels."""
    return (left * size, top * size, right * size - 1, bottom * size - 1)


def _circle(size: int, centre_x: float, centre_y: float, radius: float) -> tuple[float, float, float, float]:
    return _box(size, centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius)


def _draw_board(draw: ImageDraw.ImageDraw, code: int, size: int) -> None:
    line = max(1, size // 32)
    if code == PASSAGE:
        draw.rectangle((0, 0, size - 1, size - 1), fill=PASSAGE_COLOUR, outline=PASSAGE_EDGE, width=line)
    elif code == RIGID:  # a bevelled stone block: light top and left, dark bottom and right
        bevel = size // 8
        draw.rectangle((0, 0, size - 1, size - 1), fill=RIGID_DARK)
        draw.polygon([(0, 0), (size - 1, 0), (size - 1 - bevel, bevel), (bevel, size - 1 - bevel), (0, size - 1)],
                     fill=RIGID_LIGHT)
        draw.rectangle((bevel, bevel, size - 1 - bevel, size - 1 - bevel), fill=RIGID_COLOUR)
        for x, y in ((0.33, 0.33), (0.67, 0.33), (0.33, 0.67), (0.67, 0.67)):
            draw.ellipse(_circle(size, x, y, 0.05), fill=RIGID_DARK)
    else:  # a wooden crate: a frame, planks and a diagonal brace
        frame = size // 9
        draw.rectangle((0, 0, size - 1, size - 1), fill=WOOD_DARK)
        draw.rectangle((frame, frame, size - 1 - frame, size - 1 - frame), fill=WOOD_COLOUR)
        for y in (0.37, 0.63):
            draw.line([(frame, y * size), (size - frame, y * size)], fill=WOOD_DARK, width=max(1, size // 40))
        draw.line([(frame, size - frame), (size - frame, frame)], fill=WOOD_DARK, width=frame)


def _draw_flames(draw: ImageDraw.ImageDraw, life: int, size: int) -> None:
    """Fire over the whole cell, brightest when just lit (life FLAME_LIFE), redder as it dies down."""
    heat = life / FLAME_LIFE
    outer = (int(170 + 85 * heat), int(50 + 70 * heat), 0)
    inner = (255, int(140 + 90 * heat), int(20 + 60 * heat))
    draw.rectangle((0, 0, size - 1, size - 1), fill=outer)
    star = []
    for k in range(16):  # a 8-pointed star of flame tongues
        angle = np.pi * k / 8
        reach = 0.46 if k % 2 == 0 else 0.26
        star.append((size * (0.5 + reach * np.cos(angle)), size * (0.5 + reach * np.sin(angle))))
    draw.polygon(star, fill=inner)
    if heat >= 1:
        draw.ellipse(_circle(size, 0.5, 0.5, 0.16), fill=(255, 250, 210))


def _draw_item(draw: ImageDraw.ImageDraw, item: int, size: int) -> None:
    """A small badge: extra bomb (a bomb on white), range (a white cross on green), kick (a boot on purple)."""
    badge = _box(size, 0.22, 0.22, 0.78, 0.78)
    fill = {EXTRA_BOMB: (245, 245, 240), RANGE: (40, 170, 70), KICK: (130, 70, 190)}[item]
    draw.rounded_rectangle(badge, radius=size * 0.1, fill=fill, outline=OUTLINE, width=max(1, size // 24))
    if item == EXTRA_BOMB:
        draw.ellipse(_circle(size, 0.47, 0.53, 0.16), fill=BOMB_COLOUR)
        draw.line([(0.56 * size, 0.42 * size), (0.66 * size, 0.32 * size)], fill=BOMB_COLOUR, width=size // 24 + 1)
    elif item == RANGE:  # arrows outward: a longer blast
        arm, width = 0.2, 0.045
        draw.rectangle(_box(size, 0.5 - arm, 0.5 - width, 0.5 + arm, 0.5 + width), fill="white")
        draw.rectangle(_box(size, 0.5 - width, 0.5 - arm, 0.5 + width, 0.5 + arm), fill="white")
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            tip = (size * (0.5 + dx * 0.25), size * (0.5 + dy * 0.25))
            side = 0.09
            base_a = (size * (0.5 + dx * 0.15 - dy * side), size * (0.5 + dy * 0.15 - dx * side))
            base_b = (size * (0.5 + dx * 0.15 + dy * side), size * (0.5 + dy * 0.15 + dx * side))
            draw.polygon([tip, base_a, base_b], fill="white")
    else:  # a boot: leg and foot
        draw.rectangle(_box(size, 0.36, 0.30, 0.52, 0.62), fill="white")
        draw.rounded_rectangle(_box(size, 0.36, 0.52, 0.68, 0.68), radius=size * 0.06, fill="white")


def _draw_bomb(draw: ImageDraw.ImageDraw, life: int, size: int, show_life: bool) -> None:
    """A dark ball with a fuse and a glint; its remaining life written on it."""
    draw.line([(0.62 * size, 0.26 * size), (0.74 * size, 0.12 * size)], fill=(120, 90, 60), width=size // 20 + 1)
    draw.ellipse(_circle(size, 0.76, 0.10, 0.06), fill=(255, 200, 40))  # the spark
    draw.ellipse(_circle(size, 0.5, 0.52, 0.36), fill=BOMB_COLOUR, outline=(0, 0, 0), width=max(1, size // 40))
    draw.ellipse(_circle(size, 0.37, 0.39, 0.07), fill=(110, 110, 120))
    if show_life:
        _draw_text(draw, str(life), (0.5 * size, 0.54 * size), size * 0.42, fill=(255, 255, 255))


def _draw_fuse_bar(draw: ImageDraw.ImageDraw, life: int, size: int) -> None:
    """A bar along the bottom of the cell, full at BOMB_LIFE and empty at 0, green turning red."""
    share = min(max(life / BOMB_LIFE, 0.0), 1.0)
    colour = (int(230 * (1 - share) + 40 * share), int(40 * (1 - share) + 200 * share), 40)
    draw.rectangle(_box(size, 0.08, 0.88, 0.92, 0.97), fill=(0, 0, 0))
    if share > 0:
        draw.rectangle(_box(size, 0.10, 0.895, 0.10 + 0.80 * share, 0.955), fill=colour)


def _draw_agent(draw: ImageDraw.ImageDraw, agent: int, size: int, radius: float) -> None:
    """A disc in the agent's colour with its index."""
    colour = AGENT_COLOURS[agent % len(AGENT_COLOURS)]
    draw.ellipse(_circle(size, 0.5, 0.5, radius), fill=colour, outline=OUTLINE, width=max(1, size // 16))
    _draw_text(draw, str(agent), (0.5 * size, 0.5 * size), size * radius * 1.3, fill=(255, 255, 255), stroke=True)


@functools.lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font (no font file needed) at `pixels` height where FreeType is available."""
    return ImageFont.load_default(size=pixels)


def _draw_text(draw: ImageDraw.ImageDraw, text: str, centre: tuple[float, float], height: float, fill: RGB,
               stroke: bool = False) -> None:
    font = _font(max(6, int(height)))
    stroke_width = max(1, int(height) // 10) if stroke else 0
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke_width)
    origin = (centre[0] - (left + right) / 2, centre[1] - (top + bottom) / 2)
    draw.text(origin, text, font=font, fill=fill, stroke_width=stroke_width, stroke_fill=OUTLINE)


# -- animations -------------------------------------------------------------------------------
def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8) -> Path:
    """Write frames (each (H, W, 3) uint8) as an animated GIF that loops forever; returns the path.

    GIF timing has a resolution of 10 ms, so each frame lasts 1000 / fps rounded to it. Pillow
    merges identical consecutive frames into one that lasts as long as they did together."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    if fps <= 0:
        raise ValueError(f"fps={fps} must be positive")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    duration = max(10, 10 * round(100 / fps))  # milliseconds, in whole hundredths of a second
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   disposal=1)
    return path
