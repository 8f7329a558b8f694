"""Screen capture (mss) of the built-in game's own window under a real X server (Xvfb)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.core.config import CaptureConfig, SimConfig
from engine.driver.capture import Capture, Frame, MssSource
from engine.sim.game import Game
from engine.sim.window import HOOD_ORIGIN, open_windows

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(
        sys.platform != "linux" or shutil.which("Xvfb") is None,
        reason="needs Linux with Xvfb (apt-get install xvfb)",
    ),
]

# The built-in game's hood window: at the screen's top-left corner (engine.sim.window.HOOD_ORIGIN).
HOOD_REGION = (*HOOD_ORIGIN, 480, 270)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def game_window(display: str, tmp_path, monkeypatch) -> Iterator[subprocess.Popen]:
    """`charles-stream sim` in window mode on that display, driven by the NPC for a while."""
    monkeypatch.setenv("DISPLAY", display)  # where this process's mss looks
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", "--autopilot", "--seconds", "60"]
    with (tmp_path / "game.log").open("w+") as log:
        game = subprocess.Popen(
            [*command, "--seed", "4", "--config", str(config)],
            cwd=REPO,
            env={**os.environ, "DISPLAY": display},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield game
        finally:
            game.terminate()
            game.wait(timeout=10)


def hood_capture() -> Capture:
    config = CaptureConfig(backend="mss", monitor=1, region=HOOD_REGION, max_fps=30.0)
    return Capture(MssSource(config), size=(128, 72), max_fps=config.max_fps)


def sky_is_blue(frame: Frame) -> bool:
    """The hood view's top rows are sky: blue above red, if the colour order is RGB."""
    sky = frame.image[:15].reshape(-1, 3).astype(int)
    return bool(np.mean(sky[:, 2] > sky[:, 0] + 20) > 0.5)


def wait_for_game(capture: Capture, game: subprocess.Popen, timeout: float = 60.0) -> Frame:
    """The first captured frame that shows the game's hood view."""
    deadline = time.monotonic() + timeout
    index = -1
    frame = None
    while time.monotonic() < deadline:
        if game.poll() is not None:
            raise AssertionError(f"the game window process ended with exit code {game.returncode}")
        frame = capture.next_frame(after=index, timeout=5.0) or frame
        if frame is not None:
            index = frame.index
            if sky_is_blue(frame):
                return frame
    seen = "nothing" if frame is None else f"top rows of mean RGB {frame.image[:15].mean((0, 1))}"
    raise AssertionError(f"the game window did not appear within {timeout} s; captured {seen}")


def test_capture_sees_the_games_window_in_rgb_at_the_model_size(game_window):
    with hood_capture() as capture:
        frame = wait_for_game(capture, game_window)
    assert frame.image.shape == (270, 480, 3)
    assert frame.model_input.shape == (72, 128, 3)
    assert sky_is_blue(frame)


def test_captured_pixels_change_as_the_car_moves(game_window):
    with hood_capture() as capture:
        first = wait_for_game(capture, game_window)
        # The autopilot drives on; a busy machine only draws the change later.
        later, change = first, 0.0
        deadline = time.monotonic() + 60.0
        while change <= 3.0 and time.monotonic() < deadline:
            later = capture.next_frame(after=later.index, timeout=5.0) or later
            change = np.abs(later.image.astype(int) - first.image.astype(int)).mean()
    assert change > 3.0, f"the picture barely changed ({change:.2f} levels): is the car moving?"


def test_captured_pixels_are_exactly_the_rendered_hood_view(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    game = Game(SimConfig(), seed=4)
    hood, chase = game.render_hood(), game.render_chase()
    windows = open_windows(game)
    try:
        with hood_capture() as capture:
            index, frame = -1, None
            deadline = time.monotonic() + 60.0  # only ends a hang
            while time.monotonic() < deadline:
                windows.show(hood, chase)
                windows.poll(wait_s=0.0)
                frame = capture.next_frame(after=index, timeout=5.0) or frame
                if frame is not None:
                    index = frame.index
                    if np.array_equal(frame.image, hood):
                        break
    finally:
        windows.close()
    assert frame is not None, "nothing captured"
    differ = np.mean(np.any(frame.image != hood, axis=2))
    assert differ == 0.0, f"{differ:.1%} of the captured pixels differ from the rendered frame"
