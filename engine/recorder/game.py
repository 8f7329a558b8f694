"""A game profile as the recorder reads it: where the picture is, what is blanked, which keys.

Example::

    profile = load_profile("torcs")                 # engine.games.profile
    settings = recorder_settings(profile)           # keys, smoothing (s), pause key
    region = capture_region(profile)                # the window (or its crop) on the screen
    with ScreenGrabber(region) as screen:
        grab = masked(screen.grab, profile)         # frames with the profile's masks black

The recorder stores what the driver will later see, so it takes the window,
crop and masks from the same profile the driver uses (`engine/games/window.py`
finds the window and blanks the masks; nothing here captures on its own).
Flags given on the command line override the profile's values
(`engine/recorder/cli.py`), and a recorder the stream app starts reads only
its profile (`engine/recorder/node.py`).

`[recorder] smoothing` is read as the recorder's `--smoothing`: the time
constant in seconds of the moving average that grades tapped keys (0 = raw
-1/0/1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.games.profile import GameProfile
from engine.games.window import FoundWindow, apply_masks, capture_area, find_window
from engine.recorder.inputs import KeyBindings
from engine.recorder.screen import Region


@dataclass(frozen=True)
class RecorderSettings:
    """What a recording reads besides the picture: keys per role, smoothing (s), pause key."""

    bindings: KeyBindings
    smoothing_s: float
    pause_key: str


def recorder_settings(profile: GameProfile) -> RecorderSettings:
    """The profile's `[recorder]` keys (else its `[input.keyboard]`), smoothing and pause key."""
    keys = profile.recorder_keys()
    return RecorderSettings(
        bindings=KeyBindings(
            left=keys.steer_left,
            right=keys.steer_right,
            accelerate=keys.accelerate,
            brake=keys.brake,
        ),
        smoothing_s=profile.recorder.smoothing,
        pause_key=profile.recorder.pause_key,
    )


def capture_region(
    profile: GameProfile, window: Region | None = None, display: str | None = None
) -> Region:
    """The screen rectangle to grab: the profile's crop of `window` (default: its window, found).

    `window` is a rectangle given instead of the profile's window (`--window`,
    `--region`); the crop and masks are in its pixels. DeviceError names the
    windows that exist when the profile's is not there, or a crop that does
    not fit the window.
    """
    if window is None:
        found = find_window(profile.window_target(), display)
    else:
        found = FoundWindow(0, "", *window)
    area = capture_area(profile, found)
    return (area["left"], area["top"], area["width"], area["height"])


def masked(grab: Callable[[], np.ndarray], profile: GameProfile) -> Callable[[], np.ndarray]:
    """`grab` with the profile's masks blanked black (a HUD, a minimap the model must not see)."""
    if not profile.capture.masks:
        return grab

    def grab_masked() -> np.ndarray:
        # A copy: the grabber's array may be a read-only view of the screen shot.
        return apply_masks(np.array(grab(), dtype=np.uint8, order="C"), profile)

    return grab_masked
