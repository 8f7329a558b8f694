"""The game on the desktop: hood and chase views in two windows, in real time.

Example::

    if display_problem() is None:
        stats = run_window(game, pilot=None, seconds=None)   # keyboard driving until closed

The hood window sits at the screen's top-left corner and the chase window
right of it, so screen capture (mss) and OBS find them at known places:
`HOOD_ORIGIN` and `chase_origin(game)`. On Linux the windows are plain X11
windows (see `x11.py` for why); elsewhere OpenCV's. Game time follows the
wall clock; if rendering falls behind, ticks go on and frames are dropped,
never time. Keys: arrows/WASD drive (without an autopilot), R respawns, Q or
Esc quits; closing a window quits too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from engine.sim.autopilot import Autopilot
from engine.sim.game import Game
from engine.sim.keyboard import QUIT_KEYS, RESPAWN_KEYS, KeyboardDriver, system_held_keys
from engine.sim.runner import RunStats

log = logging.getLogger("charles.sim")

HOOD_WINDOW = "charles-stream hood"
CHASE_WINDOW = "charles-stream chase"
HOOD_ORIGIN = (0, 0)
# Most ticks run between two shown frames when rendering falls behind.
_MAX_CATCH_UP_TICKS = 5


class WindowUnavailable(RuntimeError):
    """No window can be opened here; the message says why."""


def display_problem() -> str | None:
    """Why this process cannot show a window, or None when it can."""
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "no display: DISPLAY is not set"
    from engine.sim.x11 import X11Error, probe_display

    try:
        probe_display()
    except X11Error as error:
        return f"cannot use display DISPLAY={display!r}: {error}"
    return None


def chase_origin(game: Game) -> tuple[int, int]:
    """Top-left screen corner of the chase window: right of the hood window."""
    return (HOOD_ORIGIN[0] + game.config.hood_width, HOOD_ORIGIN[1])


def run_window(
    game: Game,
    pilot: Autopilot | None,
    seconds: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> RunStats:
    """Show both views until `seconds` of game time pass (None: until closed or Q)."""
    hood = game.render_hood()
    chase = game.render_chase()
    screen = open_windows(game)
    keys = KeyboardDriver(None if pilot else system_held_keys())
    respawn_rng = np.random.default_rng(game.seed)
    frames = 0
    started = clock()
    try:
        while True:
            screen.show(hood, chase)
            frames += 1
            if frames == 1:
                log.info("window: first frame on screen")
            pressed, closed = screen.poll(wait_s=started + game.time - clock())
            if closed or any(key in QUIT_KEYS for key in pressed):
                break
            if any(key in RESPAWN_KEYS for key in pressed):
                game.respawn(respawn_rng)
            now = clock()
            for key in pressed:
                keys.press(key, now)
            if seconds is not None and game.time >= seconds - 1e-9:
                break
            _catch_up(game, pilot, keys, seconds, clock, started)
            hood = game.render_hood()
            chase = game.render_chase()
    finally:
        screen.close()
    return RunStats(frames=frames, wall_s=clock() - started)


def _catch_up(
    game: Game,
    pilot: Autopilot | None,
    keys: KeyboardDriver,
    seconds: float | None,
    clock: Callable[[], float],
    started: float,
) -> None:
    """One tick, and more (up to a limit) while game time lags the wall clock."""
    for _ in range(_MAX_CATCH_UP_TICKS):
        controls = pilot.decide(game) if pilot else keys.controls(clock())
        game.set_controls(controls)
        game.tick()
        behind = clock() - started - game.time
        if behind < game.dt or (seconds is not None and game.time >= seconds - 1e-9):
            return


class GameWindows(Protocol):
    """A pair of windows for the two views."""

    def show(self, hood: np.ndarray, chase: np.ndarray) -> None:
        """Display both RGB frames."""

    def poll(self, wait_s: float) -> tuple[list[int], bool]:
        """Wait up to `wait_s`, then return the keys pressed and whether a window was closed."""

    def close(self) -> None:
        """Remove both windows."""


def open_windows(game: Game) -> GameWindows:
    """The hood and chase windows at their known places; `WindowUnavailable` if impossible.

    Use them from the thread that opened them.
    """
    if sys.platform.startswith("linux"):
        windows: GameWindows = _X11Windows(game)
    else:
        windows = _OpenCVWindows(game)
    log.info(
        "windows open: %r at %s, %r at %s",
        HOOD_WINDOW,
        HOOD_ORIGIN,
        CHASE_WINDOW,
        chase_origin(game),
    )
    return windows


class _X11Windows:
    """The views in two bare X11 windows."""

    def __init__(self, game: Game):
        from engine.sim.x11 import X11Error, X11Window

        config = game.config
        try:
            self._hood = X11Window(HOOD_WINDOW, config.hood_width, config.hood_height, HOOD_ORIGIN)
            self._chase = X11Window(
                CHASE_WINDOW, config.chase_width, config.chase_height, chase_origin(game)
            )
        except X11Error as error:
            raise WindowUnavailable(str(error)) from None

    def show(self, hood: np.ndarray, chase: np.ndarray) -> None:
        self._hood.show(hood)
        self._chase.show(chase)

    def poll(self, wait_s: float) -> tuple[list[int], bool]:
        if wait_s > 0:
            # Pacing to the wall clock: key presses queue up meanwhile.
            time.sleep(wait_s)
        hood_keys, hood_closed = self._hood.poll()
        chase_keys, chase_closed = self._chase.poll()
        return hood_keys + chase_keys, hood_closed or chase_closed

    def close(self) -> None:
        self._hood.close()
        self._chase.close()


class _OpenCVWindows:
    """The views in two OpenCV (highgui) windows: Windows and macOS."""

    def __init__(self, game: Game):
        flags = cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL
        try:
            for name, origin in ((HOOD_WINDOW, HOOD_ORIGIN), (CHASE_WINDOW, chase_origin(game))):
                cv2.namedWindow(name, flags)
                cv2.moveWindow(name, *origin)
        except cv2.error as error:
            raise WindowUnavailable(
                f"OpenCV cannot open a window (is it a headless build?): {error}"
            ) from None
        self._seen = False

    def show(self, hood: np.ndarray, chase: np.ndarray) -> None:
        cv2.imshow(HOOD_WINDOW, cv2.cvtColor(hood, cv2.COLOR_RGB2BGR))
        cv2.imshow(CHASE_WINDOW, cv2.cvtColor(chase, cv2.COLOR_RGB2BGR))

    def poll(self, wait_s: float) -> tuple[list[int], bool]:
        key = cv2.waitKeyEx(max(1, int(wait_s * 1000)))
        visible = self._visible()
        # A window not mapped yet also reads as invisible: only one seen before counts as closed.
        closed = self._seen and not visible
        self._seen = self._seen or visible
        return ([key] if key != -1 else []), closed

    def close(self) -> None:
        cv2.destroyAllWindows()
        cv2.waitKey(1)

    @staticmethod
    def _visible() -> bool:
        try:
            return all(
                cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) >= 1
                for name in (HOOD_WINDOW, CHASE_WINDOW)
            )
        except cv2.error:
            return False
