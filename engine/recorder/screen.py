"""Where the recorder's frames come from: a screen region, or a window found by its title (X11).

Example::

    region = find_window_region("charles-stream hood")   # (left, top, width, height) on screen
    with ScreenGrabber(region) as screen:
        rgb = screen.grab()                               # uint8 (height, width, 3), RGB

The window lookup is a small private helper of the recorder: game profiles
(`engine/games/`, being written alongside) will own finding a game's window,
and this helper should move there. It walks the X server's window tree once at
start; a window moved while recording keeps being captured where it was.
"""

from __future__ import annotations

from types import TracebackType

import mss
import numpy as np
from Xlib.display import Display
from Xlib.error import DisplayError, XError
from Xlib.xobject.drawable import Window

from engine.core.errors import DeviceError

Region = tuple[int, int, int, int]


def find_window_region(title: str, display: str | None = None) -> Region:
    """The on-screen (left, top, width, height) of the window titled `title`.

    An exact title wins; otherwise the one window whose title contains `title`
    (case-insensitive). Raises DeviceError naming the title and the windows that exist.
    """
    try:
        connection = Display(display)
    except (DisplayError, OSError) as error:
        raise DeviceError(
            f"cannot look for window {title!r}: no X display {display or '$DISPLAY'} ({error})"
        ) from None
    try:
        root = connection.screen().root
        windows = _titled_windows(root)
        exact = [window for name, window in windows if name == title]
        partial = [window for name, window in windows if title.lower() in name.lower()]
        found = exact or partial
        if len(found) != 1 or not title:
            names = sorted({name for name, _ in windows})
            what = "several windows match" if len(found) > 1 else "no window is titled"
            raise DeviceError(
                f"{what} {title!r}; windows on {connection.get_display_name()}: "
                + (", ".join(repr(name) for name in names) if names else "none")
            )
        window = found[0]
        geometry = window.get_geometry()
        origin = root.translate_coords(window, 0, 0)
        return (origin.x, origin.y, geometry.width, geometry.height)
    finally:
        connection.close()


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


def _titled_windows(root: Window) -> list[tuple[str, Window]]:
    """Every window under `root` with a title, depth first (a window manager nests them)."""
    found: list[tuple[str, Window]] = []
    stack = [root]
    while stack:
        window = stack.pop()
        try:
            children = window.query_tree().children
            name = _title(window) if window is not root else ""
        except XError:
            continue  # a window that closed while we walked
        if name:
            found.append((name, window))
        stack.extend(reversed(children))
    return found


def _title(window: Window) -> str:
    """The window's title: _NET_WM_NAME (UTF-8; SDL sets only this one), else WM_NAME."""
    display = window.display
    utf8 = window.get_full_property(
        display.get_atom("_NET_WM_NAME"), display.get_atom("UTF8_STRING")
    )
    name = utf8.value if utf8 is not None else window.get_wm_name()
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name or ""
