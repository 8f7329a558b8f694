"""The watchdog that releases a keyboard controller's keys when its process dies, even by SIGKILL.

Example (what the keyboard controller's X sink, `xtest_keys.py`, runs; the parent keeps the
write end of stdin)::

    python -I engine/driver/key_guard.py --display :1 Left Right Up Down
    # prints "ready" once connected; releases the four keys when stdin closes

Why a separate process: the X server keeps a key that XTest pressed down after
the client that pressed it dies; it lets go only when the server itself resets
(when its last client leaves), which never happens while a game is connected.
A SIGKILLed driver runs no cleanup at all, so a car would keep its throttle
pinned on stream. The kernel closes every pipe of a dead process, however it
died, so the guard sees end-of-file on stdin and releases, through its own X
connection, every key the map names (releasing a key that is up does nothing).

The guard ignores SIGINT and SIGTERM: Ctrl-C in a terminal and a process
manager's kill reach the whole process group, and the guard must outlive its
parent to be of any use. It ends when the parent ends, never earlier.

It imports nothing of this project so that it starts fast and runs as a plain
script (`python -I`, no package on the path needed).
"""

from __future__ import annotations

import argparse
import signal
import sys

from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

READY = "ready"


def main(argv: list[str] | None = None) -> int:
    """Connect, say ready, wait for the parent to go, release the keys; 0 on a clean end."""
    arguments = _parse(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    display = Display(arguments.display)
    keycodes = keycodes_for(display, arguments.keys)
    print(READY, flush=True)
    while sys.stdin.buffer.read(4096):
        pass  # the parent never writes; anything it did write is not a reason to act
    release(display, keycodes)
    display.close()
    return 0


def keycodes_for(display: Display, names: list[str]) -> list[int]:
    """X keycodes for keysym names ("Left", "Up", "a"); ValueError names what is unknown."""
    keycodes = []
    for name in names:
        keysym = XK.string_to_keysym(name)
        if keysym == XK.NoSymbol:
            raise ValueError(
                f"{name!r} is not an X keysym name (examples: Left, Right, Up, Down, a, space, "
                "Return, Shift_L; the full list is X11/keysymdef.h without the XK_ prefix)"
            )
        keycode = display.keysym_to_keycode(keysym)
        if keycode == 0:
            raise ValueError(f"the X server's keyboard map has no key for {name!r}")
        keycodes.append(keycode)
    return keycodes


def release(display: Display, keycodes: list[int]) -> None:
    """Release every key and wait until the server has processed it."""
    for keycode in keycodes:
        xtest.fake_input(display, X.KeyRelease, keycode)
    display.sync()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--display", required=True, help="X display name, e.g. :1")
    parser.add_argument("keys", nargs="+", help="X keysym names to release")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
