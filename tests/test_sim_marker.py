"""The latency marker (`charles-stream sim --latency-marker`): numbered frames and the game's log.

The number survives the way a driver sees the window (screen capture of a
real X server), and the log's times are on the driver's clock: a frame is
logged shown at about the time a capture reads its number, a key read after
the XTest request that pressed it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mss
import numpy as np
import pytest
from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib.ext import xtest

from engine.cli import main
from engine.core.config import SimConfig
from engine.core.errors import UsageError
from engine.sim.game import Game
from engine.sim.marker import (
    MARKER_BITS,
    MARKER_HEIGHT,
    MARKER_WIDTH,
    FrameShown,
    KeySeen,
    LatencyMarker,
    MarkerLog,
    read_marker,
    read_marker_log,
    stamp_marker,
)
from engine.sim.window import HOOD_ORIGIN

REPO = Path(__file__).resolve().parent.parent
needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="the Xvfb binary is not installed (apt-get install xvfb)"
)


@pytest.fixture(scope="module")
def hood() -> np.ndarray:
    """A real hood frame of the built-in game (sky in its top-left corner)."""
    return Game(SimConfig(), seed=1).render_hood()


@pytest.mark.parametrize("number", [0, 1, 2, 1234, 0x5A5A5A, (1 << MARKER_BITS) - 1])
def test_a_stamped_number_reads_back(hood, number):
    image = hood.copy()
    stamp_marker(image, number)
    assert read_marker(image) == number


def test_the_marker_changes_only_its_corner(hood):
    image = hood.copy()
    stamp_marker(image, 777)
    changed = np.argwhere(np.any(image != hood, axis=2))
    assert changed[:, 0].max() < MARKER_HEIGHT and changed[:, 1].max() < MARKER_WIDTH


def test_a_frame_without_a_marker_reads_as_none(hood):
    assert read_marker(hood) is None
    assert read_marker(np.zeros_like(hood)) is None  # all black: the inverse row is not white
    assert read_marker(hood[:4, :40]) is None  # too small to hold one


def test_a_marker_with_a_flipped_square_reads_as_none(hood):
    image = hood.copy()
    stamp_marker(image, 99)
    image[:4, :4] = 255 - image[:4, :4]  # the first bit no longer the inverse of its pair
    assert read_marker(image) is None


@pytest.mark.parametrize(
    ("number", "size", "message"),
    [
        (-1, (270, 480), "marker number -1 is not accepted; accepted: 0 to 16777215"),
        (1 << MARKER_BITS, (270, 480), "marker number 16777216 is not accepted"),
        (5, (6, 480), "a 480x6 image cannot hold the marker; accepted: at least 96x8"),
    ],
)
def test_stamping_refuses_what_does_not_fit(number, size, message):
    with pytest.raises(ValueError, match=message):
        stamp_marker(np.zeros((*size, 3), np.uint8), number)


def test_the_log_reads_back_every_frame_and_key_in_order(hood, tmp_path):
    path = tmp_path / "marker.jsonl"
    marker = LatencyMarker(MarkerLog(path))
    shown = [marker.stamp(hood) for _ in range(3)]
    marker.frame_shown(10.5)
    marker.key_seen("left", True, 10.52)
    marker.key_seen("left", False, 10.55)
    marker.log.close()
    assert [read_marker(image) for image in shown] == [1, 2, 3]
    assert read_marker(hood) is None  # stamping drew on a copy
    records = read_marker_log(path)
    assert records.frames == {3: 10.5}
    assert records.keys == [KeySeen("left", True, 10.52), KeySeen("left", False, 10.55)]


def test_records_are_tagged_in_the_log(tmp_path):
    path = tmp_path / "marker.jsonl"
    log = MarkerLog(path)
    log.write(FrameShown(7, 1.25))
    log.write(KeySeen("up", False, 1.5))
    log.close()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"type": "frame", "number": 7, "at": 1.25},
        {"type": "key", "key": "up", "down": False, "at": 1.5},
    ]


def test_a_bad_log_line_is_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / "marker.jsonl"
    good = json.dumps({"type": "frame", "number": 1, "at": 2.0})
    path.write_text(f'{good}\n{{"type": "frame", "number": "one"}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"marker.jsonl: line 2 is not a marker record"):
        read_marker_log(path)


def test_a_log_in_a_missing_folder_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "no-such-folder" / "marker.jsonl"
    with pytest.raises(UsageError, match=r"--latency-marker '.*no-such-folder/marker.jsonl'"):
        MarkerLog(path)


def test_the_marker_flag_with_headless_exits_2_saying_it_needs_the_window(tmp_path, caplog):
    code = main(["sim", "--headless", "--latency-marker", str(tmp_path / "m.jsonl")])
    assert code == 2
    assert "--latency-marker" in caplog.text and "--headless" in caplog.text


def test_the_marker_flag_with_the_window_off_exits_2_naming_the_setting(tmp_path, caplog):
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "off"\n', encoding="utf-8")
    code = main(["sim", "--latency-marker", str(tmp_path / "m.jsonl"), "--config", str(config)])
    assert code == 2
    assert "sim.window = 'off'" in caplog.text


@pytest.mark.x11
@needs_xvfb
def test_the_window_shows_numbered_frames_and_logs_them_and_keys_on_one_clock(display, tmp_path):
    log_path = tmp_path / "marker.jsonl"
    game = _start_marked_game(display, tmp_path, log_path)
    try:
        with mss.MSS(display=display) as screen:
            numbers = _numbers_seen(screen, game, count=5)
        connection = xdisplay.Display(display)
        try:
            left = connection.keysym_to_keycode(XK.string_to_keysym("Left"))
            xtest.fake_input(connection, X.MotionNotify, x=240, y=135)  # keys go under the pointer
            pressed_at = time.monotonic()
            xtest.fake_input(connection, X.KeyPress, left)
            connection.sync()
            _wait_until(lambda: any(key.key == "left" for key in read_marker_log(log_path).keys))
            xtest.fake_input(connection, X.KeyRelease, left)
            connection.sync()
        finally:
            connection.close()
    finally:
        game.terminate()
        game.wait(timeout=30)
    records = read_marker_log(log_path)
    for number, grabbed_at in numbers:
        # The game logs a frame just after its flip, the test reads it a moment later: on one
        # clock the two are within a frame or two (a descheduled game may log after the grab).
        assert abs(records.frames[number] - grabbed_at) < 1.0
    assert list(records.frames) == list(range(1, len(records.frames) + 1))
    first_left = next(key for key in records.keys if key.key == "left")
    assert first_left.down and first_left.at >= pressed_at


def _start_marked_game(display: str, tmp_path: Path, log_path: Path) -> subprocess.Popen:
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", "--seconds", "120", "--seed", "1"]
    return subprocess.Popen(
        [*command, "--latency-marker", str(log_path), "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _numbers_seen(screen, game: subprocess.Popen, count: int) -> list[tuple[int, float]]:
    """`count` different frame numbers read from the hood window, each with its grab's end."""
    area = {"left": HOOD_ORIGIN[0], "top": HOOD_ORIGIN[1], "width": 480, "height": 270}
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 60.0
    while len(seen) < count:
        assert game.poll() is None, f"the game exited with {game.returncode}"
        assert time.monotonic() < deadline, f"numbers read within 60 s: {sorted(seen)}"
        image = np.array(screen.grab(area))[..., 2::-1]  # BGRA -> RGB
        number = read_marker(image)
        if number is not None:
            seen.setdefault(number, time.monotonic())
        time.sleep(0.01)
    return list(seen.items())


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.02)
