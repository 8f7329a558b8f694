"""Where the recorder's frames come from: a screen region, or a window found by its title (X11).

Example::

    region = find_window_region("charles-stream hood")   # (left, top, width, height) on screen
    with ScreenGrabber(region) as screen:
        rgb = screen.grab()                               # uint8 (height, width, 3), RGB

Finding a window is the game profiles' (`engine/games/window.py`); it
happens once at start, so a window moved while recording keeps being
captured where it was.
"""

from __future__ import annotations

from types import TracebackType

import mss
import numpy as np

from engine.core.errors import DeviceError
from engine.games.profile import WindowTarget
from engine.games.window import find_window

Region = tuple[int, int, int, int]


def find_window_region(title: str, display: str | None = None) -> Region:
    """The on-screen (left, top, width, height) of the window titled `title`.

    An exact title wins, else a window whose title contains it (case-insensitive);
    the lookup is the game profiles' (`engine.games.window.find_window`), so a
    missing window raises the same DeviceError naming the windows that exist.
    """
    try:
        found = find_window(WindowTarget(title=title), display)
    except DeviceError:
        found = find_window(WindowTarget(title=title, match="contains"), display)
    return (found.left, found.top, found.width, found.height)


def parse_region(text: str) -> Region:
    """`L,T,W,H` -> (left, top, width, height); ValueError says what is accepted."""
    parts = text.split(",")
    try:
        left, top, width, height = (int(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"--region {text!r} is not accepted; use L,T,W,H in whole pixels, e.g. 0,0,1280,720"
        ) from None
    if min(left, top) < 0 or min(width, height) < 1:
        raise ValueError(
            f"--region {text!r} is not accepted; left and top must be >= 0, width and height >= 1"
        )
    return (left, top, width, height)


class ScreenGrabber:
    """mss grabs of one screen region, as RGB; open it in the thread that grabs (mss's rule)."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self._box = {"left": region[0], "top": region[1], "width": region[2], "height": region[3]}
        try:
            self._screen = mss.mss()
        except Exception as error:  # mss raises its own ScreenShotError, or XError-like ones
            raise DeviceError(f"cannot capture the screen: {error}") from None

    def __enter__(self) -> ScreenGrabber:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def grab(self) -> np.ndarray:
        """The region now, uint8 RGB (height, width, 3); the screen's BGRA reordered."""
        try:
            shot = self._screen.grab(self._box)
        except Exception as error:
            raise DeviceError(f"cannot capture region {self.region}: {error}") from None
        return np.asarray(shot)[:, :, 2::-1]

    def close(self) -> None:
        """Release the screen handle."""
        self._screen.close()
