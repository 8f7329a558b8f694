"""The keyboard controller's key sinks without an X server: the PWM over a recording sink,
the choice of sink by platform, and the Windows SendInput records checked on Linux.

The X sink itself is exercised by tests/test_keyboard_controller.py (x11 tier);
SendInput has never run on Windows here, so these tests check what it would send.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from itertools import pairwise

import pytest

from engine.core.errors import DeviceError
from engine.driver import sendinput_keys
from engine.driver.controller import ControllerError, GamepadState
from engine.driver.keyboard import KeyboardController, KeyMap, open_key_sink
from engine.driver.sendinput_keys import (
    INPUT,
    INPUT_KEYBOARD,
    KEYEVENTF_EXTENDEDKEY,
    KEYEVENTF_KEYUP,
    KEYEVENTF_SCANCODE,
    SCAN_CODES,
    SendInputKeys,
    scan_code,
)
from engine.games.profile import load_profile, shipped_profiles

CODES = {"Left": 1, "Right": 2, "Up": 3, "Down": 4, "r": 5}
# Only ends a hung test: a passing one never waits this long, however busy the machine.
WAIT_S = 60.0


class RecordingSink:
    """A key sink that remembers what it was told, flush by flush."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.flushes: list[frozenset[int]] = []
        self.closed = False

    def codes(self, names: Sequence[str]) -> list[int]:
        unknown = [name for name in names if name not in CODES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a key of this sink")
        return [CODES[name] for name in names]

    def set_key(self, code: int, down: bool) -> None:
        (self.down.add if down else self.down.discard)(code)

    def flush(self) -> None:
        self.flushes.append(frozenset(self.down))

    def close(self) -> None:
        self.down.clear()
        self.closed = True


def test_the_pwm_drives_any_sink_and_every_key_goes_up_on_close():
    sink = RecordingSink()
    with KeyboardController(sink=sink) as keys:
        keys.send(GamepadState(steering=-1.0, right_trigger=1.0))
        # Down at once, in the caller's thread, before send returns.
        assert sink.flushes[-1] == {CODES["Left"], CODES["Up"]}
        keys.neutral()
        assert sink.flushes[-1] == frozenset()
        keys.send(GamepadState(steering=0.5))
        assert CODES["Right"] in sink.down
    assert sink.closed and sink.down == set()


def test_a_partial_value_taps_its_key_through_the_sink():
    sink = RecordingSink()
    with KeyboardController(period_s=0.04, min_press_s=0.01, sink=sink) as keys:
        keys.send(GamepadState(steering=0.5))
        # Several periods, however long they take here: the PWM thread releases and presses again.
        deadline = time.monotonic() + WAIT_S
        while _presses(sink, "Right") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert _presses(sink, "Right") >= 3
    assert any(CODES["Right"] not in flushed for flushed in sink.flushes[1:])


def _presses(sink: RecordingSink, key: str) -> int:
    """How many times `key` went down, flush by flush."""
    states = [CODES[key] in flushed for flushed in list(sink.flushes)]
    return sum(now and not before for before, now in pairwise([False, *states]))


def test_press_sends_one_key_down_then_up():
    sink = RecordingSink()
    with KeyboardController(sink=sink) as keys:
        keys.press("r", hold_s=0.01)
    assert frozenset({CODES["r"]}) in sink.flushes
    assert sink.flushes[-1] == frozenset()


def test_a_key_the_sink_cannot_press_is_refused_and_the_sink_closed():
    sink = RecordingSink()
    with pytest.raises(ControllerError, match=r"keyboard key map: 'F13' is not a key"):
        KeyboardController(KeyMap(brake="F13"), sink=sink)
    assert sink.closed
    with (
        KeyboardController(sink=RecordingSink()) as keys,
        pytest.raises(ControllerError, match=r"keyboard press: 'F13'"),
    ):
        keys.press("F13", hold_s=0.01)


def test_one_key_for_two_roles_is_refused():
    with pytest.raises(ControllerError, match="uses one key twice"):
        KeyboardController(KeyMap(brake="Up"), sink=RecordingSink())


def test_the_sink_is_chosen_by_platform(monkeypatch):
    monkeypatch.setattr(sendinput_keys, "_user32_send_input", lambda platform: len)
    assert isinstance(open_key_sink(["a", "d", "w", "s"], platform="win32"), SendInputKeys)
    with pytest.raises(ControllerError, match=r"keyboard key map: 'Hyper_L' has no Windows"):
        open_key_sink(["Hyper_L"], platform="win32")
    # Linux means XTest: with no X server there, the refusal names the display.
    with pytest.raises(ControllerError, match="cannot open the X display :4321"):
        open_key_sink(["Left"], display=":4321", platform="linux")
    with pytest.raises(ControllerError, match=r"no key sink for platform 'darwin'.*win32"):
        open_key_sink(["Left"], platform="darwin")


def test_the_sendinput_sink_refuses_to_load_user32_off_windows():
    with pytest.raises(ControllerError, match=r"for Windows .* not 'linux'.*XTest") as caught:
        SendInputKeys(["Left"], platform="linux")
    assert isinstance(caught.value, DeviceError)


def test_sendinput_records_are_scan_codes_with_the_extended_flag_for_arrows():
    sent: list[list[tuple[int, int, int]]] = []

    def send(events: ctypes.Array[INPUT]) -> int:
        sent.append([(event.type, event.u.ki.wScan, event.u.ki.dwFlags) for event in events])
        return len(events)

    sink = SendInputKeys(["Left", "Right", "w", "s"], send=send)
    left, _, w, _ = sink.codes(["Left", "Right", "w", "s"])
    sink.set_key(left, True)
    sink.set_key(w, True)
    sink.flush()
    sink.set_key(left, False)
    sink.flush()
    sink.flush()  # nothing queued: no call
    sink.close()
    scan = KEYEVENTF_SCANCODE
    assert sent[0] == [
        (INPUT_KEYBOARD, 0x4B, scan | KEYEVENTF_EXTENDEDKEY),
        (INPUT_KEYBOARD, 0x11, scan),
    ]
    assert sent[1] == [(INPUT_KEYBOARD, 0x4B, scan | KEYEVENTF_EXTENDEDKEY | KEYEVENTF_KEYUP)]
    # close: every mapped key up, in one call.
    assert [record[1] for record in sent[2]] == [0x4B, 0x4D, 0x11, 0x1F]
    assert all(record[2] & KEYEVENTF_KEYUP for record in sent[2])
    assert len(sent) == 3


def test_a_refused_sendinput_says_why():
    sink = SendInputKeys(["a"], send=lambda events: 0)
    sink.set_key(scan_code("a"), True)
    with pytest.raises(ControllerError, match=r"took 0 of 1 key events.*administrator"):
        sink.flush()


def test_the_input_record_has_windows_layout():
    # 64-bit Windows: 4-byte type, padding, then the 32-byte MOUSEINPUT-sized union.
    assert ctypes.sizeof(INPUT) == (40 if ctypes.sizeof(ctypes.c_void_p) == 8 else 28)


def test_every_shipped_profile_key_has_a_scan_code_and_unknown_names_are_refused():
    for name in shipped_profiles():
        profile = load_profile(name)
        keyboard = profile.input.keyboard
        for key in keyboard.steer_left, keyboard.steer_right, keyboard.accelerate, keyboard.brake:
            assert key in SCAN_CODES, (name, key)
        assert profile.recorder.pause_key in SCAN_CODES
    with pytest.raises(ValueError, match=r"'Hyper_L' has no Windows scan code.*F1-F12"):
        scan_code("Hyper_L")
    assert len(set(SCAN_CODES.values())) == len(SCAN_CODES)  # no two names share a key
