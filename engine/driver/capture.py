"""Frames for the driver, captured ahead in a thread: the screen (mss) or the built-in game.

Example::

    with open_capture(config, size=(128, 72)) as capture:
        frame = capture.next_frame(after=-1, timeout=2.0)   # the newest frame
        frame.model_input        # RGB uint8 (72, 128, 3): resized with cv2.INTER_AREA
        frame.telemetry          # the built-in game's state at that frame (None for mss)
        frame = capture.next_frame(after=frame.index, timeout=2.0)

A capture thread grabs frames as fast as its source gives them (the screen up
to `capture.max_fps`; the built-in game at its tick rate, in real time) and
keeps only the newest one. The driver takes whatever is newest when it is
ready for its next prediction: a slow prediction skips frames (counted as
dropped) instead of falling further behind a queue.

Backends:

* `sim`: the built-in game runs inside the driver process, ticked by the wall
  clock from the capture thread; the driver's `SimController` sets its
  controls and an unstuck asks for a respawn, which the capture thread
  performs between ticks. Its third-person frame is rendered at `chase_hz`
  for the overlay.
* `mss`: a monitor, a region of it, or (Windows) a window by title. Frames
  are converted from the screen's BGRA to RGB, the colour order of every frame
  the models are trained on.
* a game profile (`driver.game`, engine/games/): the profile's window, found
  by title (Linux: on the X server through python-xlib), cropped and masked as
  the profile says. The window is looked up when the capture starts, so the
  game must be running by then.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import cv2
import msgspec
import numpy as np

from engine.core.config import CaptureConfig, Config
from engine.core.errors import ConfigError, DeviceError
from engine.core.rates import RateMeter
from engine.data.frames import resize_frame
from engine.games.profile import GameProfile
from engine.sim.game import Game, Telemetry

log = logging.getLogger("charles.capture")

# At most this many ticks run without a frame when the sim falls behind the wall clock;
# beyond that game time slips instead (a driver should never miss seconds of driving).
_MAX_CATCH_UP_TICKS = 5
_JOIN_S = 5.0


class CaptureError(DeviceError):
    """Frames cannot be captured: a bad monitor, region or window, or the source failed."""


@dataclass(frozen=True)
class Frame:
    """One captured frame: as grabbed, resized for the model, and the game state if known."""

    index: int
    captured_at: float
    image: np.ndarray
    model_input: np.ndarray
    telemetry: Telemetry | None = None


class FrameSource(Protocol):
    """Where a capture thread gets frames; `open`, `grab` and `close` all run in that thread."""

    name: str

    def open(self) -> None:
        """Acquire what grabbing needs (mss handles belong to the thread that made them)."""

    def grab(self, stop: threading.Event) -> tuple[np.ndarray, Telemetry | None] | None:
        """The next RGB frame and telemetry; None if `stop` was set while waiting for it."""

    def close(self) -> None:
        """Release what `open` acquired."""


def open_capture(
    config: Config,
    size: tuple[int, int],
    *,
    seed: int | None = None,
    profile: GameProfile | None = None,
) -> Capture:
    """The configured capture for frames resized to `size` (width, height); not yet started.

    With a game `profile` whose input is not the in-process sim, frames come from its window.
    """
    if config.capture.backend == "sim":
        sim_config = msgspec.structs.replace(config.sim, window="off")
        source: FrameSource = SimSource(Game(sim_config, seed=seed), config.capture.chase_hz)
    elif profile is not None:
        source = WindowSource(profile)
    else:
        source = MssSource(config.capture)
    return Capture(source, size=size, max_fps=config.capture.max_fps)


class Capture:
    """Runs a `FrameSource` in a thread and always hands out its newest frame."""

    def __init__(
        self,
        source: FrameSource,
        *,
        size: tuple[int, int],
        max_fps: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.size = size
        self._min_interval_s = 1.0 / max_fps
        self._clock = clock
        self._captured = RateMeter(clock=clock)
        self._newest: Frame | None = None
        self._taken = 0
        self._failure: BaseException | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"capture-{source.name}", daemon=True
        )

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start grabbing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it, so the source is released when this returns."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_JOIN_S)
            if self._thread.is_alive():
                log.warning(
                    "capture thread %s did not stop within %.0f s", self.source.name, _JOIN_S
                )

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The newest frame with an index above `after`, waiting up to `timeout` s (else None).

        Raises CaptureError if the capture thread failed.
        """
        deadline = self._clock() + timeout
        with self._changed:
            while True:
                if self._failure is not None:
                    raise CaptureError(
                        f"capture from {self.source.name} failed: {self._failure}"
                    ) from self._failure
                newest = self._newest
                if newest is not None and newest.index > after:
                    self._taken += 1
                    return newest
                left = deadline - self._clock()
                if left <= 0:
                    return None
                self._changed.wait(left)

    @property
    def fps(self) -> float:
        """Frames captured per second over the last second."""
        return self._captured.rate()

    @property
    def frames_captured(self) -> int:
        """Frames captured since the start."""
        return self._captured.total

    @property
    def frames_dropped(self) -> int:
        """Frames replaced by a newer one before anyone took them."""
        return max(0, self._captured.total - self._taken)

    def _run(self) -> None:
        try:
            self.source.open()
            try:
                self._grab_until_stopped()
            finally:
                self.source.close()
        except Exception as error:  # handed to the driver thread, which decides what to do
            log.error("capture from %s failed: %s", self.source.name, error)
            with self._changed:
                self._failure = error
                self._changed.notify_all()

    def _grab_until_stopped(self) -> None:
        index = 0
        last_grab = -float("inf")
        while not self._stop.is_set():
            wait_s = last_grab + self._min_interval_s - self._clock()
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            last_grab = self._clock()
            grabbed = self.source.grab(self._stop)
            if grabbed is None:
                return
            image, telemetry = grabbed
            frame = Frame(
                index=index,
                captured_at=self._clock(),
                image=image,
                model_input=resize_frame(image, self.size),
                telemetry=telemetry,
            )
            index += 1
            self._captured.record()
            with self._changed:
                self._newest = frame
                self._changed.notify_all()


class SimSource:
    """The built-in game, ticked in real time: one hood frame per grab, chase frames on the side."""

    name = "sim"

    def __init__(
        self,
        game: Game,
        chase_hz: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        respawn_seed: int | None = None,
    ) -> None:
        self.game = game
        self._chase_interval_s = 1.0 / chase_hz if chase_hz > 0 else None
        self._clock = clock
        self._rng = np.random.default_rng(game.seed if respawn_seed is None else respawn_seed)
        self._respawn = threading.Event()
        self._respawned = threading.Event()
        self._started: float | None = None
        self._ticks = 0
        self._chase: np.ndarray | None = None
        self._last_chase = -float("inf")

    def request_respawn(self) -> None:
        """Ask for the car somewhere else on the track; done in the capture thread between ticks."""
        self._respawned.clear()
        self._respawn.set()

    def wait_respawned(self, timeout: float) -> bool:
        """Wait until the last requested respawn happened; False on timeout."""
        return self._respawned.wait(timeout)

    def latest_chase(self) -> np.ndarray | None:
        """The newest third-person frame (RGB), or None before the first one or when off."""
        return self._chase

    def open(self) -> None:
        """Build the game's views (a second or so), then start the game clock."""
        self.game.render_hood()
        if self._chase_interval_s is not None:
            self._chase = self.game.render_chase()
        self._started = self._clock()

    def grab(self, stop: threading.Event) -> tuple[np.ndarray, Telemetry | None] | None:
        """Wait for the next tick, run every tick due, render the hood frame."""
        self._render_chase_if_due()
        game = self.game
        assert self._started is not None, "grab() before open()"
        due = int((self._clock() - self._started) * game.config.tick_hz)
        if due <= self._ticks:
            wait_s = self._started + (self._ticks + 1) * game.dt - self._clock()
            if wait_s > 0 and stop.wait(wait_s):
                return None
            due = self._ticks + 1
        if due - self._ticks > _MAX_CATCH_UP_TICKS:
            # Let game time slip rather than drive blind for longer than a few ticks.
            self._started += (due - self._ticks - _MAX_CATCH_UP_TICKS) * game.dt
            due = self._ticks + _MAX_CATCH_UP_TICKS
        if self._respawn.is_set():
            self._respawn.clear()
            game.respawn(self._rng)
            self._respawned.set()
        for _ in range(due - self._ticks):
            game.tick()
        self._ticks = due
        return game.render_hood(), game.telemetry()

    def close(self) -> None:
        """Nothing to release: the game lives on for whoever reads its final state."""

    def _render_chase_if_due(self) -> None:
        interval = self._chase_interval_s
        if interval is None or self._clock() - self._last_chase < interval:
            return
        self._last_chase = self._clock()
        self._chase = self.game.render_chase()


class MssSource:
    """The screen through mss: a monitor, a region of it, or a window's client area (Windows)."""

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self.name = _describe_target(config)
        self._screen = None
        self._area: dict[str, int] | None = None

    def open(self) -> None:
        """Open mss in this thread (its handles are per thread) and work out the area to grab."""
        import mss

        self._screen = mss.MSS()
        self._area = screen_area(self.config, self._screen.monitors)
        log.info("capturing %s: %s", self.name, self._area)

    def grab(self, stop: threading.Event) -> tuple[np.ndarray, Telemetry | None] | None:
        """One screenshot of the area, as RGB."""
        assert self._screen is not None and self._area is not None, "grab() before open()"
        shot = self._screen.grab(self._area)
        return cv2.cvtColor(np.asarray(shot), cv2.COLOR_BGRA2RGB), None

    def close(self) -> None:
        """Release the mss handles."""
        if self._screen is not None:
            self._screen.close()
            self._screen = None


class WindowSource:
    """A game profile's window through mss: found by title when opened, cropped and masked."""

    def __init__(self, profile: GameProfile) -> None:
        self.profile = profile
        target = profile.window_target()
        self.name = f"game {profile.name!r} window {target.title or list(target.region)!r}"
        self._screen = None
        self._area: dict[str, int] | None = None

    def open(self) -> None:
        """Find the window (DeviceError listing the open windows if absent), open mss."""
        import mss

        from engine.games.window import capture_area, find_window

        window = find_window(self.profile.window_target())
        self._area = capture_area(self.profile, window)
        self._screen = mss.MSS()
        log.info("capturing %s (id %#x): %s", self.name, window.id, self._area)

    def grab(self, stop: threading.Event) -> tuple[np.ndarray, Telemetry | None] | None:
        """One RGB frame of the window's capture area, masks blanked."""
        from engine.games.window import grab_frame

        assert self._screen is not None and self._area is not None, "grab() before open()"
        return grab_frame(self.profile, self._area, self._screen), None

    def close(self) -> None:
        """Release the mss handles."""
        if self._screen is not None:
            self._screen.close()
            self._screen = None


def screen_area(config: CaptureConfig, monitors: list[dict[str, int]]) -> dict[str, int]:
    """The mss grab area for a config: a window, a region of a monitor, or the whole monitor."""
    if config.window_title:
        return window_area(config.window_title)
    if not 0 <= config.monitor < len(monitors):
        raise ConfigError(
            f"'capture.monitor' = {config.monitor} does not exist; accepted: 0 (all monitors) "
            f"to {len(monitors) - 1}"
        )
    monitor = monitors[config.monitor]
    if not config.region:
        return {key: monitor[key] for key in ("left", "top", "width", "height")}
    left, top, width, height = config.region
    if left + width > monitor["width"] or top + height > monitor["height"]:
        raise ConfigError(
            f"'capture.region' = {list(config.region)} reaches outside monitor "
            f"{config.monitor} ({monitor['width']}x{monitor['height']}); accepted: left + width "
            f"<= {monitor['width']} and top + height <= {monitor['height']}"
        )
    return {
        "left": monitor["left"] + left,
        "top": monitor["top"] + top,
        "width": width,
        "height": height,
    }


def window_area(title: str) -> dict[str, int]:
    """The screen rectangle of a window's client area, found by exact title (Windows only)."""
    if sys.platform != "win32":
        raise ConfigError(
            f"'capture.window_title' = {title!r} works on Windows only; on this system set "
            'capture.window_title = "" and use capture.monitor / capture.region'
        )
    import ctypes
    from ctypes import wintypes

    user32 = ctypes.windll.user32
    handle = user32.FindWindowW(None, title)
    if not handle:
        raise CaptureError(
            f"no window titled {title!r} is open; start the game, or fix capture.window_title "
            "(the exact text of the window's title bar)"
        )
    rect = wintypes.RECT()
    user32.GetClientRect(handle, ctypes.byref(rect))
    corner = wintypes.POINT(0, 0)
    user32.ClientToScreen(handle, ctypes.byref(corner))
    width, height = rect.right - rect.left, rect.bottom - rect.top
    if width < 1 or height < 1:
        raise CaptureError(f"window {title!r} has no visible client area (is it minimised?)")
    return {"left": corner.x, "top": corner.y, "width": width, "height": height}


def _describe_target(config: CaptureConfig) -> str:
    if config.window_title:
        return f"window {config.window_title!r}"
    if config.region:
        return f"monitor {config.monitor} region {list(config.region)}"
    return f"monitor {config.monitor}"
