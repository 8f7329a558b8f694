"""Window mode on a real X server (Xvfb): both views appear where screen capture expects them."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.sim.window import HOOD_ORIGIN

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="the Xvfb binary is not installed (apt-get install xvfb)"
)


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb server on a free display number (Xvfb picks it and reports it when ready)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as ready:
        number = ready.readline().strip()  # blocks until the server accepts connections
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_window_mode_shows_hood_and_chase_views_on_screen(display, tmp_path):
    import mss

    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", "--autopilot", "--seconds", "6"]
    command += ["--json", "--seed", "1", "--config", str(config)]
    game = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log_lines = _lines(game.stderr)
        _wait_for(log_lines, "first frame on screen", timeout=30.0)
        found = False
        last_screen = None
        with mss.MSS(display=display) as screen:
            # The X server draws the first frame a moment after the log line.
            while not found and game.poll() is None:
                hood = _grab(screen, HOOD_ORIGIN[0], HOOD_ORIGIN[1], 480, 270)
                chase = _grab(screen, 480, 0, 1280, 720)
                found = _looks_like_hood(hood) and _shows_red_car(chase)
                if not found:
                    last_screen = _grab(screen, 0, 0, 1920, 1080)
        if not found:
            if last_screen is not None:
                cv2.imwrite(str(tmp_path / "screen.png"), last_screen[..., ::-1])
            game.wait(timeout=30.0)
            pytest.fail(
                f"hood or chase view not where expected; last screen in {tmp_path}; "
                f"game log: {''.join(_drain(log_lines))}"
            )
        out, _ = game.communicate(timeout=30.0)
    finally:
        game.kill()
        game.wait()
    assert game.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["seconds"] == 6.0 and summary["frames"] > 20 and summary["distance_m"] > 5.0


def test_x11_key_reader_sees_no_keys_held(display, monkeypatch):
    from engine.sim.keyboard import system_held_keys

    monkeypatch.setenv("DISPLAY", display)
    reader = system_held_keys()
    assert reader is not None
    assert reader.held() == set()


def test_x11_window_closes_cleanly_and_can_open_again(display, monkeypatch):
    from engine.sim.x11 import X11Window

    monkeypatch.setenv("DISPLAY", display)
    for _ in range(2):
        window = X11Window("test", 64, 36, (0, 0))
        window.show(np.zeros((36, 64, 3), np.uint8))
        assert window.poll() == ([], False)
        window.close()
        window.close()


def _grab(screen, left: int, top: int, width: int, height: int) -> np.ndarray:
    shot = np.array(screen.grab({"left": left, "top": top, "width": width, "height": height}))
    return shot[..., 2::-1]  # BGRA -> RGB


def _looks_like_hood(frame: np.ndarray) -> bool:
    """Sky above, asphalt ahead and the red bonnet along the bottom edge."""
    pixels = frame.astype(int)
    top = pixels[:90].reshape(-1, 3)
    blue_sky = np.mean(top[:, 2] > top[:, 0] + 20) > 0.1
    road = pixels[175:215, 190:290].reshape(-1, 3)
    grey_road = np.mean(road.max(axis=1) - road.min(axis=1) < 20) > 0.6
    bonnet = pixels[262:270, 200:280]
    red_bonnet = np.mean((bonnet[..., 0] > 100) & (bonnet[..., 1] < 60)) > 0.9
    return bool(blue_sky and grey_road and red_bonnet)


def _shows_red_car(frame: np.ndarray) -> bool:
    centre = frame[400:700, 500:780].astype(int)
    red = (centre[..., 0] > 120) & (centre[..., 1] < 70) & (centre[..., 2] < 70)
    return bool(red.mean() > 0.15)


def _lines(stream) -> queue.Queue:
    """Lines of a pipe, read on a thread so the test can wait for one with a timeout."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _drain(lines: queue.Queue) -> list[str]:
    """The lines read so far (without waiting)."""
    drained = []
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return drained
        if line is not None:
            drained.append(line)


def _wait_for(lines: queue.Queue, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {text!r} in the game's log within {timeout} s: {''.join(seen[-20:])}")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"the game exited before {text!r}: {''.join(seen[-20:])}")
        seen.append(line)
        if text in line:
            return
