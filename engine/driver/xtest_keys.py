"""The keyboard controller's key sink on Linux: XTest key presses on the game's X server.

Example (what `KeyboardController` opens on Linux)::

    sink = XTestKeys(["Left", "Right", "Up", "Down"], display=":1")
    (left,) = sink.codes(["Left"])
    sink.set_key(left, True)
    sink.flush()          # the press is at the server when this returns
    sink.close()          # every mapped key up, the guard ended, the connection closed

Why a guard: the X server keeps a key that XTest pressed down after the client
that pressed it dies, so a SIGKILLed driver would pin the throttle. The sink
starts the watchdog child (`key_guard.py`) before any key can go down; it
releases every mapped key when this process dies, however it died. (It sees
the death as the end of a pipe; a child forked without exec, which the "spawn"
start method used here never does, would hold that pipe open.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from Xlib import X
from Xlib.display import Display
from Xlib.error import ConnectionClosedError, DisplayError
from Xlib.ext import xtest

from engine.driver.controller import ControllerError
from engine.driver.key_guard import READY, keycodes_for, release

GUARD_SCRIPT = Path(__file__).with_name("key_guard.py")
# The guard connects to X and says ready in well under a second; a loaded machine gets slack.
GUARD_START_TIMEOUT_S = 15.0
GUARD_STOP_TIMEOUT_S = 5.0


class XTestKeys:
    """Keys pressed through XTest on one X display, guarded against a SIGKILLed process."""

    def __init__(self, names: Sequence[str], display: str | None = None, guard: bool = True):
        self._display = _open_display(display)
        try:
            self._mapped = self.codes(names)
            self.guard = _start_guard(self._display, names) if guard else None
        except BaseException:
            self._display.close()
            raise

    def codes(self, names: Sequence[str]) -> list[int]:
        """X keycodes for keysym names; ValueError names one X does not know."""
        return keycodes_for(self._display, list(names))

    def set_key(self, code: int, down: bool) -> None:
        """Queue a press or release (sent by `flush`)."""
        xtest.fake_input(self._display, X.KeyPress if down else X.KeyRelease, code)

    def flush(self) -> None:
        """Wait until the server has processed what was queued: the game sees it now."""
        self._display.sync()

    def close(self) -> None:
        """Release every mapped key, close the connection, end the guard."""
        try:
            with contextlib.suppress(ConnectionClosedError, OSError):
                # Suppressed: a server that is gone (the game's Xvfb ended) holds no keys.
                release(self._display, self._mapped)
                self._display.close()
        finally:
            _stop_guard(self.guard)


def _open_display(name: str | None) -> Display:
    try:
        display = Display(name)
    except (DisplayError, OSError) as error:
        shown = name or os.environ.get("DISPLAY") or "(DISPLAY is not set)"
        raise ControllerError(
            f"the keyboard controller cannot open the X display {shown}: {error}. It presses "
            "keys through XTest on the X server the game runs on; set DISPLAY to that server"
        ) from None
    if not display.has_extension("XTEST"):
        display.close()
        raise ControllerError(
            f"the X display {display.get_display_name()} has no XTEST extension, which the "
            "keyboard controller needs to press keys (Xorg and Xvfb have it unless started "
            "with -extension XTEST)"
        )
    return display


def _start_guard(display: Display, names: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start the watchdog and wait until it is connected, so no key goes down unguarded."""
    guard = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(GUARD_SCRIPT),
            "--display",
            display.get_display_name(),
            *names,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert guard.stdout is not None
    ready = threading.Event()
    line: list[bytes] = []

    def read_ready() -> None:
        line.append(guard.stdout.readline())
        ready.set()

    threading.Thread(target=read_ready, name="key-guard-ready", daemon=True).start()
    ready.wait(GUARD_START_TIMEOUT_S)
    if not line or line[0].decode().strip() != READY:
        guard.kill()
        guard.wait()
        raise ControllerError(
            f"the key guard ({GUARD_SCRIPT.name}) did not start within {GUARD_START_TIMEOUT_S} s "
            f"(exit code {guard.returncode}); see its error above"
        )
    guard.stdout.close()
    return guard


def _stop_guard(guard: subprocess.Popen[bytes] | None) -> None:
    """Close the guard's pipe (it releases the keys once more, harmlessly) and reap it."""
    if guard is None:
        return
    assert guard.stdin is not None
    guard.stdin.close()
    try:
        guard.wait(GUARD_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()
