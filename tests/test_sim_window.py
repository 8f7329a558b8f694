"""Window mode on a real X server (Xvfb): both views where screen capture expects them, pixel
for pixel, and real X key events (XTest) driving, respawning and quitting the game."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import mss
import numpy as np
import pygame
import pytest
from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib.ext import xtest
from Xlib.protocol import event as xevent

from engine.core.config import AutopilotConfig, SimConfig
from engine.sim import window as window_module
from engine.sim.autopilot import Autopilot
from engine.sim.game import Game
from engine.sim.keyboard import QUIT_KEYS, SdlKeys
from engine.sim.window import CHASE_WINDOW, HOOD_ORIGIN, HOOD_WINDOW, chase_origin, open_windows

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None,
        reason="the Xvfb binary is not installed (apt-get install xvfb)",
    ),
]


def test_window_mode_shows_hood_and_chase_views_on_screen(display, tmp_path):
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


def test_keyboard_drives_the_car_and_q_quits(display, tmp_path):
    game = _start_game(display, tmp_path, ["--seconds", "60"])
    try:
        log_lines = _lines(game.stderr)
        _wait_for(log_lines, "first frame on screen", timeout=30.0)
        with XKeyboard(display) as keys:
            keys.point_at(HOOD_ORIGIN[0] + 240, HOOD_ORIGIN[1] + 135)
            keys.hold("Up", seconds=3.0)
            keys.hold("q", seconds=0.1)
            out, _ = game.communicate(timeout=30.0)
    finally:
        game.kill()
        game.wait()
    assert game.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["seconds"] < 30.0, "Q did not end the game"
    assert summary["distance_m"] > 3.0, "holding Up did not drive the car"


def test_closing_a_window_quits_the_game(display, tmp_path):
    game = _start_game(display, tmp_path, ["--autopilot", "--seconds", "60"])
    try:
        log_lines = _lines(game.stderr)
        _wait_for(log_lines, "first frame on screen", timeout=30.0)
        with XKeyboard(display) as keys:
            keys.close_window(HOOD_WINDOW)
            out, _ = game.communicate(timeout=30.0)
    finally:
        game.kill()
        game.wait()
    assert game.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["seconds"] < 30.0


def test_the_screen_shows_exactly_the_rendered_frames(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    game = Game(SimConfig(), seed=1)
    hood, chase = game.render_hood(), game.render_chase()
    windows = open_windows(game)
    chase_left, chase_top = chase_origin(game)
    try:
        with mss.MSS(display=display) as screen:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                windows.show(hood, chase)
                windows.poll(wait_s=0.05)
                shown_hood = _grab(screen, *HOOD_ORIGIN, 480, 270)
                shown_chase = _grab(screen, chase_left, chase_top, 1280, 720)
                if np.array_equal(shown_hood, hood) and np.array_equal(shown_chase, chase):
                    break
    finally:
        windows.close()
    assert np.array_equal(shown_hood, hood), f"{np.mean(shown_hood != hood):.1%} of hood differ"
    assert np.array_equal(shown_chase, chase), f"{np.mean(shown_chase != chase):.1%} differ"


def test_real_key_events_reach_the_windows_and_their_key_state(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    game = Game(SimConfig(), seed=1)
    windows = open_windows(game)
    try:
        windows.show(game.render_hood(), game.render_chase())
        windows.poll(wait_s=0.1)
        assert SdlKeys().held() == set()
        with XKeyboard(display) as keys:
            keys.point_at(240, 135)
            keys.down("Up")
            keys.down("a")
            pressed = _poll_until(windows, lambda pressed: pygame.K_a in pressed)
            assert pygame.K_UP in pressed and SdlKeys().held() == {"up", "left"}
            keys.up("Up")
            keys.up("a")
            _poll_until(windows, lambda pressed: SdlKeys().held() == set())
            keys.hold("Escape", seconds=0.05)
            assert QUIT_KEYS & set(_poll_until(windows, lambda pressed: bool(pressed)))
    finally:
        windows.close()


def test_closing_either_window_is_reported(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    game = Game(SimConfig(), seed=1)
    windows = open_windows(game)
    try:
        windows.show(game.render_hood(), game.render_chase())
        assert windows.poll(wait_s=0.1) == ([], False)
        with XKeyboard(display) as keys:
            keys.close_window(CHASE_WINDOW)
        deadline = time.monotonic() + 10.0
        closed = False
        while not closed and time.monotonic() < deadline:
            _, closed = windows.poll(wait_s=0.05)
    finally:
        windows.close()
    assert closed


def test_windows_close_cleanly_and_can_open_again(display, monkeypatch):
    monkeypatch.setenv("DISPLAY", display)
    game = Game(SimConfig(hood_width=64, hood_height=36, chase_width=128, chase_height=72), seed=1)
    for _ in range(2):
        windows = open_windows(game)
        windows.show(np.zeros((36, 64, 3), np.uint8), np.zeros((72, 128, 3), np.uint8))
        assert windows.poll(wait_s=0.0) == ([], False)
        windows.close()
        windows.close()


class ScriptedWindows:
    """Stands in for the windows: hands out one scripted list of key presses per frame."""

    def __init__(self, presses: list[list[int]]):
        self.presses = presses
        self.shown = 0

    def show(self, hood: np.ndarray, chase: np.ndarray) -> None:
        self.shown += 1

    def poll(self, wait_s: float) -> tuple[list[int], bool]:
        return (self.presses.pop(0) if self.presses else []), False

    def close(self) -> None:
        """Nothing to release: these windows are scripted."""


def test_r_respawns_and_q_ends_the_run_at_once(monkeypatch):
    game = Game(SimConfig(), seed=1)
    respawns = []
    monkeypatch.setattr(game, "respawn", lambda rng: respawns.append(game.time))
    windows = ScriptedWindows([[], [pygame.K_r], [], [pygame.K_q], []])
    monkeypatch.setattr(window_module, "open_windows", lambda game, chase_view: windows)
    clock = iter(range(10_000)).__next__  # each reading 1 s later: the loop never sleeps
    pilot = Autopilot(AutopilotConfig(), seed=1)
    stats = window_module.run_window(game, pilot, seconds=None, clock=lambda: clock() / 30)
    assert len(respawns) == 1 and windows.shown == 4 and stats.frames == 4


def test_a_game_played_before_goes_on_without_waiting_for_its_past_time(monkeypatch):
    # A track driven again (the keyboard NPC's turns) starts with game time on its clock.
    game = Game(SimConfig(), seed=1)
    for _ in range(300):
        game.tick()
    waits = []

    class TimedWindows(ScriptedWindows):
        def poll(self, wait_s: float) -> tuple[list[int], bool]:
            waits.append(wait_s)
            return super().poll(wait_s)

    monkeypatch.setattr(window_module, "open_windows", lambda game, chase_view: TimedWindows([]))
    ticks = iter(range(10_000)).__next__  # the wall clock: one tick's time per reading
    pilot = Autopilot(AutopilotConfig(), seed=1)
    stats = window_module.run_window(
        game, pilot, seconds=game.time + 1.0, clock=lambda: 100.0 + ticks() / 30
    )
    assert game.time == pytest.approx(11.0)
    assert max(waits) <= 1 / 30 + 1e-9  # never the 10 s already on the game's clock
    assert stats.wall_s < 5.0


class XKeyboard:
    """Real X input through the XTest extension, as a person at the keyboard makes it."""

    def __init__(self, name: str):
        self._display = xdisplay.Display(name)

    def __enter__(self) -> XKeyboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._display.close()

    def point_at(self, x: int, y: int) -> None:
        """Move the pointer there: with no window manager, keys go to the window under it."""
        xtest.fake_input(self._display, X.MotionNotify, x=x, y=y)
        self._display.sync()

    def down(self, key: str) -> None:
        xtest.fake_input(self._display, X.KeyPress, self._keycode(key))
        self._display.sync()

    def up(self, key: str) -> None:
        xtest.fake_input(self._display, X.KeyRelease, self._keycode(key))
        self._display.sync()

    def hold(self, key: str, seconds: float) -> None:
        self.down(key)
        time.sleep(seconds)
        self.up(key)

    def close_window(self, title: str) -> None:
        """What a window manager's close button sends: WM_DELETE_WINDOW."""
        display = self._display
        name_atom = display.intern_atom("_NET_WM_NAME")
        windows = [
            window
            for window in display.screen().root.query_tree().children
            if (name := window.get_full_property(name_atom, X.AnyPropertyType))
            and bytes(name.value).decode() == title
        ]
        assert len(windows) == 1, f"{len(windows)} windows titled {title!r}"
        message = xevent.ClientMessage(
            window=windows[0],
            client_type=display.intern_atom("WM_PROTOCOLS"),
            data=(32, [display.intern_atom("WM_DELETE_WINDOW"), X.CurrentTime, 0, 0, 0]),
        )
        windows[0].send_event(message, event_mask=X.NoEventMask)
        display.sync()

    def _keycode(self, key: str) -> int:
        return self._display.keysym_to_keycode(XK.string_to_keysym(key))


def _poll_until(windows, condition, timeout: float = 10.0) -> list[int]:
    """Keys pressed while polling the windows until `condition(pressed)` holds."""
    pressed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pressed += windows.poll(wait_s=0.02)[0]
        if condition(pressed):
            return pressed
    raise AssertionError(f"not within {timeout} s; keys pressed: {pressed}")


def _start_game(display: str, tmp_path: Path, arguments: list[str]) -> subprocess.Popen:
    """`charles-stream sim` with sim.window = "on" on that display, JSON summary on stdout."""
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", *arguments]
    return subprocess.Popen(
        [*command, "--json", "--seed", "1", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
