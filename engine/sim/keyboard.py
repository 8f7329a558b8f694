"""Keyboard driving for the game window: arrows or WASD, as a streamer would try it.

Example::

    keys = KeyboardDriver(system_held_keys())    # real key state where the system tells it
    keys.press(key_code, now=time.monotonic())   # presses from the window (-1: none)
    game.set_controls(keys.controls(now=time.monotonic()))

Game windows report key presses, not releases (OpenCV's never do), and X11
auto-repeats only the last key pressed, so "throttle and steer at once"
cannot be read from presses. Where possible the driver therefore asks the
system which keys are down (X11's XQueryKeymap, Windows' GetAsyncKeyState).
Elsewhere it falls back to the presses: a key counts as held for a while
after its last press - long after a single press (bridging the auto-repeat
delay), briefly once repeats arrive. Steering ramps towards the keys instead
of jumping, like a real steering wheel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import sys
from typing import ClassVar, Protocol

from engine.sim.game import Controls

log = logging.getLogger("charles.sim")

# Key codes as X11 keysyms (also what cv2.waitKeyEx returns with Qt) and Windows virtual
# codes of the arrows (cv2.waitKeyEx on Windows), then WASD.
PRESS_CODES = {
    "left": frozenset({65361, 2424832, ord("a"), ord("A")}),
    "right": frozenset({65363, 2555904, ord("d"), ord("D")}),
    "up": frozenset({65362, 2490368, ord("w"), ord("W")}),
    "down": frozenset({65364, 2621440, ord("s"), ord("S")}),
}
# Esc arrives as 27 from OpenCV and as its keysym 0xFF1B from X11.
QUIT_KEYS = frozenset({27, 0xFF1B, ord("q"), ord("Q")})
RESPAWN_KEYS = frozenset({ord("r"), ord("R")})

_FIRST_PRESS_HOLD_S = 0.7
_REPEAT_HOLD_S = 0.12
_REPEAT_GAP_S = 0.2
_STEERING_RAMP_PER_S = 3.0


class HeldKeys(Protocol):
    """Something that knows which direction keys are down right now."""

    def held(self) -> set[str]:
        """Which of "left", "right", "up", "down" are held down."""
        ...


class KeyboardDriver:
    """Turns the keyboard into smooth `Controls`."""

    def __init__(self, held_keys: HeldKeys | None = None) -> None:
        self._held_keys = held_keys
        self._last_press: dict[str, float] = {}
        self._repeating: dict[str, bool] = {}
        self._steering = 0.0
        self._last_update: float | None = None

    def press(self, key: int, now: float) -> None:
        """Record a key press (X11 keysym or cv2.waitKeyEx code; -1 = none) at time `now` (s)."""
        for name, codes in PRESS_CODES.items():
            if key in codes:
                previous = self._last_press.get(name, -math.inf)
                self._repeating[name] = now - previous < _REPEAT_GAP_S
                self._last_press[name] = now

    def controls(self, now: float) -> Controls:
        """The controls the held keys ask for at time `now`."""
        held = self._held_keys.held() if self._held_keys else self._held_from_presses(now)
        target = float("right" in held) - float("left" in held)
        elapsed = 0.0 if self._last_update is None else max(0.0, now - self._last_update)
        self._last_update = now
        step = _STEERING_RAMP_PER_S * elapsed
        if target == 0.0:
            # Letting go centres the wheel quickly.
            step *= 2.0
        self._steering += max(-step, min(step, target - self._steering))
        throttle = float("up" in held) - float("down" in held)
        return Controls(steering=self._steering, throttle_brake=throttle)

    def _held_from_presses(self, now: float) -> set[str]:
        held = set()
        for name, last in self._last_press.items():
            hold = _REPEAT_HOLD_S if self._repeating.get(name) else _FIRST_PRESS_HOLD_S
            if now - last <= hold:
                held.add(name)
        return held


def system_held_keys() -> HeldKeys | None:
    """The platform's real key-state reader, or None when there is none (presses are used then)."""
    try:
        if sys.platform == "win32":
            return _WindowsKeys()
        if sys.platform.startswith("linux"):
            return _X11Keys()
    except OSError as error:
        log.info("keyboard: no key-state reader (%s); using key presses", error)
    return None


class _X11Keys:
    """Key state from the X server (XQueryKeymap): every key that is down, several at once."""

    _KEYSYMS: ClassVar[dict[str, tuple[int, int]]] = {
        "left": (0xFF51, 0x61),
        "right": (0xFF53, 0x64),
        "up": (0xFF52, 0x77),
        "down": (0xFF54, 0x73),
    }

    def __init__(self) -> None:
        name = ctypes.util.find_library("X11")
        if not name:
            raise OSError("libX11 not found")
        xlib = ctypes.cdll.LoadLibrary(name)
        xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        xlib.XOpenDisplay.restype = ctypes.c_void_p
        xlib.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        xlib.XKeysymToKeycode.restype = ctypes.c_ubyte
        xlib.XQueryKeymap.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._xlib = xlib
        self._display = xlib.XOpenDisplay(None)
        if not self._display:
            raise OSError("cannot open the X display")
        self._codes = {
            direction: [xlib.XKeysymToKeycode(self._display, keysym) for keysym in keysyms]
            for direction, keysyms in self._KEYSYMS.items()
        }

    def held(self) -> set[str]:
        """Direction keys currently down on the X server."""
        keymap = ctypes.create_string_buffer(32)
        self._xlib.XQueryKeymap(self._display, keymap)
        bits = keymap.raw
        return {
            direction
            for direction, codes in self._codes.items()
            if any(code and bits[code // 8] >> (code % 8) & 1 for code in codes)
        }


class _WindowsKeys:
    """Key state from Windows (GetAsyncKeyState)."""

    _VIRTUAL_KEYS: ClassVar[dict[str, tuple[int, int]]] = {
        "left": (0x25, 0x41),
        "right": (0x27, 0x44),
        "up": (0x26, 0x57),
        "down": (0x28, 0x53),
    }

    def __init__(self) -> None:
        self._user32 = ctypes.windll.user32

    def held(self) -> set[str]:
        """Direction keys currently down."""
        return {
            direction
            for direction, keys in self._VIRTUAL_KEYS.items()
            if any(self._user32.GetAsyncKeyState(key) & 0x8000 for key in keys)
        }
