"""A scripted player for the recorder tests: real key presses through XTest on an X display."""

from __future__ import annotations

import time

from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest


class Player:
    """Presses keys through XTest, like a person at the keyboard; releases all at the end.

    `pedal_cycles`: accelerate 1 s, nothing 1 s, brake 1 s, nothing 1 s, `count` times.
    """

    def __init__(self, display: str) -> None:
        self._x = Display(display)
        self._down: set[str] = set()

    def hold(self, name: str) -> None:
        self._fake(X.KeyPress, name)
        self._down.add(name)

    def release(self, name: str) -> None:
        self._fake(X.KeyRelease, name)
        self._down.discard(name)

    def tap(self, name: str) -> None:
        self.hold(name)
        time.sleep(0.3)  # several polls at 20 Hz see it down
        self.release(name)
        time.sleep(0.3)  # and up: a tap right after this one is a new press

    def pedal_cycles(self, count: int, pedals: tuple[str, str] = ("Up", "Down")) -> None:
        accelerate, brake = pedals
        for _ in range(count):
            for key, seconds in [(accelerate, 1.0), (None, 1.0), (brake, 1.0), (None, 1.0)]:
                if key:
                    self.hold(key)
                time.sleep(seconds)
                if key:
                    self.release(key)

    def release_all(self) -> None:
        for name in list(self._down):
            self.release(name)

    def close(self) -> None:
        self.release_all()
        self._x.close()

    def _fake(self, kind: int, name: str) -> None:
        xtest.fake_input(self._x, kind, self._x.keysym_to_keycode(XK.string_to_keysym(name)))
        self._x.sync()
