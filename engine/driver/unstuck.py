"""When the driven car is stuck, and what is done about it.

Example::

    watch = StuckWatch(config.unstuck)
    reason = watch.update(frame.captured_at, frame.telemetry, frame.model_input)
    if reason:                              # e.g. "moved 0.4 m in 5.0 s"
        action()                            # respawn / button sequence / alert only
        watch.reset(now)

Stuck means the car has not moved `min_distance_m` within `window_s`. With
telemetry (the built-in game) that is measured on the car's position, and a
car off the road for `offroad_s` counts as stuck too (the reference's "drove
into the water"). A real game gives no telemetry, so movement is read from
the screen: a small grey thumbnail is compared with the one at the start of
the window, and the car counts as moved once they differ by more than
`motion_threshold` levels on average. Comparing against the window's start,
not the previous frame, catches a car that creeps, whose frames differ by
very little each.

The action is chosen once, from what the driver runs on: the built-in game
respawns the car elsewhere on the track; a real game gets a configurable
vgamepad button sequence (e.g. a menu's "reset vehicle"), its game profile's
key or button sequence (e.g. the game's reset key), or only an alert.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from engine.core.config import UnstuckConfig
from engine.games.profile import GameProfile
from engine.sim.game import Telemetry

# Game time is a sum of ticks: 2.0333 - 0.0333 must count as the 2 s it is.
_TIME_EPSILON_S = 1e-6
# Frame-motion thumbnails: small enough to ignore noise and HUD text, big enough to see a turn.
THUMBNAIL_SIZE = (32, 18)
_RESPAWN_WAIT_S = 1.0


class StuckWatch:
    """Decides, frame by frame, whether the car is stuck; why, as a short text, when it is."""

    def __init__(self, config: UnstuckConfig) -> None:
        self.config = config
        self._anchor_time: float | None = None
        self._anchor_position: tuple[float, float] | None = None
        self._anchor_thumbnail: np.ndarray | None = None
        self._offroad_since: float | None = None

    def update(self, now: float, telemetry: Telemetry | None, image: np.ndarray) -> str | None:
        """Take one frame (at time `now`); the reason if the car is stuck, else None."""
        if self._anchor_time is None:
            self.reset(now)
        if telemetry is not None:
            return self._offroad(now, telemetry) or self._not_moving(now, telemetry)
        return self._screen_still(now, image)

    def reset(self, now: float) -> None:
        """Start watching afresh (after an unstuck the car starts from rest somewhere else)."""
        self._anchor_time = now
        self._anchor_position = None
        self._anchor_thumbnail = None
        self._offroad_since = None

    def _offroad(self, now: float, telemetry: Telemetry) -> str | None:
        if telemetry.on_road or self.config.offroad_s <= 0:
            self._offroad_since = None
            return None
        if self._offroad_since is None:
            self._offroad_since = now
        if now - self._offroad_since >= self.config.offroad_s - _TIME_EPSILON_S:
            return f"off the road ({telemetry.surface}) for {now - self._offroad_since:.1f} s"
        return None

    def _not_moving(self, now: float, telemetry: Telemetry) -> str | None:
        position = (telemetry.x, telemetry.y)
        if self._anchor_position is None:
            self._anchor_position = position
        moved = math.dist(position, self._anchor_position)
        return self._judge(now, moved >= self.config.min_distance_m, f"moved {moved:.1f} m")

    def _screen_still(self, now: float, image: np.ndarray) -> str | None:
        thumbnail = thumbnail_of(image)
        if self._anchor_thumbnail is None:
            self._anchor_thumbnail = thumbnail
        change = float(np.mean(np.abs(thumbnail - self._anchor_thumbnail)))
        moved = change > self.config.motion_threshold
        return self._judge(now, moved, f"screen changed {change:.1f} levels")

    def _judge(self, now: float, moved: bool, how_much: str) -> str | None:
        """Re-anchor when the car moved; stuck once a whole window passed without moving."""
        assert self._anchor_time is not None
        if moved:
            self._anchor_time = now
            self._anchor_position = None
            self._anchor_thumbnail = None
            return None
        waited = now - self._anchor_time
        if waited >= self.config.window_s - _TIME_EPSILON_S:
            return f"{how_much} in {waited:.1f} s"
        return None


def thumbnail_of(image: np.ndarray) -> np.ndarray:
    """A small grey float32 copy of an RGB frame, for comparing frames cheaply."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def choose_action(
    config: UnstuckConfig,
    source: object,
    controller: object,
    profile: GameProfile | None = None,
) -> UnstuckAction:
    """Respawn in the built-in game; else the game profile's sequence, else unstuck.buttons.

    Either sequence only if the controller can press it (a keyboard keys, a pad buttons).
    """
    if isinstance(source, RespawningSource):
        return Respawn(source)
    press = getattr(controller, "press", None)
    if profile is not None and profile.unstuck.sequence and press is not None:
        steps = profile.unstuck.sequence
        if profile.input.backend == "keyboard":
            return KeySequence(press, tuple((step.key, step.hold_s) for step in steps))
        buttons = tuple((str(step.button), step.hold_s) for step in steps)
        return KeySequence(press, buttons, what="button")
    if config.buttons and press is not None:
        return ButtonSequence(press, config.buttons, config.button_hold_s)
    return AlertOnly()


class UnstuckAction(Protocol):
    """What an unstuck does; `description` says it to the log and the overlay."""

    description: str

    def __call__(self) -> None:
        """Do it now (the driver has set the pad neutral)."""


@dataclass
class Respawn:
    """The built-in game: the car goes to another point of the track, at rest."""

    source: RespawningSource
    description: str = "respawn elsewhere on the track"

    def __call__(self) -> None:
        """Ask the game for a respawn and wait until it happened, so old frames stop coming."""
        self.source.request_respawn()
        self.source.wait_respawned(_RESPAWN_WAIT_S)


@dataclass
class ButtonSequence:
    """A real game: press gamepad buttons one after another (e.g. a menu's "reset vehicle")."""

    press: Callable[[str, float], None]
    buttons: tuple[str, ...]
    hold_s: float

    @property
    def description(self) -> str:
        """The buttons, in order."""
        return "press " + ", ".join(self.buttons)

    def __call__(self) -> None:
        """Press each button for `hold_s`, then release it."""
        for button in self.buttons:
            self.press(button, self.hold_s)


@dataclass
class KeySequence:
    """A keyboard game's reset: keys (or a profile's pad buttons), each with its own hold time."""

    press: Callable[[str, float], None]
    steps: tuple[tuple[str, float], ...]
    what: str = "key"

    @property
    def description(self) -> str:
        """The keys in order, with their hold times."""
        return f"press {self.what} " + ", ".join(
            f"{key} ({hold:.2f} s)" for key, hold in self.steps
        )

    def __call__(self) -> None:
        """Press each key for its hold time, then release it, one after another."""
        for key, hold_s in self.steps:
            self.press(key, hold_s)


@dataclass
class AlertOnly:
    """No automatic fix: the alert tells a human (or chat) to help."""

    description: str = "alert only (set unstuck.buttons to press a reset button)"

    def __call__(self) -> None:
        """Nothing to do here; the driver sends the alert."""


@runtime_checkable
class RespawningSource(Protocol):
    """A frame source that can move the car (the built-in game's capture)."""

    def request_respawn(self) -> None:
        """Ask for a respawn."""

    def wait_respawned(self, timeout: float) -> bool:
        """Wait for it."""
