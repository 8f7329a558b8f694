"""The keyboard NPC plays the built-in game's window through X key events only, and pauses a
real recorder (`record --paused`) around its mistakes; `sim --start-on-enter` waits for its
start. Real Xvfb, real XTest, separate processes, as with a game nobody here wrote."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Bounds a broken run; the processes say when they are ready, nothing waits on a guess.
READY_TIMEOUT_S = 120.0

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None,
        reason="the Xvfb binary is not installed (apt-get install xvfb)",
    ),
]


class Command:
    """`charles-stream ...` in the background; its log lines can be awaited."""

    def __init__(self, display: str, tmp_path: Path, *args: str, stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *args],
            cwd=REPO,
            env={**os.environ, "DISPLAY": display, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def wait_for(self, text: str) -> None:
        while True:
            line = self.lines.get(timeout=READY_TIMEOUT_S)
            assert line is not None, f"ended before {text!r}:\n" + "".join(self.log[-30:])
            if text in line:
                return

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self, stop: int | None = None) -> dict:
        if stop is not None:
            self.process.send_signal(stop)
        out, _ = self.process.communicate(timeout=READY_TIMEOUT_S)
        assert self.process.returncode in (0, 130), "".join(self.log[-30:])
        return json.loads(out.strip().splitlines()[-1])

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)


def test_the_npc_drives_the_window_through_keys_only(display, tmp_path):
    npc = Command(display, tmp_path, "npc", "--clean", "--seed", "3", "--seconds", "8", "--json")
    summary = npc.result()
    # 8 s from rest, clean: well over a hundred metres on the road, never off it.
    assert summary["progress_m"] > 60.0
    assert summary["offroad_events"] == 0
    assert summary["seconds"] == pytest.approx(8.0, abs=0.2)


def test_the_npc_takes_turns_at_tracks(display, tmp_path):
    npc = Command(
        display,
        tmp_path,
        "npc",
        "--clean",
        "--seeds",
        "1,4",
        "--segment-seconds",
        "3",
        "--seconds",
        "7",
        "--json",
    )
    summary = npc.result()
    assert summary["seeds"] == [1, 4]
    assert summary["seconds"] == pytest.approx(7.0, abs=0.3)
    assert summary["progress_m"] > 30.0


def test_the_npc_pauses_a_recorder_around_its_mistakes(display, tmp_path):
    npc = Command(
        display,
        tmp_path,
        "npc",
        "--seed",
        "3",
        "--seconds",
        "20",
        "--pause-key",
        "F9",
        "--start-on-enter",
        "--json",
        "--config",
        str(_config_with_mistakes_every(tmp_path, 1.0)),
        stdin=True,
    )
    npc.wait_for("waiting for the start")
    recorder = Command(
        display,
        tmp_path,
        "record",
        "--game",
        "builtin",
        "--paused",
        "--player",
        "npc",
        "--data",
        str(tmp_path / "data"),
        "--json",
    )
    recorder.wait_for("recording human:")
    npc.say("go")
    driven = npc.result()
    recorded = recorder.result(stop=signal.SIGINT)
    # Every tap the NPC made reached the recorder: the recorder opens one episode as it starts
    # and one more at each resume, and the NPC's last tap left it paused (an even number).
    assert driven["pause_taps"] >= 4 and driven["pause_taps"] % 2 == 0
    assert recorded["episodes"] == 1 + driven["pause_taps"] // 2
    assert recorded["recording_s"] > 5.0 and recorded["paused_s"] > 1.0


def test_sim_start_on_enter_waits_with_the_clock_stopped(display, tmp_path):
    game = Command(
        display,
        tmp_path,
        "sim",
        "--seed",
        "3",
        "--seconds",
        "2",
        "--start-on-enter",
        "--json",
        stdin=True,
    )
    game.wait_for("waiting for the start")
    game.say("")
    summary = game.result()
    assert summary["seconds"] == pytest.approx(2.0, abs=0.1)
    assert summary["progress_m"] == 0.0  # nobody pressed a key


def test_a_bad_pause_key_is_refused_naming_it(display, tmp_path):
    npc = Command(display, tmp_path, "npc", "--pause-key", "F99x", "--seconds", "1")
    npc.wait_for("--pause-key 'F99x' is not an X key name; accepted: keysym names")
    assert npc.process.wait(timeout=READY_TIMEOUT_S) == 2


def _config_with_mistakes_every(tmp_path: Path, seconds: float) -> Path:
    text = (REPO / "config.toml").read_text()
    lines = [
        f"perturbation_interval_s = {seconds}"
        if line.startswith("perturbation_interval_s")
        else line
        for line in text.splitlines()
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_hood_only_npc_opens_no_chase_window(display, tmp_path):
    from engine.games.window import window_titles
    from engine.sim.window import CHASE_WINDOW, HOOD_WINDOW

    npc = Command(
        display,
        tmp_path,
        "npc",
        "--clean",
        "--seed",
        "3",
        "--seconds",
        "4",
        "--hood-only",
        "--start-on-enter",
        "--json",
        stdin=True,
    )
    npc.wait_for("waiting for the start")
    names = window_titles(display)
    npc.say("go")
    summary = npc.result()
    assert HOOD_WINDOW in names
    assert CHASE_WINDOW not in names
    assert summary["progress_m"] > 10.0
