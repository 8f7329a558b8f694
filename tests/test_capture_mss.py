"""Screen capture (mss) of the built-in game's window under a real X server (Xvfb)."""

from __future__ import annotations

import os
import random
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from engine.core.config import CaptureConfig
from engine.driver.capture import Capture, Frame, MssSource

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("Xvfb") is None,
    reason="needs Linux with Xvfb (apt-get install xvfb)",
)

# The built-in game's hood view in a plain Tk window at the screen's top-left corner. (The
# game's own window mode draws through OpenCV's Qt backend, which now and then stalls inside
# cv2.waitKeyEx under a bare Xvfb; Tk keeps this test about capture, not about Qt.)
HOOD_REGION = (0, 0, 480, 270)
GAME_WINDOW = """
import sys
import time
import tkinter

from engine.core.config import AutopilotConfig, SimConfig
from engine.sim.autopilot import Autopilot
from engine.sim.game import Game

game = Game(SimConfig(), seed=4)
pilot = Autopilot(AutopilotConfig(), seed=4)
root = tkinter.Tk()
root.overrideredirect(True)
root.geometry("480x270+0+0")
label = tkinter.Label(root, borderwidth=0)
label.pack()
started = time.monotonic()


def show():
    while game.time < time.monotonic() - started:
        game.set_controls(pilot.decide(game))
        game.tick()
    hood = game.render_hood()
    ppm = b"P6 480 270 255 " + hood.tobytes()
    label.image = tkinter.PhotoImage(data=ppm, format="PPM")
    label.configure(image=label.image)
    root.after(50, show)


show()
root.after(int(float(sys.argv[1]) * 1000), root.destroy)
root.mainloop()
"""


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb on a random high display number, so parallel test runs never share one."""
    rng = random.Random()
    for _ in range(5):
        number = rng.randrange(1000, 60000)
        read_end, write_end = os.pipe()
        command = ["Xvfb", f":{number}", "-displayfd", str(write_end), "-nolisten", "tcp"]
        server = subprocess.Popen(
            [*command, "-screen", "0", "1024x768x24"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        try:
            # Xvfb writes the number, then a newline, once it accepts clients; EOF = it failed.
            if _read_line(read_end, timeout=20.0):
                yield f":{number}"
                return
        finally:
            server.terminate()
            server.wait(timeout=10)
            os.close(read_end)
    pytest.fail("Xvfb did not start on any of 5 display numbers")


def _read_line(fd: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            return b""
        data += chunk
    return data


@pytest.fixture
def game_window(display: str, tmp_path, monkeypatch) -> Iterator[subprocess.Popen]:
    """The built-in game in window mode on that display, driven by the NPC for a while."""
    monkeypatch.setenv("DISPLAY", display)  # where this process's mss looks
    with (tmp_path / "game.log").open("w+") as log:
        game = subprocess.Popen(
            [sys.executable, "-c", GAME_WINDOW, "60"],
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
        time.sleep(1.5)
        later = capture.next_frame(after=first.index, timeout=5.0)
    change = np.abs(later.image.astype(int) - first.image.astype(int)).mean()
    assert change > 3.0, f"the picture barely changed ({change:.2f} levels): is the car moving?"
