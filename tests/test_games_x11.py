"""Game profiles against real windows: `games check` finds the built-in game's window under Xvfb
and grabs its pixels, a missing window lists the ones that exist, and `drive` plays that window
through keys only (XTest), as it would a game nobody here wrote."""

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
import mss
import numpy as np
import pytest
from Xlib import X
from Xlib import display as xdisplay
from Xlib.ext import xtest

from engine.core.config import Config
from engine.driver.controller import open_controller
from engine.driver.unstuck import choose_action
from engine.games.profile import apply_to_config, load_profile
from engine.games.window import grab_frame
from engine.sim.window import HOOD_ORIGIN
from tests.driver_helpers import create_version, save_constant_checkpoint

REPO = Path(__file__).resolve().parent.parent
GAME_START_S = 60.0

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None,
        reason="the Xvfb binary is not installed (apt-get install xvfb)",
    ),
]


@pytest.fixture
def game(display, tmp_path) -> Iterator[subprocess.Popen]:
    """`charles-stream sim` in its windows on the display, nobody driving; stopped after."""
    process = _start_game(display, tmp_path, [])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_games_check_finds_the_built_in_games_window_and_grabs_its_pixels(display, tmp_path):
    process = _start_game(display, tmp_path, ["--autopilot", "--realtime"])
    try:
        out = tmp_path / "hood.png"
        done = _charles(display, "games", "check", "builtin", "--json", "--out", str(out))
    finally:
        process.kill()
        process.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["title"] == "charles-stream hood" and found["window_id"] > 0
    assert (found["left"], found["top"]) == HOOD_ORIGIN
    assert (found["frame_width"], found["frame_height"]) == (480, 270)
    assert 20.0 < found["mean_brightness"] < 235.0  # a picture, not a black or blank window
    saved = cv2.imread(str(out))
    assert saved.shape == (270, 480, 3) and saved.std() > 5.0


def test_a_missing_window_exits_3_listing_the_windows_that_exist(game, display, tmp_path):
    profile = tmp_path / "nogame.toml"
    profile.write_text('[window.linux]\ntitle = "No Such Game"\n', encoding="utf-8")
    done = _charles(display, "games", "check", str(profile))
    assert done.returncode == 3, done.stderr[-2000:]
    assert "no window titled 'No Such Game'" in done.stderr
    assert "'charles-stream hood'" in done.stderr and "'charles-stream chase'" in done.stderr


@pytest.mark.tf
def test_drive_plays_the_built_in_games_window_through_keys_only(game, display, tmp_path):
    data_dir = tmp_path / "data"
    version = create_version(data_dir)
    save_constant_checkpoint(data_dir, version, batch=1, steering=0.0, throttle_brake=1.0)
    with _pointer(display) as pointer:
        # No window manager: keys go to the window under the pointer.
        pointer(HOOD_ORIGIN[0] + 240, HOOD_ORIGIN[1] + 135)
    drive = _charles(
        display,
        "drive",
        "--model",
        version,
        "--game",
        "builtin",
        "--seconds",
        "4",
        "--json",
        "--data",
        str(data_dir),
        timeout=240,
    )
    assert drive.returncode == 0, drive.stderr[-3000:]
    report = json.loads(drive.stdout.strip().splitlines()[-1])
    assert report["distance_m"] is None  # the driver saw pixels only, no telemetry
    assert report["fps"] > 2 and report["last_pad"]["right_trigger"] > 0.9
    with _keys(display) as press:
        press("q")
    out, _ = game.communicate(timeout=60)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["distance_m"] > 3.0, f"the keys did not drive the car: {summary}"


def test_the_unstuck_key_sequence_respawns_the_built_in_game_through_xtest(
    game, display, monkeypatch
):
    monkeypatch.setenv("DISPLAY", display)
    profile = load_profile("builtin")
    config = apply_to_config(profile, Config())
    area = {"left": HOOD_ORIGIN[0], "top": HOOD_ORIGIN[1], "width": 480, "height": 270}
    with _pointer(display) as pointer:
        pointer(HOOD_ORIGIN[0] + 240, HOOD_ORIGIN[1] + 135)
    with (
        mss.MSS(display=display) as screen,
        open_controller(config.controller, profile=profile) as keys,
    ):
        before = grab_frame(profile, area, screen).astype(np.int16)
        action = choose_action(config.unstuck, object(), keys, profile)
        assert action.description == "press key r (0.15 s)"
        action()
        deadline = time.monotonic() + 60.0  # only ends a hang
        change = 0.0
        while change < 10.0 and time.monotonic() < deadline:
            time.sleep(0.2)
            change = float(np.abs(grab_frame(profile, area, screen) - before).mean())
    # The car, standing still before, now stands somewhere else on the track.
    assert change >= 10.0, f"the hood view changed by only {change:.1f} levels after R"


def _charles(display: str, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *arguments],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _start_game(display: str, tmp_path: Path, arguments: list[str]) -> subprocess.Popen:
    """The built-in game in its windows, once its first frame is on screen."""
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", *arguments, "--seconds", "300"]
    process = subprocess.Popen(
        [*command, "--json", "--seed", "1", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + GAME_START_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        if "first frame on screen" in line:
            _until_drawn(display)  # the X server draws it a moment after the log line
            return process
    process.kill()
    process.wait()
    pytest.fail("the built-in game did not show its first frame")


def _until_drawn(display: str) -> None:
    """Wait until the hood window shows a picture, not a blank or black area."""
    area = {"left": HOOD_ORIGIN[0], "top": HOOD_ORIGIN[1], "width": 480, "height": 270}
    deadline = time.monotonic() + GAME_START_S
    with mss.MSS(display=display) as screen:
        while np.asarray(screen.grab(area))[..., :3].std() <= 5.0:
            if time.monotonic() > deadline:
                pytest.fail("the built-in game's first frame never reached the screen")
            time.sleep(0.05)


class _XInput:
    def __init__(self, display: str) -> None:
        self.connection = xdisplay.Display(display)

    def __enter__(self) -> _XInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()


def _pointer(display: str):
    class Pointer(_XInput):
        def __enter__(self):
            return self.move

        def move(self, x: int, y: int) -> None:
            xtest.fake_input(self.connection, X.MotionNotify, x=x, y=y)
            self.connection.sync()

    return Pointer(display)


def _keys(display: str):
    from Xlib import XK

    class Keys(_XInput):
        def __enter__(self):
            return self.press

        def press(self, key: str) -> None:
            code = self.connection.keysym_to_keycode(XK.string_to_keysym(key))
            xtest.fake_input(self.connection, X.KeyPress, code)
            self.connection.sync()
            time.sleep(0.1)
            xtest.fake_input(self.connection, X.KeyRelease, code)
            self.connection.sync()

    return Keys(display)
