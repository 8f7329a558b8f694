"""The views look like a driving game: sky above, road ahead, a car in the chase view."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from engine.core.config import SimConfig
from engine.sim.game import Controls, Game

CONFIG = SimConfig()


def drive(game: Game, controls: Controls, seconds: float) -> None:
    for _ in range(round(seconds * game.config.tick_hz)):
        game.set_controls(controls)
        game.tick()


def is_road(pixels: np.ndarray) -> np.ndarray:
    """Asphalt: grey (channels within a few levels of each other), neither dark nor light."""
    pixels = pixels.astype(int)
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return (spread < 20) & (pixels.mean(axis=-1) > 60) & (pixels.mean(axis=-1) < 130)


def road_centre(frame: np.ndarray, row: int) -> float:
    """Mean column of the asphalt pixels in one image row."""
    columns = np.flatnonzero(is_road(frame[row]))
    assert len(columns) > 20, "no road visible in that row"
    return float(columns.mean())


def test_views_have_the_configured_sizes_and_are_rgb_uint8():
    game = Game(CONFIG, seed=1)
    hood, chase = game.render_hood(), game.render_chase()
    assert hood.shape == (270, 480, 3) and hood.dtype == np.uint8
    assert chase.shape == (720, 1280, 3) and chase.dtype == np.uint8


def test_tiny_and_odd_sizes_render_too():
    config = msgspec.structs.replace(
        CONFIG, hood_width=33, hood_height=18, chase_width=64, chase_height=37
    )
    game = Game(config, seed=1)
    assert game.render_hood().shape == (18, 33, 3)
    assert game.render_chase().shape == (37, 64, 3)


def test_hood_view_has_sky_on_top_and_road_in_the_lower_centre():
    frame = Game(CONFIG, seed=1).render_hood()
    sky = frame[:20].reshape(-1, 3).astype(int)
    assert np.mean(sky[:, 2] > sky[:, 0] + 20) > 0.5, "the top of the frame should be blue sky"
    ahead = frame[175:215, 190:290]
    assert is_road(ahead).mean() > 0.8, "the lower centre should be asphalt"


def test_road_narrows_towards_the_horizon():
    frame = Game(CONFIG, seed=1).render_hood()
    near = is_road(frame[220]).sum()
    far = is_road(frame[130]).sum()
    assert near > 2 * far > 0


def test_turning_right_moves_the_road_to_the_left_of_the_view():
    game = Game(CONFIG, seed=1)
    drive(game, Controls(0.0, 1.0), 2.0)
    straight = road_centre(game.render_hood(), 160)
    drive(game, Controls(0.5, 0.0), 0.4)
    turned = road_centre(game.render_hood(), 160)
    assert turned < straight - 30


def test_same_seed_and_inputs_give_identical_frames():
    frames = []
    for _ in range(2):
        game = Game(CONFIG, seed=4)
        drive(game, Controls(0.1, 0.8), 1.0)
        frames.append((game.render_hood(), game.render_chase()))
    assert np.array_equal(frames[0][0], frames[1][0])
    assert np.array_equal(frames[0][1], frames[1][1])


def test_different_seeds_give_different_frames():
    first = Game(CONFIG, seed=1).render_hood()
    second = Game(CONFIG, seed=2).render_hood()
    assert np.mean(np.any(first != second, axis=-1)) > 0.1


def test_moving_changes_the_frame():
    game = Game(CONFIG, seed=1)
    before = game.render_hood()
    drive(game, Controls(0.0, 1.0), 1.0)
    assert np.mean(np.any(before != game.render_hood(), axis=-1)) > 0.05


def test_rendering_does_not_change_the_game_state():
    game = Game(CONFIG, seed=1)
    drive(game, Controls(0.2, 0.7), 1.0)
    before = game.telemetry()
    game.render_hood()
    game.render_chase()
    assert game.telemetry() == before


@pytest.mark.parametrize("braking", [False, True])
def test_chase_view_shows_the_red_car_below_the_centre(braking):
    game = Game(CONFIG, seed=1)
    drive(game, Controls(0.0, 1.0), 1.0)
    if braking:
        drive(game, Controls(0.0, -1.0), 0.2)
    frame = game.render_chase().astype(int)
    lower_centre = frame[400:700, 500:780]
    red = (lower_centre[..., 0] > 120) & (lower_centre[..., 1] < 70) & (lower_centre[..., 2] < 70)
    assert red.mean() > 0.15
