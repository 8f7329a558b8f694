"""Keyboard driving for the game window: arrows or WASD, as a streamer would try it.

Example::

    keys = KeyboardDriver(SdlKeys())             # the key state of the game's SDL windows
    game.set_controls(keys.controls(now=time.monotonic()))

Driving reads which keys are down, not key presses: "throttle and steer at
once" needs several keys held together, and X11 auto-repeats only the last
key pressed. SDL (pygame-ce) keeps that state for its windows on every
platform, updated whenever the window's events are read (`pygame.event.get`),
so one reader serves X11, Wayland, Windows and macOS.

Steering eases towards the keys (first order, time constant 0.15 s) instead
of jumping, as in most PC racing games: a key held a fraction of the time
gives about that fraction of full lock. That is what lets a keyboard driver
(a person tapping, or `engine/driver/keyboard.py`'s duty cycle) steer gently.
"""

from __future__ import annotations

import math
import os

# pygame prints a greeting on stdout when imported; our stdout carries `--json` summaries.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from typing import Protocol

import pygame

from engine.sim.game import Controls

# SDL key codes (layout-aware: WASD follows the letters, not the key positions).
DIRECTION_KEYS = {
    "left": (pygame.K_LEFT, pygame.K_a),
    "right": (pygame.K_RIGHT, pygame.K_d),
    "up": (pygame.K_UP, pygame.K_w),
    "down": (pygame.K_DOWN, pygame.K_s),
}
QUIT_KEYS = frozenset({pygame.K_ESCAPE, pygame.K_q})
RESPAWN_KEYS = frozenset({pygame.K_r})

STEERING_TIME_CONSTANT_S = 0.15


class HeldKeys(Protocol):
    """Something that knows which direction keys are down right now."""

    def held(self) -> set[str]:
        """Which of "left", "right", "up", "down" are held down."""
        ...


class SdlKeys:
    """The direction keys held in the game's windows, from SDL's keyboard state.

    Needs `pygame.display` initialised (the windows open); the state is as
    fresh as the last time the windows' events were read.
    """

    def held(self) -> set[str]:
        """Direction keys currently down."""
        pressed = pygame.key.get_pressed()
        return {
            direction
            for direction, keys in DIRECTION_KEYS.items()
            if any(pressed[key] for key in keys)
        }


class KeyboardDriver:
    """Turns the held keys into smooth `Controls`."""

    def __init__(self, held_keys: HeldKeys) -> None:
        self._held_keys = held_keys
        self._steering = 0.0
        self._last_update: float | None = None

    def controls(self, now: float) -> Controls:
        """The controls the held keys ask for at time `now` (s)."""
        held = self._held_keys.held()
        target = float("right" in held) - float("left" in held)
        elapsed = 0.0 if self._last_update is None else max(0.0, now - self._last_update)
        self._last_update = now
        self._steering += (target - self._steering) * -math.expm1(
            -elapsed / STEERING_TIME_CONSTANT_S
        )
        throttle = float("up" in held) - float("down" in held)
        return Controls(steering=self._steering, throttle_brake=throttle)
