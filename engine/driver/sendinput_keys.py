"""The keyboard controller's key sink on Windows: SendInput with scan codes. UNTESTED HERE.

Example (what `KeyboardController` opens on Windows)::

    sink = SendInputKeys(["a", "d", "w", "s"])
    (w,) = sink.codes(["w"])
    sink.set_key(w, True)
    sink.flush()          # one SendInput call with every queued event
    sink.close()          # every mapped key up

Why scan codes: games that read the keyboard through DirectInput or raw input
(GTA V among them; the 2017 pygta5 project's `directkeys.py` did the same)
ignore virtual-key events but see scan codes as if typed. Keys are named with
X keysym names ("Left", "a", "space", "F9"), as in the game profiles, so one
profile serves both platforms; `SCAN_CODES` is the US layout's set 1, the
arrows and the other keys of the navigation block with the 0xE0 prefix
(`KEYEVENTF_EXTENDEDKEY`).

This module imports on any platform (the structures are plain ctypes with
Windows' sizes, so their layout is checked on Linux too); only `SendInputKeys`
without an injected `send` touches `ctypes.WinDLL`, and only on win32. It has
not run on Windows here: no test machine of this project has one. Whether
Windows lets go of keys whose sender was killed (TerminateProcess) has not been
checked either; there is no watchdog like `key_guard.py` for this sink yet.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Sequence

from engine.driver.controller import ControllerError

INPUT_KEYBOARD = 1
KEYEVENTF_EXTENDEDKEY = 0x0001
KEYEVENTF_KEYUP = 0x0002
KEYEVENTF_SCANCODE = 0x0008
EXTENDED = 0xE000  # a code's prefix bits: the key is one of the 0xE0 (extended) scan codes

WORD = ctypes.c_uint16
DWORD = ctypes.c_uint32
LONG = ctypes.c_int32
ULONG_PTR = ctypes.c_size_t


class KEYBDINPUT(ctypes.Structure):
    """winuser.h's KEYBDINPUT."""

    _fields_ = [
        ("wVk", WORD),
        ("wScan", WORD),
        ("dwFlags", DWORD),
        ("time", DWORD),
        ("dwExtraInfo", ULONG_PTR),
    ]


class MOUSEINPUT(ctypes.Structure):
    """winuser.h's MOUSEINPUT: unused, but the largest member, so it sets INPUT's size."""

    _fields_ = [
        ("dx", LONG),
        ("dy", LONG),
        ("mouseData", DWORD),
        ("dwFlags", DWORD),
        ("time", DWORD),
        ("dwExtraInfo", ULONG_PTR),
    ]


class HARDWAREINPUT(ctypes.Structure):
    """winuser.h's HARDWAREINPUT (unused; part of the union)."""

    _fields_ = [("uMsg", DWORD), ("wParamL", WORD), ("wParamH", WORD)]


class _InputUnion(ctypes.Union):
    _fields_ = [("mi", MOUSEINPUT), ("ki", KEYBDINPUT), ("hi", HARDWAREINPUT)]


class INPUT(ctypes.Structure):
    """winuser.h's INPUT: 40 bytes on 64-bit Windows, 28 on 32-bit."""

    _fields_ = [("type", DWORD), ("u", _InputUnion)]


def _letters(row: str, first: int) -> dict[str, int]:
    return {letter: first + index for index, letter in enumerate(row)}


# X keysym name -> set 1 scan code (| EXTENDED for the 0xE0 keys), US layout.
SCAN_CODES: dict[str, int] = {
    **_letters("qwertyuiop", 0x10),
    **_letters("asdfghjkl", 0x1E),
    **_letters("zxcvbnm", 0x2C),
    **{str(digit): 0x01 + digit for digit in range(1, 10)},
    "0": 0x0B,
    **{f"F{number}": 0x3A + number for number in range(1, 11)},
    "F11": 0x57,
    "F12": 0x58,
    "Escape": 0x01,
    "minus": 0x0C,
    "equal": 0x0D,
    "BackSpace": 0x0E,
    "Tab": 0x0F,
    "bracketleft": 0x1A,
    "bracketright": 0x1B,
    "Return": 0x1C,
    "Control_L": 0x1D,
    "semicolon": 0x27,
    "apostrophe": 0x28,
    "grave": 0x29,
    "Shift_L": 0x2A,
    "backslash": 0x2B,
    "comma": 0x33,
    "period": 0x34,
    "slash": 0x35,
    "Shift_R": 0x36,
    "Alt_L": 0x38,
    "space": 0x39,
    "Caps_Lock": 0x3A,
    "KP_Enter": EXTENDED | 0x1C,
    "Control_R": EXTENDED | 0x1D,
    "Alt_R": EXTENDED | 0x38,
    "Home": EXTENDED | 0x47,
    "Up": EXTENDED | 0x48,
    "Prior": EXTENDED | 0x49,
    "Left": EXTENDED | 0x4B,
    "Right": EXTENDED | 0x4D,
    "End": EXTENDED | 0x4F,
    "Down": EXTENDED | 0x50,
    "Next": EXTENDED | 0x51,
    "Insert": EXTENDED | 0x52,
    "Delete": EXTENDED | 0x53,
}

SendFunction = Callable[[ctypes.Array[INPUT]], int]


def scan_code(name: str) -> int:
    """The scan code for a keysym name; ValueError names it and what is accepted."""
    try:
        return SCAN_CODES[name]
    except KeyError:
        raise ValueError(
            f"{name!r} has no Windows scan code here; accepted: letters a-z, digits 0-9, "
            "F1-F12, Left, Right, Up, Down, space, Return, Escape, Tab, Shift_L, Control_L, "
            "Alt_L and the other keys of engine/driver/sendinput_keys.py's SCAN_CODES"
        ) from None


def key_event(code: int, down: bool) -> INPUT:
    """One INPUT record: the key's scan code going down or up."""
    flags = KEYEVENTF_SCANCODE | (0 if down else KEYEVENTF_KEYUP)
    if code & EXTENDED:
        flags |= KEYEVENTF_EXTENDEDKEY
    event = INPUT(type=INPUT_KEYBOARD)
    event.u.ki = KEYBDINPUT(wVk=0, wScan=code & 0xFF, dwFlags=flags, time=0, dwExtraInfo=0)
    return event


class SendInputKeys:
    """Keys pressed through Windows' SendInput as scan codes; `send` replaces it in tests."""

    def __init__(
        self, names: Sequence[str], send: SendFunction | None = None, platform: str | None = None
    ) -> None:
        self._mapped = self.codes(names)
        self._send = send or _user32_send_input(platform or sys.platform)
        self._queued: list[INPUT] = []

    def codes(self, names: Sequence[str]) -> list[int]:
        """Scan codes for keysym names; ValueError names one without a scan code."""
        return [scan_code(name) for name in names]

    def set_key(self, code: int, down: bool) -> None:
        """Queue a press or release (sent by `flush`)."""
        self._queued.append(key_event(code, down))

    def flush(self) -> None:
        """Send what was queued in one SendInput call (Windows inserts it without interleaving)."""
        if not self._queued:
            return
        events = (INPUT * len(self._queued))(*self._queued)
        self._queued.clear()
        inserted = self._send(events)
        if inserted != len(events):
            raise ControllerError(
                f"SendInput took {inserted} of {len(events)} key events (Windows error "
                f"{_last_error()}); a game running as administrator accepts input only from a "
                "process that runs as administrator too"
            )

    def close(self) -> None:
        """Release every mapped key."""
        self._queued.clear()
        for code in self._mapped:
            self.set_key(code, False)
        self.flush()


def _user32_send_input(platform: str) -> SendFunction:
    """user32's SendInput as a function of an INPUT array; ControllerError off Windows."""
    if platform != "win32":
        raise ControllerError(
            f"the SendInput key sink is for Windows (sys.platform 'win32'), not {platform!r}; "
            "on Linux the keyboard controller presses keys through XTest"
        )
    user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
    send_input = user32.SendInput
    send_input.argtypes = (ctypes.c_uint, ctypes.POINTER(INPUT), ctypes.c_int)
    send_input.restype = ctypes.c_uint

    def send(events: ctypes.Array[INPUT]) -> int:
        return int(send_input(len(events), events, ctypes.sizeof(INPUT)))

    return send


def _last_error() -> int:
    get_last_error = getattr(ctypes, "get_last_error", None)  # Windows only
    return int(get_last_error()) if get_last_error is not None else 0
