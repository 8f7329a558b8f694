"""The player's inputs as control values: keys held on the X server, optionally smoothed.

Example::

    keys = XKeyState(["Left", "Right", "Up", "Down", "F9"])   # $DISPLAY; a keymap query a poll
    inputs = KeyboardInput(KeyBindings(), keys, smoothing_s=0.15)
    controls = inputs.read(now=time.monotonic())   # Controls(steering=-1.0, throttle_brake=0.0)
    pause = Hotkey("F9", keys)
    if pause.pressed():                            # True once per press, not while held
        ...

Why global key state, polled: the recorder must work with any game, which
owns the keyboard focus; X answers `QueryKeymap` for every client alike, so a
poll at the sample rate sees exactly the keys the game sees, without grabbing
them or needing an extension. Keys give -1, 0 or 1; with `smoothing_s` > 0 each
control moves towards that target as an exponential moving average with that
time constant, so a tapped key records as a graded value, the way the game's own
steering smooths it. Values within `dead_zone` of -1, 0 or 1 are recorded as
exactly that value, as the collector does, so Balancing's exact bins fill.

Every reader hides behind `InputSource.read() -> Controls`: the gamepad
reader (`pad.py`: Linux evdev, Windows XInput) sits beside the keyboard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Protocol

from Xlib import XK
from Xlib.display import Display
from Xlib.error import DisplayError

from engine.core.errors import DeviceError, UsageError
from engine.data.controls import snap_to_dead_zone

ROLES = ("left", "right", "accelerate", "brake")


@dataclass(frozen=True)
class Controls:
    """What the player asks of the car: steering and throttle_brake, both in [-1, 1]."""

    steering: float = 0.0
    throttle_brake: float = 0.0


@dataclass(frozen=True)
class KeyBindings:
    """Which keys (X keysym names: "Left", "a", "space") steer, accelerate and brake."""

    left: str = "Left"
    right: str = "Right"
    accelerate: str = "Up"
    brake: str = "Down"

    def names(self) -> list[str]:
        """The four keysym names, in role order."""
        return [getattr(self, field.name) for field in fields(self)]


class InputSource(Protocol):
    """Anything that says what the player asks for now (the keyboard here, a pad in pad.py)."""

    def read(self, now: float) -> Controls:
        """The controls at time `now` (s, monotonic)."""
        ...

    def reset(self) -> None:
        """Forget smoothing state: recording resumes after a pause."""
        ...


class KeyState(Protocol):
    """Which keys (keysym names) are held down right now."""

    def held(self) -> frozenset[str]:
        """The held keys among those this state was asked to watch."""
        ...


def parse_key_bindings(text: str) -> KeyBindings:
    """`left=Left,right=Right,accelerate=Up,brake=Down` (any subset) -> KeyBindings.

    Raises UsageError naming the bad part and what is accepted.
    """
    values: dict[str, str] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        role, equals, key = (item.strip() for item in part.partition("="))
        if not equals or not key:
            raise UsageError(
                f"--keys {text!r}: {part!r} is not ROLE=KEY; accepted: "
                "left=Left,right=Right,accelerate=Up,brake=Down (any of them)"
            )
        if role not in ROLES:
            raise UsageError(
                f"--keys {text!r}: unknown role {role!r}; accepted: {', '.join(ROLES)}"
            )
        check_key_name(key, flag="--keys")
        values[role] = key
    if not values:
        raise UsageError(
            f"--keys {text!r} names no key; accepted: "
            "left=Left,right=Right,accelerate=Up,brake=Down"
        )
    bindings = KeyBindings(**values)
    names = bindings.names()
    if len(set(names)) != len(names):
        raise UsageError(f"--keys {text!r}: a key is bound to two roles ({', '.join(names)})")
    return bindings


def check_key_name(name: str, *, flag: str) -> str:
    """Raise UsageError unless `name` is an X keysym name; return it."""
    if XK.string_to_keysym(name) == XK.NoSymbol:
        raise UsageError(
            f"{flag}: {name!r} is not an X keysym name; accepted: names like Left, Right, Up, "
            "Down, a, space, Return, F9 (X11/keysymdef.h without the XK_ prefix)"
        )
    return name


class KeyboardInput:
    """An `InputSource` from held keys: -1/0/1 per axis, smoothed towards it if asked."""

    def __init__(
        self,
        bindings: KeyBindings,
        keys: KeyState,
        *,
        smoothing_s: float = 0.0,
        dead_zone: float = 0.02,
    ) -> None:
        if not (math.isfinite(smoothing_s) and smoothing_s >= 0.0):
            raise ValueError(f"smoothing_s must be a finite number >= 0, got {smoothing_s}")
        self.bindings = bindings
        self._keys = keys
        self._steering = Smoother(smoothing_s)
        self._throttle = Smoother(smoothing_s)
        self._dead_zone = dead_zone

    def read(self, now: float) -> Controls:
        """The controls the held keys ask for at `now`."""
        held = self._keys.held()
        steering, throttle = targets(self.bindings, held)
        return Controls(
            snap_to_dead_zone(self._steering.update(steering, now), self._dead_zone),
            snap_to_dead_zone(self._throttle.update(throttle, now), self._dead_zone),
        )

    def reset(self) -> None:
        """Forget the smoothed values (after a pause the keys start over from their targets)."""
        self._steering.reset()
        self._throttle.reset()


def targets(bindings: KeyBindings, held: Iterable[str]) -> tuple[float, float]:
    """(steering, throttle_brake) the held keys ask for: each -1, 0 or 1; opposite keys cancel."""
    down = set(held)
    steering = float(bindings.right in down) - float(bindings.left in down)
    throttle = float(bindings.accelerate in down) - float(bindings.brake in down)
    return steering, throttle


class Smoother:
    """An exponential moving average towards a target with time constant `tau_s` (0 = raw).

    Time-based rather than per-sample, so the same setting feels the same at any
    sample rate; the first value after a reset is the target itself.
    """

    def __init__(self, tau_s: float) -> None:
        self.tau_s = tau_s
        self._value: float | None = None
        self._last: float = 0.0

    def update(self, target: float, now: float) -> float:
        """Move towards `target` for the time since the last update; return the new value."""
        if self._value is None or self.tau_s == 0.0:
            self._value = target
        else:
            dt = max(0.0, now - self._last)
            self._value += (target - self._value) * (1.0 - math.exp(-dt / self.tau_s))
        self._last = now
        return self._value

    def reset(self) -> None:
        """Start over: the next update returns its target."""
        self._value = None


class Hotkey:
    """A key that acts once per press (pause/resume): true on the poll that first sees it down."""

    def __init__(self, name: str, keys: KeyState) -> None:
        self.name = name
        self._keys = keys
        self._was_down = False

    def pressed(self) -> bool:
        """Whether the key went down since the last call."""
        down = self.name in self._keys.held()
        went_down = down and not self._was_down
        self._was_down = down
        return went_down


class XKeyState:
    """Held keys from the X server's global keymap (`XQueryKeymap`), for the keys it watches."""

    def __init__(self, names: Iterable[str], display: str | None = None) -> None:
        try:
            self._display = Display(display)
        except (DisplayError, OSError) as error:
            raise DeviceError(
                f"cannot read the keyboard: no X display {display or '$DISPLAY'} ({error})"
            ) from None
        self._codes: dict[str, int] = {}
        for name in dict.fromkeys(names):
            keysym = XK.string_to_keysym(name)
            code = self._display.keysym_to_keycode(keysym) if keysym != XK.NoSymbol else 0
            if code == 0:
                self._display.close()
                raise UsageError(f"the X server's keyboard map has no key for {name!r}")
            self._codes[name] = code

    def held(self) -> frozenset[str]:
        """The watched keys that are down now (one round trip to the X server)."""
        keymap = self._display.query_keymap()  # 32 bytes, one bit per keycode
        return frozenset(
            name for name, code in self._codes.items() if keymap[code // 8] >> (code % 8) & 1
        )

    def close(self) -> None:
        """Close the X connection."""
        self._display.close()
