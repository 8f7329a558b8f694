"""Screen capture (mss) of the built-in game's window under a real X server (Xvfb)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from engine.capture import Capture, Frame, MssSource
from engine.config import CaptureConfig

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("Xvfb") is None,
    reason="needs Linux with Xvfb (apt-get install xvfb)",
)

# The game's hood window sits at the screen's top-left corner (engine/sim/window.py).
HOOD_REGION = (0, 0, 480, 270)
GAME_WINDOW = """
import sys
from engine.config import AutopilotConfig, SimConfig
from engine.sim.autopilot import Autopilot
from engine.sim.game import Game
from engine.sim.window import run_window

game = Game(SimConfig(chase_width=320, chase_height=180), seed=4)
run_window(game, Autopilot(AutopilotConfig(), seed=4), seconds=float(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb on a free display number (Xvfb picks it and writes it to a pipe)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 20.0)
        assert ready, "Xvfb did not report a display within 20 s"
        number = os.read(read_end, 64).decode().strip()
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def game_window(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The built-in game in window mode on that display, driven by the NPC for a while."""
    monkeypatch.setenv("DISPLAY", display)
    game = subprocess.Popen(
        [sys.executable, "-c", GAME_WINDOW, "60"],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
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


def wait_for_game(capture: Capture, timeout: float = 30.0) -> Frame:
    """The first captured frame that shows the game's hood view."""
    deadline = time.monotonic() + timeout
    index = -1
    while time.monotonic() < deadline:
        frame = capture.next_frame(after=index, timeout=5.0)
        if frame is not None:
            index = frame.index
            if sky_is_blue(frame):
                return frame
    raise AssertionError(f"the game window did not appear within {timeout} s")


def test_capture_sees_the_games_window_in_rgb_at_the_model_size(game_window):
    with hood_capture() as capture:
        frame = wait_for_game(capture)
    assert frame.image.shape == (270, 480, 3)
    assert frame.model_input.shape == (72, 128, 3)
    assert sky_is_blue(frame)


def test_captured_pixels_change_as_the_car_moves(game_window):
    with hood_capture() as capture:
        first = wait_for_game(capture)
        time.sleep(1.5)
        later = capture.next_frame(after=first.index, timeout=5.0)
    change = np.abs(later.image.astype(int) - first.image.astype(int)).mean()
    assert change > 3.0, f"the picture barely changed ({change:.2f} levels): is the car moving?"
