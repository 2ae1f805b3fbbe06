"""Pictures of a Bomber game: the text board puts the right character on each cell, frames draw
each kind of object distinctly (agents in their colours, dead ones not at all), the view window
darkens only what the agent cannot see, and GIFs hold every frame."""

from typing import Any

import numpy as np
import pytest
from PIL import Image

from bellmax.envs.bomber.config import EXTRA_BOMB, KICK, RANGE, RIGID, WOOD, BomberConfig
from bellmax.envs.bomber.engine import BomberEngine
from bellmax.envs.bomber.render import AGENT_COLOURS, ansi, rgb_array, save_gif

CONFIG = BomberConfig(size=7, num_agents=4, rigid=0, wood=0, items=0, max_steps=100)
CELL = 16


def open_board() -> dict[str, Any]:
    """A 7x7 state in the engine's layout with no walls: agents at (1, 1), (5, 1), (5, 5), (1, 5)."""
    return BomberEngine(CONFIG, 1, seed=0).state(0)


def hand_made() -> dict[str, Any]:
    """Walls at the top left, the three power-ups on row 2, a bomb at (3, 3), flames at (4, 4),
    agent 2 dead, a power-up hidden under the wooden wall, step 7."""
    state = open_board()
    state["board"][0, 0] = RIGID
    state["board"][0, 1] = WOOD
    state["items"][0, 1] = KICK  # hidden under the wood
    state["items"][2, 2], state["items"][2, 3], state["items"][2, 4] = EXTRA_BOMB, RANGE, KICK
    state["bomb_owner"][3, 3], state["bomb_life"][3, 3], state["bomb_strength"][3, 3] = 1, 5, 2
    state["flames"][4, 4] = 2
    state["alive"][2] = False
    state["steps"] = 7
    return state


def text_cells(text: str) -> list[list[str]]:
    return [line.split(" ") for line in text.splitlines()[1:1 + CONFIG.size]]


def cell_pixels(frame: np.ndarray, row: int, col: int, cell: int = CELL) -> np.ndarray:
    return frame[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell].astype(np.int64)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


# -- text -------------------------------------------------------------------------------------
def test_ansi_puts_each_object_on_its_cell():
    cells = text_cells(ansi(hand_made(), CONFIG))
    assert len(cells) == CONFIG.size and all(len(row) == CONFIG.size for row in cells)
    assert cells[0][0] == "#" and cells[0][1] == "+" and cells[0][2] == "."
    assert cells[2][2:5] == ["a", "r", "k"]
    assert cells[3][3] == "b"
    assert cells[4][4] == "*"
    assert cells[1][1] == "0" and cells[5][1] == "1" and cells[1][5] == "3"


def test_ansi_does_not_draw_dead_agents():
    text = ansi(hand_made(), CONFIG)
    assert text_cells(text)[5][5] == "."
    assert "2" not in "".join("".join(row) for row in text_cells(text))


def test_ansi_header_shows_step_and_each_agent():
    header = ansi(hand_made(), CONFIG).splitlines()[0]
    assert header.startswith("step 7/100")
    assert "0 ammo 1 blast 2" in header and "2 dead" in header


def test_ansi_lists_bombs_and_shows_an_agent_standing_on_its_bomb():
    state = hand_made()
    state["bomb_owner"][1, 1], state["bomb_life"][1, 1], state["bomb_strength"][1, 1] = 0, 9, 2
    text = ansi(state, CONFIG)
    assert text_cells(text)[1][1] == "0"
    assert "bomb at (1, 1): life 9, blast 2, owner 0" in text
    assert "bomb at (3, 3): life 5, blast 2, owner 1" in text


def test_ansi_is_deterministic():
    engine = BomberEngine(BomberConfig.ffa(), 1, seed=3)
    engine.step(np.array([[5, 2, 1, 5]]))
    assert ansi(engine.state(0), engine.config) == ansi(engine.state(0), engine.config)


# -- frames -----------------------------------------------------------------------------------
def test_rgb_array_shape_and_dtype():
    frame = rgb_array(hand_made(), CONFIG, cell=CELL)
    assert frame.shape == (CONFIG.size * CELL, CONFIG.size * CELL, 3) and frame.dtype == np.uint8
    engine = BomberEngine(BomberConfig.ffa(), 1, seed=0)
    assert rgb_array(engine.state(0), engine.config).shape == (11 * 32, 11 * 32, 3)


def test_each_agent_cell_holds_its_colour_and_no_other_agents():
    state = open_board()
    frame = rgb_array(state, CONFIG, cell=CELL)
    for agent, (row, col) in enumerate(state["position"]):
        pixels = cell_pixels(frame, row, col)
        for other, colour in enumerate(AGENT_COLOURS):
            near = (np.abs(pixels - np.array(colour)).max(axis=2) <= 12).sum()
            if other == agent:
                assert near >= CELL * CELL // 10, (agent, near)
            else:
                assert near == 0, (agent, other)


def test_dead_agents_are_not_drawn():
    state = hand_made()
    frame = rgb_array(state, CONFIG, cell=CELL)
    assert np.array_equal(cell_pixels(frame, 5, 5), cell_pixels(frame, 6, 6))  # agent 2's cell is bare passage


def test_bombs_flames_and_each_power_up_look_different_from_passage_and_each_other():
    state = hand_made()
    frame = rgb_array(state, CONFIG, cell=CELL)
    where = {"passage": (6, 6), "bomb": (3, 3), "flame": (4, 4), "extra_bomb": (2, 2), "range": (2, 3), "kick": (2, 4),
             "rigid": (0, 0), "wood": (0, 1)}
    looks = {name: cell_pixels(frame, row, col) for name, (row, col) in where.items()}
    names = list(looks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert difference(looks[a], looks[b]) > 10, (a, b)


def test_power_ups_under_wood_stay_hidden():
    state = hand_made()
    frame = rgb_array(state, CONFIG, cell=CELL)
    state["items"][0, 1] = 0
    assert np.array_equal(frame, rgb_array(state, CONFIG, cell=CELL))


def test_bomb_shows_its_remaining_life_and_flames_fade_as_they_die_down():
    state = hand_made()
    state["bomb_owner"][3, 1], state["bomb_life"][3, 1] = 0, 2
    state["flames"][4, 2] = 1
    frame = rgb_array(state, CONFIG, cell=CELL)
    assert difference(cell_pixels(frame, 3, 1), cell_pixels(frame, 3, 3)) > 3  # life 2 against life 5
    assert cell_pixels(frame, 4, 4).sum() > cell_pixels(frame, 4, 2).sum()  # fresh flames burn brighter


def test_view_darkens_cells_outside_the_window_only():
    state = hand_made()
    full = rgb_array(state, CONFIG, cell=CELL)
    seen = rgb_array(state, CONFIG, cell=CELL, view=(0, 2))  # agent 0 at (1, 1): rows and cols 0-3 visible
    for row in range(CONFIG.size):
        for col in range(CONFIG.size):
            before, after = cell_pixels(full, row, col), cell_pixels(seen, row, col)
            if max(abs(row - 1), abs(col - 1)) <= 2:
                assert np.array_equal(before, after), (row, col)
            else:
                assert after.mean() < 0.6 * before.mean(), (row, col)


def test_rgb_array_rejects_a_state_of_another_board_size():
    with pytest.raises(ValueError, match="config.size"):
        rgb_array(hand_made(), BomberConfig.ffa())


# -- animations -------------------------------------------------------------------------------
def test_save_gif_writes_a_looping_animation_with_every_frame(tmp_path):
    state, frames = hand_made(), []
    for life in range(9, 4, -1):  # the bomb ticks, so every frame differs
        state["bomb_life"][3, 3] = life
        frames.append(rgb_array(state, CONFIG, cell=CELL))
    path = save_gif(frames, tmp_path / "new" / "dir" / "game.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.is_animated
        assert gif.n_frames == 5
        assert gif.size == (CONFIG.size * CELL, CONFIG.size * CELL)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 200
