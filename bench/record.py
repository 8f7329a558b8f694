"""Benchmark the recorder: samples/s recorded from a 1280x720 window against mss's capture rate.

    .venv/bin/python bench/record.py [--seconds 15] [--hz 30] [--no-game]

On a private Xvfb (1920x1080) the built-in game runs in its windows (`charles-stream
sim`, keyboard-driven), as a real game would take its share of the cores. Then,
on the game's 1280x720 chase window:

1. The limit: mss grabs/s of that region, grabbing back to back for a few seconds,
   and sample frames/s (grab + resize to the [data] frame size + JPEG) back to back:
   the most samples/s a recorder could store if every sample were wanted.
2. The recorder at `--hz`: a scripted player holds Left/Right and cycles the
   pedals through XTest (smoothing 0.15 s) so balancing keeps wanting samples;
   the recorder polls the keys at that rate and grabs, resizes (the config's
   [data] frame size) and JPEG-encodes the window whenever a balancer wants the
   sample, storing sets in a throwaway SampleStorage.

It prints sampling steps/s (the rate labels are taken at) against `--hz`, frames
grabbed and stored per second against the capture rate, and CPU seconds (this
process: polls, grabs, encodes, SQLite) per recorded step and per grabbed frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import numpy as np
from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

from engine.core.config import default_config
from engine.core.errors import DeviceError
from engine.data.frames import encode_frame, resize_frame
from engine.data.storage import SampleStorage
from engine.recorder.inputs import KeyBindings, KeyboardInput, XKeyState
from engine.recorder.recorder import Recorder
from engine.recorder.screen import ScreenGrabber, find_window_region
from tests.torcs_process import XvfbDisplay

WINDOW = "charles-stream chase"  # the game's 1280x720 third-person window
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run both measurements and print a table row and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="recording time")
    parser.add_argument("--hz", type=float, default=30.0, help="[collector] sample_hz")
    parser.add_argument("--no-game", action="store_true", help="an empty 1280x720 region")
    args = parser.parse_args()
    with XvfbDisplay(1920, 1080) as xvfb:
        os.environ["DISPLAY"] = xvfb.name
        game = None if args.no_game else _start_game(xvfb.name)
        try:
            region = (0, 0, 1280, 720) if game is None else _wait_for_window()
            capture_fps = _capture_rate(region, seconds=3.0)
            ceiling = _sample_frame_rate(region, seconds=3.0)
            result = _record(region, args.hz, args.seconds, xvfb.name)
        finally:
            if game is not None:
                game.terminate()
                game.wait(timeout=10)
    result.update(
        capture_fps=round(capture_fps, 1),
        sample_frames_per_s=round(ceiling, 1),
        load=round(os.getloadavg()[0], 1),
    )
    print(
        f"| {'empty region' if args.no_game else 'game window'} ({result['load']}) "
        f"| {args.hz:g} | {result['steps_per_s']} ({result['steps_per_s'] / args.hz:.2f}) "
        f"| {result['grabbed_per_s']} | {result['stored_per_s']} "
        f"| {result['sample_frames_per_s']} / {result['capture_fps']} "
        f"({ceiling / capture_fps:.3f}) "
        f"| {result['cpu_ms_per_step']} ms | {result['cpu_ms_per_frame']} ms |"
    )
    print(json.dumps(result))
    return 0


def _start_game(display: str) -> subprocess.Popen[bytes]:
    config = Path(tempfile.mkdtemp()) / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sim", "--realtime", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_window() -> tuple[int, int, int, int]:
    deadline = time.monotonic() + 60.0
    while True:
        try:
            return find_window_region(WINDOW)
        except DeviceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _capture_rate(region: tuple[int, int, int, int], seconds: float) -> float:
    with ScreenGrabber(region) as screen:
        grabs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            screen.grab()
            grabs += 1
        return grabs / (time.perf_counter() - start)


def _sample_frame_rate(region: tuple[int, int, int, int], seconds: float) -> float:
    """Sample frames/s made back to back: grab, resize to [data] frame size, JPEG-encode."""
    data = default_config().data
    size = (data.frame_width, data.frame_height)
    with ScreenGrabber(region) as screen:
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            rgb = resize_frame(np.ascontiguousarray(screen.grab()), size)
            encode_frame(rgb, data.jpeg_quality)
            frames += 1
        return frames / (time.perf_counter() - start)


def _record(
    region: tuple[int, int, int, int], hz: float, seconds: float, display: str
) -> dict[str, float]:
    config = default_config()
    config = msgspec.structs.replace(
        config, collector=msgspec.structs.replace(config.collector, sample_hz=hz)
    )
    stop = threading.Event()
    player = threading.Thread(target=_play, args=(display, stop), daemon=True)
    keys = XKeyState(KeyBindings().names())
    with (
        tempfile.TemporaryDirectory() as folder,
        ScreenGrabber(region) as screen,
        SampleStorage(Path(folder) / "samples.db", capacity=100_000) as storage,
    ):
        recorder = Recorder(
            config,
            source="human:bench",
            grab=screen.grab,
            inputs=KeyboardInput(KeyBindings(), keys, smoothing_s=0.15),
            sink=storage.insert_set,
        )
        player.start()
        try:
            stats = recorder.run(seconds=seconds)
        finally:
            stop.set()
            player.join()
            keys.close()
    elapsed = stats.recording_s or seconds
    return {
        "seconds": round(elapsed, 2),
        "steps_per_s": round(stats.steps / elapsed, 1),
        "grabbed_per_s": round(stats.frames_grabbed / elapsed, 1),
        "stored_per_s": round(stats.samples_stored / elapsed, 1),
        "cpu_ms_per_step": round(1000 * stats.cpu_s / max(1, stats.steps), 2),
        "cpu_ms_per_frame": round(1000 * stats.cpu_s / max(1, stats.frames_grabbed), 2),
    }


def _play(display: str, stop: threading.Event) -> None:
    """A player: steer left then right, pedals up, off, down, off, half a second each."""
    x = Display(display)

    def key(name: str, down: bool) -> None:
        code = x.keysym_to_keycode(XK.string_to_keysym(name))
        xtest.fake_input(x, X.KeyPress if down else X.KeyRelease, code)
        x.sync()

    phase = 0
    try:
        while not stop.is_set():
            steer = ("Left", "Right", None)[phase // 4 % 3]
            pedal = ("Up", None, "Down", None)[phase % 4]
            for name in filter(None, (steer, pedal)):
                key(name, True)
            stop.wait(0.5)
            for name in filter(None, (steer, pedal)):
                key(name, False)
            phase += 1
    finally:
        x.close()


if __name__ == "__main__":
    sys.exit(main())
