"""The player's gamepad as control values: Linux evdev, Windows XInput (untested here).

Example::

    with open_pad("auto") as pad:                 # or "/dev/input/event5"; on Windows "0".."3"
        controls = pad.read(now=time.monotonic())  # Controls(steering=-0.42, throttle_brake=0.8)
        if pad.pause.pressed():                    # the pad's Back/Select button, once a press
            ...

Why a pad: a keyboard gives -1, 0 or 1 and the recorder has to guess the grades
between; a stick and triggers record what the player meant, which is what the
model is to learn. The left stick's X axis steers; throttle_brake is the right
trigger minus the left one (ABS_RZ and ABS_Z, or a wheel's ABS_GAS and
ABS_BRAKE pedals when the device has both), as `engine/driver/controller.py`
maps them back for a virtual pad.

Two halves, so the mapping is tested without a device:

- `PadMapper` is pure: it takes evdev-style events `(type, code, value)` and
  the axes' ranges (`AxisRange`, from the device's absinfo) and says the
  `Controls`. A stick is centred on the middle of its range, a trigger starts
  at its minimum; within the dead zone (the larger of the stick's or
  trigger's default and the device's own `flat`) a value is 0, and the rest
  of the travel is rescaled so
  the first value past it is small rather than a jump. Values within `snap` of
  -1, 0 or 1 become exactly that, as the collector records them.
- A device feeds it: `EvdevPad` drains `/dev/input/eventN` (python-evdev, the
  `pad` extra) at each poll; `XInputPad` polls `XInputGetState` and turns each
  change into the same events, so Windows uses the same mapping.

The pause button is Back/Select by default: Start opens most games' own
menu, and the recorder's pause must not flip with every visit to it.

A pad that goes away mid-recording raises DeviceError saying so; the sets
already stored stay stored. This machine has no /dev/input and its kernel no
uinput, so no device was ever read here: the tests feed synthetic events, and
the refusals (no such device, not a pad, nothing readable) are tested on a fake
/dev/input and /sys/class/input. XInput has never run here (Windows only).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import re
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from engine.core.errors import DeviceError, UsageError
from engine.data.controls import snap_to_dead_zone
from engine.recorder.inputs import Controls

log = logging.getLogger("charles.record")

# linux/input-event-codes.h: the few event types and codes a pad needs.
EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
SYN_REPORT, SYN_DROPPED = 0, 3
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
ABS_GAS, ABS_BRAKE = 0x09, 0x0A
BTN_SELECT, BTN_START, BTN_MODE = 0x13A, 0x13B, 0x13C
# Joystick, gamepad and wheel buttons (BTN_JOYSTICK..BTN_THUMBR): what a touchpad lacks.
PAD_BUTTONS = range(0x120, 0x13F)

PAUSE_BUTTONS = {"select": BTN_SELECT, "start": BTN_START, "mode": BTN_MODE}
DEFAULT_PAUSE_BUTTON = "select"  # Back on an Xbox pad: Start opens most games' own menu
STICK_DEAD_ZONE = 0.08  # a worn stick rests a few percent off centre; that is not steering
TRIGGER_DEAD_ZONE = 0.05

INPUT_DIR = Path("/dev/input")
SYS_INPUT_DIR = Path("/sys/class/input")
_EVENT_NAME = re.compile(r"event\d+")

Event = tuple[int, int, int]  # (type, code, value), as struct input_event carries them


@dataclass(frozen=True)
class AxisRange:
    """An axis' raw range and the device's own dead zone (`flat`), from its absinfo."""

    minimum: int
    maximum: int
    flat: int = 0

    def centred(self, value: int) -> float:
        """A stick: -1 at the minimum, 0 in the middle, 1 at the maximum."""
        half = (self.maximum - self.minimum) / 2
        return _clip((value - self.minimum - half) / half, -1.0, 1.0)

    def one_sided(self, value: int) -> float:
        """A trigger or pedal: 0 at rest (the minimum), 1 pressed all the way."""
        return _clip((value - self.minimum) / (self.maximum - self.minimum), 0.0, 1.0)

    def flat_fraction(self, centred: bool) -> float:
        """The device's dead zone as a fraction of the travel a value is scaled to."""
        travel = (self.maximum - self.minimum) / (2 if centred else 1)
        return self.flat / travel


@dataclass(frozen=True)
class PadLayout:
    """Which axes steer, accelerate and brake, and which button pauses (evdev codes)."""

    steering: int = ABS_X
    throttle: int = ABS_RZ
    brake: int = ABS_Z
    pause: int | None = BTN_SELECT


def choose_layout(
    axes: Iterable[int], *, pause_button: str = DEFAULT_PAUSE_BUTTON, device: str = "the pad"
) -> PadLayout:
    """The layout for a device with these absolute axes: a wheel's pedals if it has both.

    Raises DeviceError naming the device and the axes it lacks; UsageError for
    an unknown pause button.
    """
    present = set(axes)
    if pause_button not in (*PAUSE_BUTTONS, "none"):
        raise UsageError(
            f"pad pause button {pause_button!r} is not accepted; "
            f"use one of {', '.join([*PAUSE_BUTTONS, 'none'])}"
        )
    pause = PAUSE_BUTTONS.get(pause_button)
    if ABS_X not in present:
        raise DeviceError(
            f"{device} has no stick (no ABS_X axis; it has {_axis_names(present)}), "
            "so it cannot steer; give the eventN of a gamepad or wheel"
        )
    if {ABS_GAS, ABS_BRAKE} <= present:
        return PadLayout(ABS_X, ABS_GAS, ABS_BRAKE, pause)
    if {ABS_Z, ABS_RZ} <= present:
        return PadLayout(ABS_X, ABS_RZ, ABS_Z, pause)
    raise DeviceError(
        f"{device} has no triggers or pedals (neither ABS_Z and ABS_RZ nor ABS_GAS and "
        f"ABS_BRAKE; it has {_axis_names(present)}), so it cannot accelerate and brake"
    )


class PadMapper:
    """Events in, controls out: the pad's state as the recorder labels it. No device, no I/O."""

    def __init__(
        self,
        layout: PadLayout,
        ranges: Mapping[int, AxisRange],
        *,
        stick_dead_zone: float = STICK_DEAD_ZONE,
        trigger_dead_zone: float = TRIGGER_DEAD_ZONE,
        snap: float = 0.02,
    ) -> None:
        for name, value in (("stick", stick_dead_zone), ("trigger", trigger_dead_zone)):
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} dead zone must be in [0, 1), got {value}")
        missing = [code for code in _axes(layout) if code not in ranges]
        if missing:
            raise ValueError(f"no range for axis code(s) {missing}")
        self.layout = layout
        self._ranges = dict(ranges)
        self._raw = {code: self._ranges[code].minimum for code in _axes(layout)}
        self._raw[layout.steering] = round(
            (ranges[layout.steering].minimum + ranges[layout.steering].maximum) / 2
        )
        self._dead = {
            layout.steering: max(stick_dead_zone, ranges[layout.steering].flat_fraction(True)),
            layout.throttle: max(trigger_dead_zone, ranges[layout.throttle].flat_fraction(False)),
            layout.brake: max(trigger_dead_zone, ranges[layout.brake].flat_fraction(False)),
        }
        self._snap = snap
        self._pause_down = False
        self._pause_presses = 0
        self._dropping = False
        self.needs_resync = False

    def apply(self, events: Iterable[Event]) -> None:
        """Take events in the order the device sent them."""
        for kind, code, value in events:
            if kind == EV_SYN:
                if code == SYN_DROPPED:
                    # The kernel's buffer overflowed: what follows until the next report is
                    # partial, and the state must be asked for (linux/Documentation/input).
                    self._dropping = True
                elif code == SYN_REPORT and self._dropping:
                    self._dropping = False
                    self.needs_resync = True
            elif self._dropping:
                continue
            elif kind == EV_ABS and code in self._raw:
                self._raw[code] = value
            elif kind == EV_KEY and code == self.layout.pause:
                self._set_pause(value != 0)  # 1 down, 2 autorepeat, 0 up

    def resync(self, axes: Mapping[int, int], keys_down: Iterable[int]) -> None:
        """Take the device's whole state (after SYN_DROPPED): axis values, keys held."""
        for code in self._raw:
            if code in axes:
                self._raw[code] = axes[code]
        self._set_pause(self.layout.pause in set(keys_down))
        self.needs_resync = False

    def controls(self) -> Controls:
        """Steering from the stick, throttle_brake = throttle - brake, dead zones applied."""
        layout, ranges = self.layout, self._ranges
        steering = ranges[layout.steering].centred(self._raw[layout.steering])
        throttle = ranges[layout.throttle].one_sided(self._raw[layout.throttle])
        brake = ranges[layout.brake].one_sided(self._raw[layout.brake])
        steering = _past_dead_zone(steering, self._dead[layout.steering])
        throttle = _past_dead_zone(throttle, self._dead[layout.throttle])
        brake = _past_dead_zone(brake, self._dead[layout.brake])
        return Controls(
            snap_to_dead_zone(steering, self._snap),
            snap_to_dead_zone(throttle - brake, self._snap),
        )

    def take_pause_press(self) -> bool:
        """Whether the pause button went down since the last call (a press between polls too)."""
        pressed = self._pause_presses > 0
        self._pause_presses = 0
        return pressed

    def _set_pause(self, down: bool) -> None:
        if down and not self._pause_down:
            self._pause_presses += 1
        self._pause_down = down


class PadDevice(Protocol):
    """A pad being read: its events since the last call, and its whole state on demand."""

    name: str

    def events(self) -> list[Event]:
        """Every event since the last call, oldest first; DeviceError once it is gone."""
        ...

    def state(self) -> tuple[dict[int, int], set[int]]:
        """The axes' values and the keys held now."""
        ...

    def close(self) -> None:
        """Let go of the device."""
        ...


class PadButton:
    """A pad button as the recorder's pause key: `pressed()` once a press."""

    def __init__(self, pad: PadInput) -> None:
        self._pad = pad

    def pressed(self) -> bool:
        """Whether the button went down since the last call (the pad is read for it)."""
        self._pad.poll()
        return self._pad.mapper.take_pause_press()


class Pressable(Protocol):
    """A toggle key or button: `pressed()` is true once per press (the recorder's PauseKey)."""

    def pressed(self) -> bool:
        """Whether it went down since the last call."""
        ...


class AnyPressed:
    """Several pause keys as one (the keyboard's F9 and the pad's button): each is read."""

    def __init__(self, *keys: Pressable) -> None:
        self._keys = keys

    def pressed(self) -> bool:
        """True if any went down; every key is asked, so none misses its own press."""
        return any([key.pressed() for key in self._keys])


class PadInput:
    """An `InputSource` from a gamepad: reads its events at every poll, maps them to controls."""

    def __init__(self, device: PadDevice, mapper: PadMapper) -> None:
        self.device = device
        self.mapper = mapper
        self.pause = PadButton(self)
        # Start from where the pad is (a trigger already held sends no event until it moves);
        # a pause button held while opening is not a press.
        mapper.resync(*device.state())
        mapper.take_pause_press()

    def poll(self) -> None:
        """Take whatever the device sent since the last poll."""
        self.mapper.apply(self.device.events())
        if self.mapper.needs_resync:
            axes, keys = self.device.state()
            self.mapper.resync(axes, keys)

    def read(self, now: float) -> Controls:
        """The controls the pad is at now (`now` unused: a pad needs no smoothing)."""
        self.poll()
        return self.mapper.controls()

    def reset(self) -> None:
        """Nothing to forget: a pad's values are absolute."""

    def close(self) -> None:
        """Let go of the device."""
        self.device.close()

    def __enter__(self) -> PadInput:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_pad(
    spec: str,
    *,
    snap: float = 0.02,
    pause_button: str = DEFAULT_PAUSE_BUTTON,
    platform: str | None = None,
) -> PadInput:
    """The pad `spec` names, ready to read: "auto", a /dev/input/eventN path, or (Windows) 0-3.

    Raises UsageError for a spec of the wrong form and DeviceError for a device
    that is missing, unreadable, not a pad, or a platform without a reader; each
    names the device and what to do.
    """
    platform = platform or sys.platform
    if platform == "win32":
        device: PadDevice = XInputPad(_xinput_index(spec))
        ranges = XINPUT_RANGES
        axes: Iterable[int] = XINPUT_RANGES
    elif platform.startswith("linux"):
        evdev_pad = EvdevPad(find_pad() if spec == "auto" else _device_path(spec))
        device, ranges, axes = evdev_pad, evdev_pad.ranges, evdev_pad.ranges
    else:
        raise DeviceError(
            f"no gamepad reader for platform {platform!r}; accepted: linux (evdev), win32 (XInput)"
        )
    try:
        layout = choose_layout(axes, pause_button=pause_button, device=device.name)
        mapper = PadMapper(layout, ranges, snap=snap)
    except BaseException:
        device.close()
        raise
    log.info("reading the gamepad %s", device.name)
    return PadInput(device, mapper)


# --- Linux: evdev ---


@dataclass(frozen=True)
class InputNode:
    """One /dev/input/eventN as sysfs describes it (no need to open it)."""

    path: Path
    name: str
    readable: bool
    axes: frozenset[int]
    buttons: frozenset[int]

    @property
    def is_pad(self) -> bool:
        """A stick and a joystick/gamepad/wheel button: not a touchpad, not a keyboard."""
        return ABS_X in self.axes and any(code in PAD_BUTTONS for code in self.buttons)


def input_nodes(input_dir: Path | None = None, sys_dir: Path | None = None) -> list[InputNode]:
    """Every eventN under `input_dir` (/dev/input), in number order, with its sysfs
    (/sys/class/input) name and capabilities."""
    input_dir, sys_dir = input_dir or INPUT_DIR, sys_dir or SYS_INPUT_DIR
    nodes = []
    paths = input_dir.glob("event*") if input_dir.is_dir() else ()
    for path in sorted(paths, key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else -1):
        if not _EVENT_NAME.fullmatch(path.name):
            continue
        about = sys_dir / path.name / "device"
        nodes.append(
            InputNode(
                path=path,
                name=_read_text(about / "name") or "(no name)",
                readable=os.access(path, os.R_OK),
                axes=frozenset(parse_bitmask(_read_text(about / "capabilities" / "abs"))),
                buttons=frozenset(parse_bitmask(_read_text(about / "capabilities" / "key"))),
            )
        )
    return nodes


def parse_bitmask(text: str, word_bits: int = 8 * struct.calcsize("L")) -> set[int]:
    """The bits set in a sysfs capability mask: hex words, most significant word first."""
    bits: set[int] = set()
    for index, word in enumerate(reversed(text.split())):
        value = int(word, 16)
        bits.update(index * word_bits + bit for bit in range(word_bits) if value >> bit & 1)
    return bits


def find_pad() -> Path:
    """The first readable eventN with a stick and pad buttons; DeviceError listing what there is."""
    nodes = input_nodes()
    for node in nodes:
        if node.readable and node.is_pad:
            return node.path
    unreadable_pads = [node for node in nodes if node.is_pad and not node.readable]
    if unreadable_pads:
        raise DeviceError(
            f"--pad auto: the gamepad {_describe(unreadable_pads[0])} is not readable by this "
            f"user; {_PERMISSION_HINT}"
        )
    raise DeviceError(f"--pad auto: no gamepad found; {describe_devices(nodes)}")


def describe_devices(nodes: Sequence[InputNode]) -> str:
    """A sentence listing the readable input devices (of /dev/input), for a refusal message."""
    input_dir = INPUT_DIR
    if not input_dir.is_dir():
        return f"this machine has no {input_dir} (no input devices, or a container without them)"
    readable = [node for node in nodes if node.readable]
    if not nodes:
        return f"there is no {input_dir}/event* (no input device is plugged in)"
    if not readable:
        return (
            f"no {input_dir}/event* is readable by this user ({len(nodes)} exist); "
            f"{_PERMISSION_HINT}"
        )
    return "readable devices: " + "; ".join(
        _describe(node) + (" (a pad)" if node.is_pad else "") for node in readable
    )


_PERMISSION_HINT = (
    "add the user to the 'input' group (sudo usermod -aG input $USER, then log in again) "
    "or give it a udev rule for the pad"
)


class EvdevPad:
    """A pad read through python-evdev from /dev/input/eventN, without grabbing it.

    Not grabbed: the game reads the same device at the same time.
    """

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise DeviceError(f"--pad {path}: no such device; {describe_devices(input_nodes())}")
        try:
            import evdev
        except ImportError as error:
            raise DeviceError(
                f"reading a gamepad on Linux needs python-evdev ({error}); install it with "
                "`pip install 'charles-stream[pad]'` (it compiles against the kernel headers: "
                "gcc and linux-libc-dev)"
            ) from None
        self.path = path
        try:
            self._device = evdev.InputDevice(str(path))
        except FileNotFoundError:  # unplugged since the check above
            raise DeviceError(
                f"--pad {path}: no such device; {describe_devices(input_nodes())}"
            ) from None
        except PermissionError:
            raise DeviceError(
                f"--pad {path}: not readable by this user; {_PERMISSION_HINT}"
            ) from None
        except OSError as error:
            raise DeviceError(
                f"--pad {path}: not an evdev input device ({error.strerror or error}); "
                "give a /dev/input/eventN"
            ) from None
        self.name = f"{path} ({self._device.name})"
        capabilities = self._device.capabilities(absinfo=True)
        self.ranges = {
            code: AxisRange(info.min, info.max, info.flat)
            for code, info in capabilities.get(EV_ABS, [])
            if info.max > info.min
        }

    def events(self) -> list[Event]:
        """Everything pending (non-blocking); DeviceError once the pad is unplugged."""
        events: list[Event] = []
        try:
            while (event := self._device.read_one()) is not None:
                events.append((event.type, event.code, event.value))
        except OSError as error:
            if error.errno in (errno.ENODEV, errno.EIO, errno.EBADF):
                raise DeviceError(
                    f"the gamepad {self.name} was disconnected; plug it in and record again "
                    "(the sets stored so far are kept)"
                ) from None
            raise DeviceError(f"cannot read the gamepad {self.name}: {error}") from None
        return events

    def state(self) -> tuple[dict[int, int], set[int]]:
        """The axes' values and the keys held, asked of the kernel (EVIOCGABS, EVIOCGKEY)."""
        try:
            axes = {code: self._device.absinfo(code).value for code in self.ranges}
            return axes, set(self._device.active_keys())
        except OSError as error:
            raise DeviceError(f"the gamepad {self.name} was disconnected ({error})") from None

    def close(self) -> None:
        """Close the file descriptor."""
        self._device.close()


def _device_path(spec: str) -> Path:
    path = Path(spec)
    if not path.is_absolute():
        raise UsageError(
            f"--pad {spec!r} is not accepted; use auto (the first gamepad found) or a device "
            "path like /dev/input/event5 or /dev/input/by-id/...-event-joystick"
        )
    if path.name.startswith("js"):
        raise UsageError(
            f"--pad {spec}: that is the old joystick interface (joydev); give the same "
            "pad's /dev/input/eventN (listed by `ls -l /dev/input/by-id/`)"
        )
    return path


# --- Windows: XInput (untested here) ---

XINPUT_GAMEPAD_BACK = 0x0020
XINPUT_GAMEPAD_START = 0x0010
ERROR_SUCCESS = 0
ERROR_DEVICE_NOT_CONNECTED = 1167
XINPUT_USERS = range(4)
# XInput's fixed ranges, with its documented dead zones (XINPUT_GAMEPAD_LEFT_THUMB_DEADZONE,
# XINPUT_GAMEPAD_TRIGGER_THRESHOLD) as the flat.
XINPUT_RANGES = {
    ABS_X: AxisRange(-32768, 32767, 7849),
    ABS_Z: AxisRange(0, 255, 30),
    ABS_RZ: AxisRange(0, 255, 30),
}
# The guide button (BTN_MODE) is not in XInputGetState's answer: "mode" never pauses on Windows.
_XINPUT_BUTTONS = {BTN_SELECT: XINPUT_GAMEPAD_BACK, BTN_START: XINPUT_GAMEPAD_START}
# XInputGetState(user index, pointer to XINPUT_STATE) -> a Windows error code.
GetState = Callable[[int, Any], int]


class XINPUT_GAMEPAD(ctypes.Structure):
    """XInput.h's XINPUT_GAMEPAD."""

    _fields_ = [
        ("wButtons", ctypes.c_uint16),
        ("bLeftTrigger", ctypes.c_uint8),
        ("bRightTrigger", ctypes.c_uint8),
        ("sThumbLX", ctypes.c_int16),
        ("sThumbLY", ctypes.c_int16),
        ("sThumbRX", ctypes.c_int16),
        ("sThumbRY", ctypes.c_int16),
    ]


class XINPUT_STATE(ctypes.Structure):
    """XInput.h's XINPUT_STATE."""

    _fields_ = [("dwPacketNumber", ctypes.c_uint32), ("Gamepad", XINPUT_GAMEPAD)]


def xinput_events(gamepad: XINPUT_GAMEPAD) -> list[Event]:
    """One XInput state as the evdev events of an Xbox pad on Linux (xpad's codes)."""
    events: list[Event] = [
        (EV_ABS, ABS_X, gamepad.sThumbLX),
        (EV_ABS, ABS_Z, gamepad.bLeftTrigger),
        (EV_ABS, ABS_RZ, gamepad.bRightTrigger),
    ]
    events += [
        (EV_KEY, code, int(bool(gamepad.wButtons & mask))) for code, mask in _XINPUT_BUTTONS.items()
    ]
    return [*events, (EV_SYN, SYN_REPORT, 0)]


class XInputPad:
    """An Xbox-compatible pad through XInputGetState (xinput1_4.dll). UNTESTED HERE."""

    def __init__(self, index: int, get_state: GetState | None = None) -> None:
        self.name = f"XInput pad {index}"
        self._index = index
        self._get_state = get_state or _xinput_get_state()
        self._packet: int | None = None
        self._state = XINPUT_STATE()
        self._read()  # refuses a pad that is not connected now

    def events(self) -> list[Event]:
        """The state as events when it changed since the last call (XInput has no queue)."""
        packet = self._read()
        if packet == self._packet:
            return []
        self._packet = packet
        return xinput_events(self._state.Gamepad)

    def state(self) -> tuple[dict[int, int], set[int]]:
        """The axes and the buttons held, from the last read."""
        events = xinput_events(self._state.Gamepad)
        axes = {code: value for kind, code, value in events if kind == EV_ABS}
        return axes, {code for kind, code, value in events if kind == EV_KEY and value}

    def close(self) -> None:
        """Nothing to close: XInput has no handle."""

    def _read(self) -> int:
        result = self._get_state(self._index, ctypes.byref(self._state))
        if result == ERROR_DEVICE_NOT_CONNECTED:
            raise DeviceError(
                f"{self.name} is not connected; plug it in (XInput numbers pads 0-3 in the "
                "order they were connected) and record again"
            )
        if result != ERROR_SUCCESS:
            raise DeviceError(f"XInputGetState({self._index}) failed with Windows error {result}")
        return int(self._state.dwPacketNumber)


def _xinput_index(spec: str) -> int:
    if spec == "auto":
        get_state = _xinput_get_state()
        state = XINPUT_STATE()
        for index in XINPUT_USERS:
            if get_state(index, ctypes.byref(state)) == ERROR_SUCCESS:
                return index
        raise DeviceError("--pad auto: no XInput gamepad is connected (looked at pads 0-3)")
    if spec.isdigit() and int(spec) in XINPUT_USERS:
        return int(spec)
    raise UsageError(
        f"--pad {spec!r} is not accepted on Windows; use auto or an XInput pad number 0-3"
    )


def _xinput_get_state() -> GetState:
    """XInputGetState from the first XInput DLL Windows has (1.4 since Windows 8)."""
    for dll in ("xinput1_4", "xinput1_3", "xinput9_1_0"):
        try:
            library = ctypes.WinDLL(dll)  # type: ignore[attr-defined]
        except (AttributeError, OSError):  # AttributeError: not Windows
            continue
        get_state = library.XInputGetState
        get_state.argtypes = (ctypes.c_uint32, ctypes.POINTER(XINPUT_STATE))
        get_state.restype = ctypes.c_uint32
        return get_state
    raise DeviceError("no XInput DLL (xinput1_4.dll, xinput1_3.dll) could be loaded")


# --- helpers ---


def _axes(layout: PadLayout) -> tuple[int, int, int]:
    return (layout.steering, layout.throttle, layout.brake)


def _past_dead_zone(value: float, dead_zone: float) -> float:
    """0 within the dead zone; beyond it the rest of the travel scaled back to reach 1."""
    magnitude = abs(value)
    if magnitude <= dead_zone:
        return 0.0
    return math.copysign((magnitude - dead_zone) / (1.0 - dead_zone), value)


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _describe(node: InputNode) -> str:
    return f"{node.path} ({node.name})"


_AXIS_NAMES = {
    ABS_X: "ABS_X",
    ABS_Y: "ABS_Y",
    ABS_Z: "ABS_Z",
    ABS_RX: "ABS_RX",
    ABS_RY: "ABS_RY",
    ABS_RZ: "ABS_RZ",
    ABS_GAS: "ABS_GAS",
    ABS_BRAKE: "ABS_BRAKE",
}


def _axis_names(codes: Iterable[int]) -> str:
    names = [_AXIS_NAMES.get(code, f"axis {code}") for code in sorted(codes)]
    return ", ".join(names) if names else "no axes"
