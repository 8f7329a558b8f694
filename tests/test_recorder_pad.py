"""The recorder's gamepad without a gamepad: synthetic evdev events, a fake /dev/input and sysfs.

This machine has no /dev/input and its kernel no uinput, so no device (real or
virtual) can be read here. The mapping is pure and takes the events a kernel
would send; the device side is checked through its refusals (no such device,
not a pad, nothing readable, unplugged) and through XInput's structures with a
scripted XInputGetState.
"""

from __future__ import annotations

import ctypes
import errno
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import msgspec
import numpy as np
import pytest

from engine.core.config import Config, OutputBinsConfig, default_config
from engine.core.errors import DeviceError, UsageError, exit_code_of
from engine.recorder import pad
from engine.recorder.inputs import Controls
from engine.recorder.pad import (
    ABS_BRAKE,
    ABS_GAS,
    ABS_RX,
    ABS_RZ,
    ABS_X,
    ABS_Y,
    ABS_Z,
    BTN_SELECT,
    BTN_START,
    ERROR_DEVICE_NOT_CONNECTED,
    ERROR_SUCCESS,
    EV_ABS,
    EV_KEY,
    EV_SYN,
    SYN_DROPPED,
    SYN_REPORT,
    XINPUT_GAMEPAD,
    XINPUT_GAMEPAD_BACK,
    XINPUT_RANGES,
    AnyPressed,
    AxisRange,
    EvdevPad,
    PadInput,
    PadLayout,
    PadMapper,
    XInputPad,
    choose_layout,
    find_pad,
    input_nodes,
    open_pad,
    parse_bitmask,
    xinput_events,
)
from engine.recorder.recorder import Recorder

# An Xbox One pad under xpad: 16-bit stick with a small flat, 10-bit triggers.
XBOX = {
    ABS_X: AxisRange(-32768, 32767, 128),
    ABS_Y: AxisRange(-32768, 32767, 128),
    ABS_Z: AxisRange(0, 1023),
    ABS_RZ: AxisRange(0, 1023),
}
STICK, TRIGGER = pad.STICK_DEAD_ZONE, pad.TRIGGER_DEAD_ZONE


def abs_event(code: int, value: int) -> tuple[int, int, int]:
    return (EV_ABS, code, value)


def report() -> tuple[int, int, int]:
    return (EV_SYN, SYN_REPORT, 0)


def past(value: float, dead_zone: float) -> float:
    """What a normalised value records as: 0 inside the dead zone, rescaled beyond it."""
    if abs(value) <= dead_zone:
        return 0.0
    return (abs(value) - dead_zone) / (1 - dead_zone) * (1 if value > 0 else -1)


class ScriptedPad:
    """A PadDevice whose events the test queues; `gone` makes it fail like an unplugged pad."""

    name = "/dev/input/event7 (Scripted Pad)"

    def __init__(self) -> None:
        self.queued: list[tuple[int, int, int]] = []
        self.axes: dict[int, int] = {}
        self.keys: set[int] = set()
        self.closed = False

    def events(self) -> list[tuple[int, int, int]]:
        events, self.queued = self.queued, []
        return events

    def state(self) -> tuple[dict[int, int], set[int]]:
        return dict(self.axes), set(self.keys)

    def close(self) -> None:
        self.closed = True


def xbox_input(device: ScriptedPad | None = None) -> PadInput:
    return PadInput(device or ScriptedPad(), PadMapper(PadLayout(), XBOX))


# --- the mapping ---


def test_a_pad_at_rest_records_neutral():
    assert xbox_input().read(0.0) == Controls(0.0, 0.0)


@pytest.mark.parametrize(
    ("events", "steering", "throttle_brake"),
    [
        ([abs_event(ABS_X, -32768)], -1.0, 0.0),
        ([abs_event(ABS_X, 32767)], 1.0, 0.0),
        ([abs_event(ABS_X, 16384)], past(16384.5 / 32767.5, STICK), 0.0),
        ([abs_event(ABS_X, -8192)], past(-8191.5 / 32767.5, STICK), 0.0),
        ([abs_event(ABS_RZ, 1023)], 0.0, 1.0),
        ([abs_event(ABS_Z, 1023)], 0.0, -1.0),
        ([abs_event(ABS_RZ, 512)], 0.0, past(512 / 1023, TRIGGER)),
        ([abs_event(ABS_Z, 300), abs_event(ABS_RZ, 900)], 0.0, None),
        ([abs_event(ABS_RZ, 1023), abs_event(ABS_Z, 1023)], 0.0, 0.0),
    ],
    ids=[
        "full-left",
        "full-right",
        "half-right",
        "quarter-left",
        "full-throttle",
        "full-brake",
        "half-throttle",
        "both-triggers",
        "both-full-cancel",
    ],
)
def test_labels_follow_the_stick_and_the_triggers(events, steering, throttle_brake):
    device = ScriptedPad()
    pad_input = xbox_input(device)
    device.queued = [*events, report()]
    controls = pad_input.read(0.0)
    if throttle_brake is None:  # both pressed: the right trigger minus the left
        throttle_brake = past(900 / 1023, TRIGGER) - past(300 / 1023, TRIGGER)
    assert controls.steering == pytest.approx(steering)
    assert controls.throttle_brake == pytest.approx(throttle_brake)


def test_the_last_value_of_an_axis_counts_and_other_axes_are_ignored():
    device = ScriptedPad()
    pad_input = xbox_input(device)
    device.queued = [abs_event(ABS_X, -32768), report(), abs_event(ABS_X, 32767), report()]
    device.queued += [abs_event(ABS_Y, -32768), abs_event(ABS_RX, 32767), report()]
    assert pad_input.read(0.0) == Controls(1.0, 0.0)
    assert pad_input.read(0.1) == Controls(1.0, 0.0)  # no events: the pad stays where it was


def test_within_the_dead_zone_is_exactly_zero_and_past_it_starts_small():
    device = ScriptedPad()
    pad_input = xbox_input(device)
    rest = int(STICK * 32767.5 - 0.5)  # just inside the stick's dead zone
    for value in (rest, -rest - 1, 0, -1):
        device.queued = [abs_event(ABS_X, value), report()]
        assert pad_input.read(0.0).steering == 0.0, value
    device.queued = [abs_event(ABS_X, rest + 1000), abs_event(ABS_RZ, 40), report()]
    controls = pad_input.read(0.0)
    # 0.11 of the travel records as 0.03: no jump from 0 to the dead zone's edge (0.08).
    assert controls.steering == pytest.approx(past((rest + 1000.5) / 32767.5, STICK))
    assert 0.02 < controls.steering < 0.05
    assert controls.throttle_brake == 0.0  # 40/1023 is inside the trigger's dead zone


def test_the_device_flat_widens_the_dead_zone_and_values_near_one_snap():
    ranges = {**XBOX, ABS_X: AxisRange(0, 255, 32)}  # a DualShock-like stick, flat 32 of 127.5
    mapper = PadMapper(PadLayout(), ranges, snap=0.02)
    mapper.apply([abs_event(ABS_X, 128 + 30)])  # 0.24 off centre: inside the device's flat
    assert mapper.controls().steering == 0.0
    mapper.apply([abs_event(ABS_X, 254)])  # 0.996: past the flat, rescaled, then snapped to 1
    assert mapper.controls().steering == 1.0


def test_a_wheel_with_pedals_uses_gas_and_brake():
    layout = choose_layout({ABS_X, ABS_Y, ABS_Z, ABS_RZ, ABS_GAS, ABS_BRAKE})
    assert (layout.steering, layout.throttle, layout.brake) == (ABS_X, ABS_GAS, ABS_BRAKE)
    ranges = {ABS_X: AxisRange(0, 65535), ABS_GAS: AxisRange(0, 255), ABS_BRAKE: AxisRange(0, 255)}
    mapper = PadMapper(layout, ranges)
    mapper.apply([abs_event(ABS_GAS, 255), abs_event(ABS_Z, 255), abs_event(ABS_X, 0)])
    assert mapper.controls() == Controls(-1.0, 1.0)
    assert choose_layout({ABS_X, ABS_Z, ABS_RZ}).throttle == ABS_RZ


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({ABS_Y, ABS_Z, ABS_RZ}, r"the pad has no stick \(no ABS_X axis; it has ABS_Y, ABS_Z"),
        (set(), "no ABS_X axis; it has no axes"),
        ({ABS_X, ABS_Y}, "no triggers or pedals .* it has ABS_X, ABS_Y"),
    ],
)
def test_a_device_that_cannot_drive_is_refused_naming_its_axes(axes, message):
    with pytest.raises(DeviceError, match=message):
        choose_layout(axes)


def test_an_unknown_pause_button_is_refused_with_the_choices():
    with pytest.raises(UsageError, match=r"'guide' is not accepted; use one of select, start"):
        choose_layout({ABS_X, ABS_Z, ABS_RZ}, pause_button="guide")
    assert choose_layout({ABS_X, ABS_Z, ABS_RZ}, pause_button="none").pause is None


def test_the_pause_button_acts_once_per_press_even_between_polls():
    device = ScriptedPad()
    pad_input = xbox_input(device)
    assert not pad_input.pause.pressed()
    # Pressed and released between two polls: still one press.
    device.queued = [(EV_KEY, BTN_SELECT, 1), report(), (EV_KEY, BTN_SELECT, 0), report()]
    assert pad_input.pause.pressed()
    assert not pad_input.pause.pressed()
    # Held (with autorepeat): one press.
    device.queued = [(EV_KEY, BTN_SELECT, 1), report(), (EV_KEY, BTN_SELECT, 2), report()]
    assert pad_input.pause.pressed()
    device.queued = [(EV_KEY, BTN_SELECT, 2), report()]
    assert not pad_input.pause.pressed()
    # Another button does nothing.
    device.queued = [(EV_KEY, BTN_SELECT, 0), (EV_KEY, BTN_START, 1), report()]
    assert not pad_input.pause.pressed()


def test_either_pause_key_toggles_and_both_are_read():
    class Key:
        def __init__(self, answers: list[bool]) -> None:
            self.answers = answers

        def pressed(self) -> bool:
            return self.answers.pop(0)

    keyboard, button = Key([True, False, False]), Key([True, True, False])
    either = AnyPressed(keyboard, button)
    assert [either.pressed() for _ in range(3)] == [True, True, False]
    assert keyboard.answers == button.answers == []  # each asked every time


def test_the_first_reading_is_where_the_pad_already_is():
    device = ScriptedPad()
    device.axes, device.keys = {ABS_X: -32768, ABS_RZ: 1023}, {BTN_SELECT}
    pad_input = xbox_input(device)
    assert pad_input.read(0.0) == Controls(-1.0, 1.0)
    assert not pad_input.pause.pressed()  # held since before: not a press


def test_after_dropped_events_the_state_is_read_from_the_device():
    device = ScriptedPad()
    pad_input = xbox_input(device)
    device.axes = {ABS_X: 32767, ABS_Z: 0, ABS_RZ: 1023}
    device.keys = {BTN_SELECT}
    device.queued = [
        abs_event(ABS_X, -32768),
        (EV_SYN, SYN_DROPPED, 0),
        abs_event(ABS_X, -100),  # part of a frame the kernel lost the rest of: ignored
        report(),
    ]
    assert pad_input.read(0.0) == Controls(1.0, 1.0)
    assert pad_input.pause.pressed()  # held according to the device's key state


# --- a pad in a recording ---


def small_config() -> Config:
    config = default_config()
    bins = dict(config.data.bins)
    bins["steering"] = OutputBinsConfig("axis", divisions=1)
    bins["throttle_brake"] = OutputBinsConfig("trigger_pair", divisions=1)
    data = msgspec.structs.replace(
        config.data, frame_width=32, frame_height=18, balanced_outputs=("steering",), bins=bins
    )
    collector = msgspec.structs.replace(config.collector, sample_hz=30.0)
    return msgspec.structs.replace(config, data=data, collector=collector)


def test_a_recording_stores_the_pads_values_as_labels(tmp_path):
    from engine.data.storage import SampleStorage

    device = ScriptedPad()
    pad_input = xbox_input(device)
    clock = [0.0]
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = Recorder(
            small_config(),
            source="human:ada",
            grab=lambda: np.full((72, 128, 3), 128, np.uint8),
            inputs=pad_input,
            pause=pad_input.pause,
            sink=storage.insert_set,
            clock=lambda: clock[0],
        )
        script = [
            [abs_event(ABS_X, -32768), abs_event(ABS_RZ, 1023)],
            [abs_event(ABS_X, 0), abs_event(ABS_RZ, 0)],
            [abs_event(ABS_X, 16384), abs_event(ABS_Z, 1023)],
        ]
        for events in script:
            device.queued = [*events, report()]
            for _ in range(3):
                recorder.poll(clock[0])
                clock[0] += 1 / 30
        with sqlite3.connect(storage.path) as connection:
            rows = connection.execute("SELECT source, outputs FROM samples").fetchall()
    labels = sorted(
        (outputs["steering"], outputs["throttle_brake"])
        for outputs in (msgspec.json.decode(text) for _, text in rows)
    )
    assert {source for source, _ in rows} == {"human:ada"}
    assert labels[:2] == [(-1.0, 1.0), (0.0, 0.0)]
    assert labels[2] == (pytest.approx(past(16384.5 / 32767.5, STICK)), -1.0)
    assert len(labels) == 3


def test_an_unplugged_pad_stops_the_recording_with_a_sentence_not_a_traceback():
    class Unplugged:
        """python-evdev's InputDevice for a pad pulled out after it was opened."""

        def absinfo(self, code: int) -> SimpleNamespace:
            return SimpleNamespace(value=XBOX[code].minimum)

        def active_keys(self) -> list[int]:
            return []

        def read_one(self) -> None:
            raise OSError(errno.ENODEV, "No such device")

    evdev_pad = EvdevPad.__new__(EvdevPad)  # the device itself cannot be opened here
    evdev_pad.name = "/dev/input/event7 (Xbox Wireless Controller)"
    evdev_pad._device, evdev_pad.ranges = Unplugged(), XBOX
    pad_input = PadInput(evdev_pad, PadMapper(PadLayout(), XBOX))
    with pytest.raises(DeviceError, match=r"event7 \(Xbox Wireless Controller\) was disconnected"):
        pad_input.read(0.0)
    with pytest.raises(DeviceError) as caught:
        pad_input.pause.pressed()
    assert exit_code_of(caught.value) == 3  # `record` logs the sentence and exits 3


# --- finding and opening a device (a fake /dev/input and /sys/class/input) ---


def fake_input_tree(root: Path) -> tuple[Path, Path]:
    """event0 a keyboard, event1 a touchpad (ABS_X but no pad button), event3 an Xbox pad."""
    devices, sysfs = root / "input", root / "sys"
    devices.mkdir()
    nodes = {
        "event0": (
            "AT Translated Set 2 keyboard",
            "0",
            "402000000 3803078f800d001 feffffdfffefffff",
        ),
        "event1": ("SynPS/2 Synaptics TouchPad", "11000003", "6420 30000 0 0 0 0"),
        "event3": ("Microsoft X-Box One pad", "3003f", "7cdb000000000000 0 0 0 0"),
    }
    for name, (title, axes, keys) in nodes.items():
        (devices / name).write_bytes(b"")
        about = sysfs / name / "device"
        (about / "capabilities").mkdir(parents=True)
        (about / "name").write_text(title + "\n")
        (about / "capabilities" / "abs").write_text(axes + "\n")
        (about / "capabilities" / "key").write_text(keys + "\n")
    (devices / "js0").write_bytes(b"")  # the joydev node: not an eventN
    return devices, sysfs


@pytest.fixture
def fake_tree(tmp_path, monkeypatch) -> tuple[Path, Path]:
    devices, sysfs = fake_input_tree(tmp_path)
    monkeypatch.setattr(pad, "INPUT_DIR", devices)
    monkeypatch.setattr(pad, "SYS_INPUT_DIR", sysfs)
    return devices, sysfs


def test_sysfs_capability_masks_are_read_word_by_word():
    assert parse_bitmask("3003f") == {0, 1, 2, 3, 4, 5, 16, 17}
    assert parse_bitmask("1 0", word_bits=64) == {64}
    assert parse_bitmask("") == set()


def test_auto_finds_the_first_readable_pad_not_the_touchpad(fake_tree):
    devices, _ = fake_tree
    nodes = input_nodes()
    assert [node.path.name for node in nodes] == ["event0", "event1", "event3"]
    assert [node.is_pad for node in nodes] == [False, False, True]
    assert nodes[2].axes >= {ABS_X, ABS_Y, ABS_Z, ABS_RZ}
    assert find_pad() == devices / "event3"


def test_auto_without_a_pad_lists_the_readable_devices(fake_tree):
    devices, _ = fake_tree
    (devices / "event3").unlink()
    with pytest.raises(DeviceError, match=r"no gamepad found; readable devices: .*event0 "):
        find_pad()


def test_auto_with_an_unreadable_pad_says_how_to_get_access(fake_tree, monkeypatch):
    monkeypatch.setattr(pad.os, "access", lambda path, mode: not str(path).endswith("event3"))
    with pytest.raises(
        DeviceError, match=r"event3 \(Microsoft X-Box One pad\) is not readable.*input"
    ):
        find_pad()


def test_a_missing_device_is_refused_naming_it_and_listing_readable_ones(fake_tree):
    with pytest.raises(DeviceError) as caught:
        open_pad("/dev/input/event99", platform="linux")
    message = str(caught.value)
    assert message.startswith("--pad /dev/input/event99: no such device; readable devices: ")
    assert "event3 (Microsoft X-Box One pad) (a pad)" in message
    assert "event0 (AT Translated Set 2 keyboard)" in message


def test_an_empty_dev_input_says_no_device_is_plugged_in(tmp_path, monkeypatch):
    (tmp_path / "input").mkdir()
    monkeypatch.setattr(pad, "INPUT_DIR", tmp_path / "input")
    with pytest.raises(DeviceError, match=r"no gamepad found; there is no .*event\* \(no input"):
        find_pad()


def test_without_dev_input_the_refusal_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(pad, "INPUT_DIR", tmp_path / "no-input")
    with pytest.raises(
        DeviceError, match=r"event5: no such device; this machine has no .*no-input"
    ):
        open_pad("/dev/input/event5", platform="linux")
    with pytest.raises(DeviceError, match="no gamepad found; this machine has no"):
        open_pad("auto", platform="linux")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("event5", r"--pad 'event5' is not accepted; use auto .* /dev/input/event5"),
        ("/dev/input/js0", r"old joystick interface \(joydev\); give the same .*/eventN"),
    ],
)
def test_a_device_named_the_wrong_way_is_refused(spec, message):
    with pytest.raises(UsageError, match=message):
        open_pad(spec, platform="linux")


def test_a_file_that_is_not_an_input_device_is_refused(tmp_path):
    pytest.importorskip("evdev")
    not_a_device = tmp_path / "event4"
    not_a_device.write_bytes(b"")
    with pytest.raises(DeviceError, match=r"event4: not an evdev input device \(.*\); give"):
        open_pad(str(not_a_device), platform="linux")


def test_without_python_evdev_the_refusal_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "evdev", None)  # `import evdev` raises ImportError
    existing = tmp_path / "event4"
    existing.write_bytes(b"")
    with pytest.raises(DeviceError, match=r"needs python-evdev .*charles-stream\[pad\]"):
        open_pad(str(existing), platform="linux")


def test_a_platform_without_a_reader_is_refused():
    with pytest.raises(DeviceError, match="no gamepad reader for platform 'darwin'"):
        open_pad("auto", platform="darwin")


# --- Windows: XInput, with a scripted XInputGetState ---


def test_xinput_states_map_through_the_same_events():
    gamepad = XINPUT_GAMEPAD(
        wButtons=XINPUT_GAMEPAD_BACK, bLeftTrigger=0, bRightTrigger=255, sThumbLX=-32768
    )
    events = xinput_events(gamepad)
    assert (EV_ABS, ABS_X, -32768) in events and (EV_KEY, BTN_SELECT, 1) in events
    mapper = PadMapper(choose_layout(XINPUT_RANGES), XINPUT_RANGES)
    mapper.apply(events)
    assert mapper.controls() == Controls(-1.0, 1.0)
    assert mapper.take_pause_press()
    # XInput's documented dead zone (7849 of 32767) is the stick's flat.
    mapper.apply(xinput_events(XINPUT_GAMEPAD(sThumbLX=7000, bLeftTrigger=20)))
    assert mapper.controls() == Controls(0.0, 0.0)


def test_an_xinput_pad_reports_changes_and_a_disconnection():
    answers = [(ERROR_SUCCESS, 1, 0), (ERROR_SUCCESS, 1, 0), (ERROR_SUCCESS, 2, 255)]
    answers.append((ERROR_DEVICE_NOT_CONNECTED, 2, 0))

    def get_state(index: int, state_ref: object) -> int:
        result, packet, trigger = answers.pop(0)
        state = state_ref._obj  # ctypes.byref's target
        state.dwPacketNumber, state.Gamepad.bRightTrigger = packet, trigger
        return result

    pad_input = PadInput(XInputPad(0, get_state), PadMapper(PadLayout(), XINPUT_RANGES))
    assert pad_input.read(0.0) == Controls(0.0, 0.0)  # the first read reports the state
    assert pad_input.read(0.1).throttle_brake == 1.0  # packet 2: the trigger moved
    with pytest.raises(DeviceError, match="XInput pad 0 is not connected; plug it in"):
        pad_input.read(0.2)


def test_xinput_pad_numbers_are_checked_and_off_windows_no_dll_loads():
    with pytest.raises(UsageError, match=r"'7' is not accepted on Windows; use auto or .* 0-3"):
        open_pad("7", platform="win32")
    with pytest.raises(DeviceError, match=r"no XInput DLL \(xinput1_4.dll"):
        open_pad("auto", platform="win32")


def test_the_xinput_state_has_windows_layout():
    assert ctypes.sizeof(XINPUT_GAMEPAD) == 12
    assert ctypes.sizeof(pad.XINPUT_STATE) == 16


# --- `charles-stream record --pad` ---


class NoScreen:
    """ScreenGrabber's stand-in: the refusals come before a frame is grabbed."""

    def __init__(self, region: tuple[int, int, int, int]) -> None:
        self.region = region

    def __enter__(self) -> NoScreen:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class NoKeys:
    """XKeyState's stand-in: no X server here."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def held(self) -> frozenset[str]:
        return frozenset()

    def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("device", "code", "message"),
    [
        ("/dev/input/event99", 3, "--pad /dev/input/event99: no such device; this machine has no"),
        ("js0", 2, "--pad 'js0' is not accepted; use auto"),
        ("auto --smoothing 0.2", 2, "--smoothing 0.2 grades tapped keys, and a pad's stick"),
    ],
)
def test_record_pad_refusals_exit_with_a_sentence(
    device, code, message, tmp_path, monkeypatch, caplog
):
    from engine.cli import main
    from engine.recorder import inputs, screen

    monkeypatch.setattr(pad, "INPUT_DIR", tmp_path / "no-input")
    monkeypatch.setattr(inputs, "XKeyState", NoKeys)
    monkeypatch.setattr(screen, "ScreenGrabber", NoScreen)
    flags = ["record", "--region", "0,0,64,36", "--pad", *device.split(), "--data", str(tmp_path)]
    assert main(flags) == code
    assert message in caplog.text
