"""Game profiles: one TOML file per game says how to see it, drive it and record it. No code.

Example::

    from engine.games.profile import load_profile, shipped_profiles
    profile = load_profile("torcs")              # a shipped name, or a path to a .toml file
    profile.window_target().title                # "torcs" (matched as part of the title)
    profile.input.backend, profile.input.keyboard.accelerate   # 'keyboard', 'Up'
    [step.key for step in profile.unstuck.sequence]             # a reset key, if the game has one
    sorted(shipped_profiles())                   # ['builtin', 'gta5', 'torcs']

A real game is a separate program: the app sees it only through its window's
pixels and touches it only through an input device. A profile holds what
differs from game to game:

- `[window.linux]` / `[window.windows]`: the window's title (exact, or a part
  of it with `match = "contains"`), or a fixed screen `region`;
- `[capture]`: a `crop` of the window and `masks` blanked out of it (a HUD or
  minimap the model must not learn from), both in window pixels;
- `[input]`: the backend (`keyboard`, `vgamepad`, `sim`) and its map (X keysym
  names and the PWM timing for keys; dead zones for a pad);
- `[unstuck]`: a key or button sequence with hold times (a game's reset key);
- `[recorder]`: the keys a recorder reads, smoothing for tapped keys, and the
  hotkey that pauses and resumes recording.

Profiles are validated like config.toml (msgspec Structs worded by
`engine.core.schema`): a mistake raises ConfigError naming the file, the key,
the value and what is accepted; an unknown profile name raises UsageError
listing the shipped ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from Xlib import XK

from engine.core.config import Config, GamepadButton
from engine.core.errors import ConfigError, UsageError
from engine.core.schema import convert, parse_toml

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

Rectangle = tuple[int, ...]  # [left, top, width, height]
Title = Annotated[str, Meta(min_length=1)]
HoldTime = Annotated[float, Meta(ge=0.01, le=10.0)]


class Profiled(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A profile table: unknown keys are mistakes, not new settings."""


class WindowTarget(Profiled):
    """Where the game is on one platform: its window by title, or a fixed screen region."""

    # The window's title bar text; "" with a region instead.
    title: str = ""
    # "exact": the whole title; "contains": a part of it (a title that shows a version or a file).
    match: Literal["exact", "contains"] = "exact"
    # [left, top, width, height] on the screen, for a game whose window cannot be found by title.
    region: Rectangle = ()


class WindowSection(Profiled):
    """The game's window per platform (`sys.platform`'s family: linux, windows)."""

    linux: WindowTarget | None = None
    windows: WindowTarget | None = None


class CaptureSection(Profiled):
    """What of the window the model sees, in window pixels."""

    # [left, top, width, height] of the window; [] = all of it.
    crop: Rectangle = ()
    # Rectangles blanked to black (HUD, minimap), in window pixels like `crop`.
    masks: tuple[Rectangle, ...] = ()


class KeyboardMap(Profiled):
    """Keys by X keysym name ("Left", "a", "space"), and how analog values become taps."""

    steer_left: str = "Left"
    steer_right: str = "Right"
    accelerate: str = "Up"
    brake: str = "Down"
    # A value of 0.4 holds the key 40 % of every period (see engine/driver/keyboard.py).
    period_s: Annotated[float, Meta(ge=0.02, le=2.0)] = 0.1
    # Shorter presses go unseen by a game that polls the keyboard once a frame.
    min_press_s: Annotated[float, Meta(ge=0.001, le=1.0)] = 0.01


class PadMap(Profiled):
    """A virtual Xbox 360 pad: the game's dead zones (the Translator skips past them)."""

    steering_dead_zone: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0
    trigger_dead_zone: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0


class InputSection(Profiled):
    """How the driver's decisions reach the game."""

    backend: Literal["keyboard", "vgamepad", "sim"] = "keyboard"
    keyboard: KeyboardMap = msgspec.field(default_factory=KeyboardMap)
    vgamepad: PadMap = msgspec.field(default_factory=PadMap)


class UnstuckStep(Profiled):
    """One press of an unstuck sequence: a key (keyboard games) or a pad button."""

    key: str = ""
    button: GamepadButton | None = None
    hold_s: HoldTime = 0.15


class UnstuckSection(Profiled):
    """What gets a stuck car going again: pressed one after another; [] = only an alert."""

    sequence: tuple[UnstuckStep, ...] = ()


class RecorderSection(Profiled):
    """What a recorder of human play needs."""

    # The keys read as the player's steering and throttle; absent = input.keyboard's.
    keys: KeyboardMap | None = None
    # 0 = keys give -1/0/1; closer to 1 = a tapped key becomes a slowly rising graded value.
    smoothing: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0
    # Pauses and resumes recording (menus and loading screens must not become data).
    pause_key: str = "F9"


class GameProfile(Profiled):
    """One game: its window, capture, input, unstuck and recorder settings."""

    description: str = ""
    # Whether this profile has been run against the game here (GTA V's has not).
    tested: bool = True
    window: WindowSection = msgspec.field(default_factory=WindowSection)
    capture: CaptureSection = msgspec.field(default_factory=CaptureSection)
    input: InputSection = msgspec.field(default_factory=InputSection)
    unstuck: UnstuckSection = msgspec.field(default_factory=UnstuckSection)
    recorder: RecorderSection = msgspec.field(default_factory=RecorderSection)
    # Set by the loader: the profile's name (its file's stem) and file.
    name: str = ""
    source: str = ""

    def window_target(self, platform: str | None = None) -> WindowTarget:
        """This platform's window target; UsageError if the profile has none for it."""
        family = platform_family(platform)
        target = getattr(self.window, family, None) if family else None
        if target is None:
            raise UsageError(
                f"{self.source}: game profile {self.name!r} has no [window.{family or 'linux'}] "
                f"for this platform ({platform or sys.platform}); add one with a title or region"
            )
        return target

    def recorder_keys(self) -> KeyboardMap:
        """The keys a recorder reads: [recorder] keys, else the driver's keyboard map."""
        return self.recorder.keys or self.input.keyboard


def shipped_profiles() -> dict[str, Path]:
    """The profiles that come with charles-stream, by name."""
    return {path.stem: path for path in sorted(PROFILE_DIR.glob("*.toml"))}


def load_profile(name_or_path: str) -> GameProfile:
    """A shipped profile by name, or a profile file by path; validated, with its name set."""
    path = _locate(name_or_path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read game profile {where}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    table = parse_toml(text, where=where, error=ConfigError)
    profile = convert(
        table, GameProfile, where=where, error=ConfigError, internal=("name", "source")
    )
    profile = msgspec.structs.replace(profile, name=path.stem, source=where)
    _check(profile, where)
    return profile


def apply_to_config(profile: GameProfile, config: Config) -> Config:
    """Config for driving this game: capture its window, the profile's input backend and pad."""
    capture = config.capture
    if profile.input.backend != "sim":
        capture = msgspec.structs.replace(capture, backend="mss", window_title="")
    controller = msgspec.structs.replace(config.controller, backend=profile.input.backend)
    if profile.input.backend == "vgamepad":
        controller = msgspec.structs.replace(
            controller,
            steering_dead_zone=profile.input.vgamepad.steering_dead_zone,
            trigger_dead_zone=profile.input.vgamepad.trigger_dead_zone,
        )
    return msgspec.structs.replace(config, capture=capture, controller=controller)


def platform_family(platform: str | None = None) -> str | None:
    """'linux' or 'windows' for a `sys.platform` value; None for a platform profiles lack."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return "linux"
    if platform in ("win32", "cygwin"):
        return "windows"
    return None


def is_keysym(name: str) -> bool:
    """Whether X knows this keysym name ("Left", "a", "F9"); needs no display."""
    return bool(name) and XK.string_to_keysym(name) != XK.NoSymbol


def _locate(name_or_path: str) -> Path:
    shipped = shipped_profiles()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" and path.is_file():
        return path
    raise UsageError(
        f"unknown game profile {name_or_path!r}; use one of {', '.join(map(repr, shipped))} "
        "or the path of a profile .toml file"
    )


def _check(profile: GameProfile, where: str) -> None:
    """What the schema cannot say alone: rectangles, a title or region, keysyms, steps."""
    for family in ("linux", "windows"):
        target = getattr(profile.window, family)
        if target is None:
            continue
        key = f"window.{family}"
        _check_rectangle(target.region, f"{key}.region", where)
        if bool(target.title) == bool(target.region):
            raise ConfigError(
                f"{where}: '{key}.title' = {target.title!r} with region = {list(target.region)}"
                " is not accepted; give the window's title (not empty), or a region instead"
            )
    if profile.window.linux is None and profile.window.windows is None:
        raise ConfigError(
            f"{where}: missing key 'window'; add [window.linux] and/or [window.windows] "
            "with the game's window title"
        )
    _check_rectangle(profile.capture.crop, "capture.crop", where)
    for index, mask in enumerate(profile.capture.masks):
        _check_rectangle(mask, f"capture.masks[{index}]", where, allow_empty=False)
    keyboard = profile.input.keyboard
    _check_keys(keyboard, "input.keyboard", where)
    if profile.recorder.keys is not None:
        _check_keys(profile.recorder.keys, "recorder.keys", where)
    _check_keysym(profile.recorder.pause_key, "recorder.pause_key", where)
    backend = profile.input.backend
    for index, step in enumerate(profile.unstuck.sequence):
        key = f"unstuck.sequence[{index}]"
        if backend == "vgamepad":
            if step.button is None or step.key:
                raise ConfigError(
                    f"{where}: '{key}' = {{key = {step.key!r}, button = {step.button!r}}} is not "
                    "accepted; input.backend = 'vgamepad' presses pad buttons: give a button "
                    "(e.g. 'BACK') and no key"
                )
        elif backend == "keyboard":
            if step.button is not None:
                raise ConfigError(
                    f"{where}: '{key}.button' = {step.button!r} is not accepted; "
                    "input.backend = 'keyboard' presses keys: give a key (e.g. 'r') instead"
                )
            _check_keysym(step.key, f"{key}.key", where)
        else:
            raise ConfigError(
                f"{where}: 'unstuck.sequence' is not accepted with input.backend = 'sim' "
                "(the built-in game respawns the car itself); use []"
            )


def _check_keys(keys: KeyboardMap, key: str, where: str) -> None:
    names = [keys.steer_left, keys.steer_right, keys.accelerate, keys.brake]
    for field, name in zip(
        ("steer_left", "steer_right", "accelerate", "brake"), names, strict=True
    ):
        _check_keysym(name, f"{key}.{field}", where)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: '{key}' uses one key twice: {names}; use four different keys")
    if keys.min_press_s > keys.period_s / 2:
        raise ConfigError(
            f"{where}: '{key}.min_press_s' = {keys.min_press_s} is not accepted; at most half of "
            f"period_s = {keys.period_s} (a longer minimum leaves no room for a partial press)"
        )


def _check_keysym(name: str, key: str, where: str) -> None:
    if not is_keysym(name):
        raise ConfigError(
            f"{where}: '{key}' = {name!r} is not an X keysym name; use one like 'Left', 'Up', "
            "'a', 'space', 'Return', 'F9', 'Pause' (the names of X11/keysymdef.h without XK_)"
        )


def _check_rectangle(
    rectangle: Rectangle, key: str, where: str, *, allow_empty: bool = True
) -> None:
    if not rectangle and allow_empty:
        return
    if len(rectangle) != 4 or min(rectangle[:2]) < 0 or min(rectangle[2:]) < 1:
        raise ConfigError(
            f"{where}: '{key}' = {list(rectangle)} is not accepted; use [left, top, width, height]"
            " with left, top >= 0 and width, height >= 1" + (" or []" if allow_empty else "")
        )
