"""The game on the desktop: hood and chase views in two windows, in real time.

Example::

    if display_problem() is None:
        stats = run_window(game, pilot=None, seconds=None)   # keyboard driving until closed

The hood window sits at the screen's top-left corner and the chase window
right of it, so screen capture (mss) and OBS find them at known places:
`HOOD_ORIGIN` and `chase_origin(game)`. The windows are SDL2's, through
pygame-ce: one path for X11 (Xvfb included), Wayland, Windows and macOS.
Only SDL's video subsystem starts (`pygame.display`), never audio, so a
machine without sound runs it. Game time follows the wall clock; if
rendering falls behind, ticks go on and frames are dropped, never time.
Keys: arrows/WASD drive (without an autopilot), R respawns, Q or Esc quits;
closing a window quits too. A `player` sitting at the keyboard (the keyboard
NPC) is shown the game before every tick; the game still reads only the keys.
With a `marker` (`charles-stream sim --latency-marker FILE`, engine/sim/marker.py)
each hood frame shows its number in its top-left corner, and the game logs when
each frame was on screen and when it read each key event, for measuring the
decision latency of a driver that sees only the window.
"""

from __future__ import annotations

import os

# pygame prints a greeting on stdout when imported; our stdout carries `--json` summaries.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import logging
import sys
import time
from collections.abc import Callable

import numpy as np
import pygame

from engine.sim.autopilot import Autopilot
from engine.sim.game import Game
from engine.sim.keyboard import QUIT_KEYS, RESPAWN_KEYS, KeyboardDriver, SdlKeys
from engine.sim.marker import LatencyMarker
from engine.sim.runner import RunStats
from engine.sim.score import RoadProgress

log = logging.getLogger("charles.sim")

HOOD_WINDOW = "charles-stream hood"
CHASE_WINDOW = "charles-stream chase"
HOOD_ORIGIN = (0, 0)
# SDL video drivers that put windows on a desktop; SDL falls back to "offscreen" (invisible)
# when none of them can connect.
DESKTOP_DRIVERS = frozenset({"x11", "wayland", "windows", "cocoa"})
# Most ticks run between two shown frames when rendering falls behind.
_MAX_CATCH_UP_TICKS = 5
# How often a window waiting for its start looks for it (and for a close).
_START_POLL_S = 0.05


class WindowUnavailable(RuntimeError):
    """No window can be opened here; the message says why."""


def display_problem() -> str | None:
    """Why this process cannot show a window, or None when it can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display: DISPLAY is not set (nor WAYLAND_DISPLAY)"
    try:
        _start_video()
    except WindowUnavailable as error:
        return str(error)
    pygame.display.quit()
    return None


def chase_origin(game: Game) -> tuple[int, int]:
    """Top-left screen corner of the chase window: right of the hood window."""
    return (HOOD_ORIGIN[0] + game.config.hood_width, HOOD_ORIGIN[1])


Player = Callable[[Game], None]


def run_window(
    game: Game,
    pilot: Autopilot | None,
    seconds: float | None,
    clock: Callable[[], float] = time.monotonic,
    player: Player | None = None,
    start: Callable[[], bool] | None = None,
    chase_view: bool = True,
    marker: LatencyMarker | None = None,
) -> RunStats:
    """Show both views until `seconds` of game time pass (None: until closed or Q).

    Without a `pilot` the car follows the keys; `player(game)` runs before every tick, for
    someone who looks at the game and presses keys (it must not set the controls itself).
    With `start`, the first frame waits on screen, the game not ticking, until `start()`
    says go: a "press Enter" moment, so whoever watches or drives from outside is ready.
    Without `chase_view` only the hood window opens: what a model sees and a recorder
    records, for half the rendering (a recording rig needs no view for the stream).
    With a `marker`, hood frames are numbered and frames shown and keys read are logged.
    """
    hood = game.render_hood()
    chase = game.render_chase() if chase_view else None
    screen = open_windows(game, chase_view)
    screen.marker = marker
    keys = None if pilot else KeyboardDriver(SdlKeys())
    progress = RoadProgress(game)
    respawn_rng = np.random.default_rng(game.seed)
    frames = 0
    try:
        if start is not None and not _wait_for_start(screen, hood, chase, start):
            return RunStats(frames=0, wall_s=0.0)
        opened = clock()
        # When game time 0 was, on the wall clock: a game driven before goes on from its time.
        started = opened - game.time
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
            if seconds is not None and game.time >= seconds - 1e-9:
                break
            _catch_up(game, pilot, keys, player, progress, seconds, clock, started)
            hood = game.render_hood()
            chase = game.render_chase() if chase_view else None
    finally:
        screen.close()
    return RunStats(frames=frames, wall_s=clock() - opened, progress_m=progress.metres)


def _wait_for_start(
    screen: GameWindows, hood: np.ndarray, chase: np.ndarray | None, start: Callable[[], bool]
) -> bool:
    """Show the first frame until `start()`; False if the window was closed or quit meanwhile."""
    screen.show(hood, chase)
    log.info("window: first frame on screen, waiting for the start")
    while not start():
        pressed, closed = screen.poll(wait_s=_START_POLL_S)
        if closed or any(key in QUIT_KEYS for key in pressed):
            return False
    return True


def _catch_up(
    game: Game,
    pilot: Autopilot | None,
    keys: KeyboardDriver | None,
    player: Player | None,
    progress: RoadProgress,
    seconds: float | None,
    clock: Callable[[], float],
    started: float,
) -> None:
    """One tick, and more (up to a limit) while game time lags the wall clock."""
    for _ in range(_MAX_CATCH_UP_TICKS):
        if player is not None:
            player(game)
        if pilot is not None:
            game.set_controls(pilot.decide(game))
        elif keys is not None:
            game.set_controls(keys.controls(clock()))
        progress.tick()
        behind = clock() - started - game.time
        if behind < game.dt or (seconds is not None and game.time >= seconds - 1e-9):
            return


def open_windows(game: Game, chase_view: bool = True) -> GameWindows:
    """The hood and chase windows at their known places; `WindowUnavailable` if impossible.

    Use them from the thread that opened them. Without `chase_view`, the hood window alone.
    """
    windows = GameWindows(game, chase_view)
    log.info(
        "windows open (SDL %s): %r at %s%s",
        pygame.display.get_driver(),
        HOOD_WINDOW,
        HOOD_ORIGIN,
        f", {CHASE_WINDOW!r} at {chase_origin(game)}" if chase_view else " (no chase window)",
    )
    return windows


class GameWindows:
    """The two views in two fixed-size SDL windows; key presses and closing come from both.

    Set `marker` to number the hood frames shown and log them and every key event read.
    """

    marker: LatencyMarker | None = None

    def __init__(self, game: Game, chase_view: bool = True) -> None:
        config = game.config
        _start_video()
        try:
            self._hood = pygame.Window(
                HOOD_WINDOW, (config.hood_width, config.hood_height), position=HOOD_ORIGIN
            )
            self._chase = (
                pygame.Window(
                    CHASE_WINDOW,
                    (config.chase_width, config.chase_height),
                    position=chase_origin(game),
                )
                if chase_view
                else None
            )
        except pygame.error as error:
            pygame.display.quit()
            raise WindowUnavailable(f"SDL cannot open a window: {error}") from None
        self._open = True

    def show(self, hood: np.ndarray, chase: np.ndarray | None) -> None:
        """Display both RGB uint8 frames (each of its window's size); no chase: hood only."""
        marker = self.marker
        if marker is not None:
            hood = marker.stamp(hood)
        for window, frame in ((self._hood, hood), (self._chase, chase)):
            if window is None or frame is None:
                continue
            frame = np.ascontiguousarray(frame)
            # A surface over the frame's own bytes; the blit converts RGB to the window's format.
            image = pygame.image.frombuffer(frame, (frame.shape[1], frame.shape[0]), "RGB")
            window.get_surface().blit(image, (0, 0))
            window.flip()
            if marker is not None and window is self._hood:
                # SDL's X11 flip ends with XSync: the server has drawn the frame by now.
                marker.frame_shown(time.monotonic())

    def poll(self, wait_s: float) -> tuple[list[int], bool]:
        """Wait up to `wait_s`, then return the keys pressed (SDL key codes) and whether a
        window was closed."""
        if wait_s > 0:
            # Pacing to the wall clock: key presses queue up meanwhile.
            time.sleep(wait_s)
        pressed: list[int] = []
        closed = False
        events = pygame.event.get()
        # The moment the game reads the keys: the next tick drives with them.
        read_at = time.monotonic()
        for event in events:
            if event.type == pygame.KEYDOWN:
                pressed.append(event.key)
            elif event.type in (pygame.WINDOWCLOSE, pygame.QUIT):
                closed = True
            if self.marker is not None and event.type in (pygame.KEYDOWN, pygame.KEYUP):
                self.marker.key_seen(
                    pygame.key.name(event.key), event.type == pygame.KEYDOWN, read_at
                )
        return pressed, closed

    def close(self) -> None:
        """Remove both windows and stop SDL's video (again: nothing happens)."""
        if not self._open:
            return
        self._open = False
        self._hood.destroy()
        if self._chase is not None:
            self._chase.destroy()
        pygame.display.quit()


def _start_video() -> None:
    """Start SDL's video subsystem on a desktop display; `WindowUnavailable` says why not."""
    # SDL's default on Linux draws a window through OpenGL when it finds a driver; under Xvfb
    # that is Mesa's llvmpipe, measured at ~9 ms of CPU per 1280x720 frame, against ~0.2 ms
    # for SDL's own X11 path (MIT-SHM). The native path is as good on a desktop at these sizes.
    os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")
    try:
        pygame.display.init()
    except pygame.error as error:
        raise WindowUnavailable(f"SDL cannot start its video: {error}") from None
    driver = pygame.display.get_driver()
    if driver not in DESKTOP_DRIVERS:
        pygame.display.quit()
        raise WindowUnavailable(
            f"cannot use display {_display_name()}: SDL could not connect to it "
            f"(only its {driver!r} video driver works here)"
        )


def _display_name() -> str:
    """The display SDL was asked to use, as the environment names it."""
    for variable in ("DISPLAY", "WAYLAND_DISPLAY"):
        if os.environ.get(variable):
            return f"{variable}={os.environ[variable]!r}"
    return "(the system's default)"
