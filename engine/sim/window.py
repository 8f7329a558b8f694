"""The game on the desktop: hood and chase views in two windows, in real time.

Example::

    if display_problem() is None:
        stats = run_window(game, pilot=None, seconds=None)   # keyboard driving until closed

The hood window sits at the screen's top-left corner and the chase window
right of it, so screen capture (mss) and OBS find them at known places:
`HOOD_ORIGIN` and `CHASE_ORIGIN`. Game time follows the wall clock; if
rendering falls behind, ticks go on and frames are dropped, never time.
Keys: arrows/WASD drive (without an autopilot), R respawns, Q or Esc quits.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

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
    import mss

    # mss >= 10 names its factory MSS; older releases call it mss.
    open_screen = getattr(mss, "MSS", None) or mss.mss
    try:
        with open_screen() as screen:
            screen.grab({"left": 0, "top": 0, "width": 1, "height": 1})
    except Exception as error:  # mss reports an unreachable X server in several ways.
        return f"cannot open display DISPLAY={display!r}: {error}"
    return None


def run_window(
    game: Game,
    pilot: Autopilot | None,
    seconds: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> RunStats:
    """Show both views until `seconds` of game time pass (None: until closed or Q)."""
    _open_windows(game)
    keys = KeyboardDriver(None if pilot else system_held_keys())
    respawn_rng = np.random.default_rng(game.seed)
    frames = 0
    started = clock()
    try:
        while seconds is None or game.time < seconds - 1e-9:
            for _ in range(_MAX_CATCH_UP_TICKS):
                controls = pilot.decide(game) if pilot else keys.controls(clock())
                game.set_controls(controls)
                game.tick()
                behind = clock() - started - game.time
                if behind < game.dt or (seconds is not None and game.time >= seconds - 1e-9):
                    break
            cv2.imshow(HOOD_WINDOW, cv2.cvtColor(game.render_hood(), cv2.COLOR_RGB2BGR))
            cv2.imshow(CHASE_WINDOW, cv2.cvtColor(game.render_chase(), cv2.COLOR_RGB2BGR))
            frames += 1
            wait_ms = max(1, int((started + game.time - clock()) * 1000))
            key = cv2.waitKeyEx(wait_ms)
            if frames == 1:
                log.info("window: first frame on screen")
            if key in QUIT_KEYS or _closed():
                break
            if key in RESPAWN_KEYS:
                game.respawn(respawn_rng)
            keys.press(key, clock())
    finally:
        cv2.destroyAllWindows()
        cv2.waitKey(1)
    return RunStats(frames=frames, wall_s=clock() - started)


def chase_origin(game: Game) -> tuple[int, int]:
    """Top-left screen corner of the chase window: right of the hood window."""
    return (HOOD_ORIGIN[0] + game.config.hood_width, HOOD_ORIGIN[1])


def _open_windows(game: Game) -> None:
    flags = cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL
    try:
        for name, origin in ((HOOD_WINDOW, HOOD_ORIGIN), (CHASE_WINDOW, chase_origin(game))):
            cv2.namedWindow(name, flags)
            cv2.moveWindow(name, *origin)
    except cv2.error as error:
        raise WindowUnavailable(
            f"OpenCV cannot open a window (is it a headless build?): {error}"
        ) from None
    log.info(
        "windows open: %r at %s, %r at %s",
        HOOD_WINDOW,
        HOOD_ORIGIN,
        CHASE_WINDOW,
        chase_origin(game),
    )


def _closed() -> bool:
    """True once the user closed either window."""
    try:
        return any(
            cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1
            for name in (HOOD_WINDOW, CHASE_WINDOW)
        )
    except cv2.error:
        return True
