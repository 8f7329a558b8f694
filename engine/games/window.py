"""Find a game's window and grab what the model may see of it: crop first, then masks.

Example::

    from engine.games.profile import load_profile
    from engine.games.window import capture_area, find_window, grab_frame
    profile = load_profile("builtin")
    window = find_window(profile.window_target())      # DeviceError listing the titles if absent
    window.id, window.width, window.height              # 0x400001, 480, 270
    frame = grab_frame(profile, capture_area(profile, window))   # RGB, cropped, masks black

On Linux the window is found on the X server (DISPLAY) through python-xlib by
its title (`_NET_WM_NAME`, else `WM_NAME`), anywhere in the window tree: a
window manager puts the game's window inside a frame of its own. Its position
is translated to root coordinates, which are the screen coordinates mss grabs
from. On Windows a title is found by `engine.driver.capture.window_area`; a
profile's fixed `region` works everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from engine.core.errors import DeviceError
from engine.games.profile import GameProfile, WindowTarget

# Deeper than any window manager's frames: a guard against a pathological tree.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class FoundWindow:
    """A window on the screen: its id (0 for a region), title and rectangle in screen pixels."""

    id: int
    title: str
    left: int
    top: int
    width: int
    height: int


def find_window(target: WindowTarget, display: str | None = None) -> FoundWindow:
    """The viewable window matching `target` (or its region); DeviceError naming what exists."""
    if target.region:
        left, top, width, height = target.region
        return FoundWindow(0, "", left, top, width, height)
    if not sys.platform.startswith("linux"):
        raise DeviceError(
            "finding a window by title works on Linux (X11) here; on this system"
            f" capture.window_title = {target.title!r} finds it, or give the profile a region"
        )
    from Xlib.display import Display
    from Xlib.error import DisplayError

    try:
        connection = Display(display)
    except (DisplayError, OSError) as error:
        raise DeviceError(
            f"cannot open the X display {display or '(DISPLAY)'} to find window "
            f"{target.title!r}: {error}; set DISPLAY to the X server the game runs on"
        ) from None
    try:
        root = connection.screen().root
        titles: list[str] = []
        for window, title in _titled_windows(connection, root, 0):
            titles.append(title)
            if _matches(target, title):
                geometry = window.get_geometry()
                corner = window.translate_coords(root, 0, 0)
                # translate_coords gives root's origin in the window: the window is at minus that.
                return FoundWindow(
                    window.id, title, -corner.x, -corner.y, geometry.width, geometry.height
                )
    finally:
        connection.close()
    how = "titled" if target.match == "exact" else "whose title contains"
    shown = ", ".join(repr(title) for title in sorted(set(titles))) or "(none)"
    raise DeviceError(
        f"no window {how} {target.title!r} on display {display or connection.get_display_name()};"
        f" start the game, or fix the profile's window title. Windows open now: {shown}"
    )


def window_titles(display: str | None = None) -> list[str]:
    """The titles of the viewable windows on the X server, sorted (for messages and `check`)."""
    from Xlib.display import Display

    connection = Display(display)
    try:
        root = connection.screen().root
        return sorted({title for _, title in _titled_windows(connection, root, 0)})
    finally:
        connection.close()


def capture_area(profile: GameProfile, window: FoundWindow) -> dict[str, int]:
    """The mss grab area: the window's rectangle, or its `crop`, in screen pixels."""
    crop = profile.capture.crop
    if not crop:
        return {
            "left": window.left,
            "top": window.top,
            "width": window.width,
            "height": window.height,
        }
    left, top, width, height = crop
    if left + width > window.width or top + height > window.height:
        raise DeviceError(
            f"{profile.source}: 'capture.crop' = {list(crop)} reaches outside the window "
            f"({window.width}x{window.height}); accepted: left + width <= {window.width} and "
            f"top + height <= {window.height}"
        )
    return {"left": window.left + left, "top": window.top + top, "width": width, "height": height}


def apply_masks(image: np.ndarray, profile: GameProfile) -> np.ndarray:
    """Blank the profile's masks (window pixels) in a cropped frame, in place; returns it."""
    crop = profile.capture.crop
    origin_x, origin_y = (crop[0], crop[1]) if crop else (0, 0)
    for left, top, width, height in profile.capture.masks:
        x0, y0 = max(0, left - origin_x), max(0, top - origin_y)
        x1, y1 = max(0, left - origin_x + width), max(0, top - origin_y + height)
        image[y0:y1, x0:x1] = 0
    return image


def grab_frame(profile: GameProfile, area: dict[str, int], screen: object = None) -> np.ndarray:
    """One RGB frame of `area` with the masks blanked; `screen` is an open mss instance or None."""
    import mss

    own = screen is None
    shooter = mss.MSS() if own else screen
    try:
        shot = shooter.grab(area)  # type: ignore[attr-defined]
    finally:
        if own:
            shooter.close()  # type: ignore[attr-defined]
    image = cv2.cvtColor(np.asarray(shot), cv2.COLOR_BGRA2RGB)
    return apply_masks(image, profile)


def _titled_windows(connection: object, window: object, depth: int) -> Iterator[tuple[object, str]]:
    """(window, title) for every viewable titled window below `window`, depth first."""
    from Xlib import X
    from Xlib.error import BadWindow

    try:
        children = window.query_tree().children  # type: ignore[attr-defined]
    except BadWindow:  # closed while we looked
        return
    for child in children:
        try:
            if child.get_attributes().map_state != X.IsViewable:
                continue
            title = _title(connection, child)
        except BadWindow:
            continue
        if title:
            yield child, title
        if depth < _MAX_DEPTH:
            yield from _titled_windows(connection, child, depth + 1)


def _title(connection: object, window: object) -> str:
    utf8 = connection.intern_atom("UTF8_STRING")  # type: ignore[attr-defined]
    name = window.get_full_property(  # type: ignore[attr-defined]
        connection.intern_atom("_NET_WM_NAME"),  # type: ignore[attr-defined]
        utf8,
    )
    if name is not None and name.value:
        value = name.value
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    legacy = window.get_wm_name()  # type: ignore[attr-defined]
    if isinstance(legacy, bytes):
        return legacy.decode("latin-1")
    return legacy or ""


def _matches(target: WindowTarget, title: str) -> bool:
    if target.match == "exact":
        return title == target.title
    return target.title.lower() in title.lower()
