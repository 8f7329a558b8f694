"""`charles-stream record` on a real X server: the built-in game's window, a scripted player.

The game runs as its own process in a window on a private Xvfb (`charles-stream
sim`, driven by keys), the recorder as another (`charles-stream record
--window`), and the "player" is this test pressing keys through XTest, so the
recorder sees exactly what it would see with a person at the keyboard: the
window's pixels and the X server's key state.

The buffer is balanced on throttle_brake (5 bins) with smoothing, so cycling
the pedals completes sets within seconds while steering is whatever the player
holds: holding Left throughout must make steering -1 dominate what is stored.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.xtest_player import Player
from tests.xvfb import built_in_game_on_xvfb

pytestmark = pytest.mark.x11

REPO = Path(__file__).resolve().parents[1]
GAME_WINDOW = "charles-stream hood"
START_TIMEOUT_S = 60.0  # the game and the recorder import OpenCV, pygame: slow on busy cores
CONFIG = """
[sim]
window = "on"

[data]
frame_width = 64
frame_height = 36
outputs = ["steering", "throttle_brake"]
balanced_outputs = ["throttle_brake"]

[data.bins]
steering = { kind = "axis", divisions = 1 }
throttle_brake = { kind = "trigger_pair", divisions = 1 }

[collector]
sample_hz = 20.0
"""
# One pedal cycle through every throttle_brake bin (-1, between, 0, between, 1), 4 s.


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Xvfb with the built-in game in its window, driven by keys (no --autopilot)."""
    config = tmp_path_factory.mktemp("game") / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    with built_in_game_on_xvfb(config, START_TIMEOUT_S) as name:
        yield name


class Recording:
    """`charles-stream record` as a process; its log lines readable as they come."""

    def __init__(self, display: str, tmp_path: Path, seconds: float) -> None:
        config = tmp_path / "config.toml"
        config.write_text(CONFIG, encoding="utf-8")
        self.data = tmp_path / "data"
        command = [sys.executable, "-m", "engine.cli", "record", "--window", GAME_WINDOW]
        command += ["--smoothing", "0.15", "--player", "tester", "--seconds", str(seconds)]
        command += ["--data", str(self.data), "--config", str(config), "--json"]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "DISPLAY": display},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"record never logged {text!r}")
            if text in line:
                return

    def finish(self) -> dict:
        out, _ = self.process.communicate(timeout=START_TIMEOUT_S)
        assert self.process.returncode == 0
        return json.loads(out.strip().splitlines()[-1])

    def stored(self) -> list[tuple[str, dict[str, float]]]:
        with sqlite3.connect(self.data / "samples" / "samples.db") as connection:
            rows = connection.execute("SELECT source, outputs FROM samples").fetchall()
        return [(source, json.loads(outputs)) for source, outputs in rows]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)


@pytest.fixture
def player(display: str) -> Iterator[Player]:
    keys = Player(display)
    yield keys
    keys.close()


def test_holding_left_records_steering_left_samples(display, player, tmp_path):
    recording = Recording(display, tmp_path, seconds=10)
    try:
        recording.wait_for("recording:")
        player.hold("Left")
        player.pedal_cycles(2)
        summary = recording.finish()
    finally:
        player.release_all()
        recording.stop()
    rows = recording.stored()
    assert summary["samples"] == len(rows) >= 5
    assert {source for source, _ in rows} == {"human:tester"}
    steering = [outputs["steering"] for _, outputs in rows]
    assert steering.count(-1.0) >= 0.8 * len(steering)


def test_the_pause_key_stops_sampling(display, player, tmp_path):
    recording = Recording(display, tmp_path, seconds=16)
    try:
        recording.wait_for("recording:")
        player.tap("F9")
        recording.wait_for("PAUSED:")
        player.hold("Right")  # paused: none of this may be stored
        player.pedal_cycles(1)
        player.release("Right")
        player.tap("F9")
        recording.wait_for("recording:")
        player.hold("Left")
        player.pedal_cycles(2)
        summary = recording.finish()
    finally:
        player.release_all()
        recording.stop()
    steering = [outputs["steering"] for _, outputs in recording.stored()]
    assert len(steering) >= 5
    assert max(steering) <= 0.0, "a sample from the paused stretch (Right held) was stored"
    assert summary["paused_s"] >= 3.5


def test_a_missing_window_exits_3_naming_it_and_the_windows_there(display, tmp_path):
    command = [sys.executable, "-m", "engine.cli", "record", "--window", "No Such Game"]
    command += ["--seconds", "1", "--data", str(tmp_path)]
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == 3
    assert "'No Such Game'" in result.stderr
    assert f"'{GAME_WINDOW}'" in result.stderr


def test_sigterm_stops_recording_and_keeps_every_stored_set(display, player, tmp_path):
    recording = Recording(display, tmp_path, seconds=120)
    try:
        recording.wait_for("recording:")
        player.hold("Left")
        player.pedal_cycles(2)
        recording.process.send_signal(signal.SIGTERM)
        summary = recording.finish()
    finally:
        player.release_all()
        recording.stop()
    rows = recording.stored()
    assert summary["samples"] == len(rows) >= 5
    assert summary["recording_s"] < 60
