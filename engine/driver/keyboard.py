"""Drive a real game through the keyboard: analog pad values become key taps (Linux, XTest).

Example::

    translator = Translator(config.controller)
    with KeyboardController(KeyMap(accelerate="Up", brake="Down")) as keys:
        keys.send(translator.translate(steering=-0.4, throttle_brake=0.7))
        # Left is now held 40 % and Up 70 % of every 0.1 s period, until the next send

Most PC racing games read the keyboard, where a key is either down or up. The
2017 pygta5 project steered GTA V this way: a gentle left is the left key
tapped, held a fraction of each short period (pulse-width modulation). The
game's own smoothing turns the taps into a partial steer. Here the fraction is
the pad value: steering -0.4 holds the steer-left key 40 % of each period;
throttle_brake > 0 taps the accelerate key with that duty, < 0 the brake key.

Timing:
- A key whose value becomes non-zero goes down at once, in the caller's
  thread, and its period starts then; a key whose value becomes zero goes up at
  once. The decision reaches the X server within one request (`bench/keyboard.py`
  measures it), not after a wait for the next period.
- A background thread makes the timed edges in between. Each key has its own
  period, so calling `send` every frame with the same value does not restart
  it; a new value re-plans the current period.
- A press shorter than `min_press_s` would go unseen by a game that polls the
  keyboard once a frame, so small duties are carried over: 0.05 with a 0.1 s
  period and 0.01 s minimum becomes one 0.01 s press every other period, and a
  duty near 1 holds the key through the period instead of a too-short release.
  The average duty stays what was asked.

Every key goes up on every way out: `neutral`, `close`, leaving the `with` block
by return or exception, SIGTERM turned into SystemExit (the driver's
`sigterm_as_exit`), Ctrl-C, and interpreter exit (atexit). A SIGKILLed process
runs none of these, and the X server keeps XTest keys down after their client
is gone, so the controller also starts a watchdog child (`key_guard.py`) that
releases every mapped key when this process dies, however it died. (It sees
the death as the end of a pipe; a child forked without exec, which the "spawn"
start method used here never does, would hold that pipe open.)
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from Xlib import X
from Xlib.display import Display
from Xlib.error import ConnectionClosedError, DisplayError
from Xlib.ext import xtest

from engine.driver.controller import Controller, ControllerError, GamepadState
from engine.driver.key_guard import READY, keycodes_for, release

GUARD_SCRIPT = Path(__file__).with_name("key_guard.py")
# The guard connects to X and says ready in well under a second; a loaded machine gets slack.
GUARD_START_TIMEOUT_S = 15.0
GUARD_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class KeyMap:
    """Which keys (X keysym names: "Left", "a", "space") steer, accelerate and brake."""

    steer_left: str = "Left"
    steer_right: str = "Right"
    accelerate: str = "Up"
    brake: str = "Down"

    def names(self) -> list[str]:
        """The four keysym names, in field order."""
        return [getattr(self, field.name) for field in fields(self)]


class KeyboardController(Controller):
    """A keyboard for the driver: pad values in, duty-cycled XTest key presses out."""

    def __init__(
        self,
        keys: KeyMap = KeyMap(),  # frozen, so one shared default is safe
        period_s: float = 0.1,
        min_press_s: float = 0.01,
        display: str | None = None,
        guard: bool = True,
    ) -> None:
        if not 0.0 < min_press_s <= period_s / 2:
            raise ControllerError(
                f"keyboard min_press_s = {min_press_s} must be > 0 and at most half of "
                f"period_s = {period_s}: a shorter press goes unseen, a longer one leaves no "
                "room for a duty between 0 and 1"
            )
        self._display = _open_display(display)
        try:
            codes = _keycodes(self._display, keys)
            self._guard = _start_guard(self._display, keys) if guard else None
        except BaseException:
            self._display.close()
            raise
        self._keycodes = codes
        self._channels = [_Channel(code, period_s, min_press_s) for code in codes]
        self._lock = threading.Condition()  # over the X connection and the channels
        self._running = True
        self._thread = threading.Thread(target=self._run, name="keyboard-pwm", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def __enter__(self) -> KeyboardController:
        return self

    def send(self, state: GamepadState) -> None:
        """Hold each key for its share of the period from now on; a new key goes down at once."""
        steering, throttle = _finite(state.steering), _finite(state.throttle_brake)
        duties = (max(0.0, -steering), max(0.0, steering), max(0.0, throttle), max(0.0, -throttle))
        with self._lock:
            if not self._running:
                raise ControllerError("the keyboard controller is closed")
            now = time.monotonic()
            for channel, duty in zip(self._channels, duties, strict=True):
                channel.set_duty(min(1.0, duty), now)
            self._apply(now)
            self._lock.notify()  # the PWM thread re-plans its next wake-up

    def neutral(self) -> None:
        """Release every key now and keep them up until the next `send`."""
        with self._lock:
            for channel in self._channels:
                channel.set_duty(0.0, 0.0)
            if self._running:
                self._apply(time.monotonic())
                self._lock.notify()

    def press(self, key: str, hold_s: float) -> None:
        """Press and release one key by keysym name (e.g. a game's reset key for an unstuck).

        Meant for keys outside the map: a mapped key is the PWM's, which may press or
        release it in the meantime.
        """
        with self._lock:
            try:
                (keycode,) = keycodes_for(self._display, [key])
            except ValueError as error:
                raise ControllerError(f"keyboard press: {error}") from None
            xtest.fake_input(self._display, X.KeyPress, keycode)
            self._display.sync()
        try:
            time.sleep(hold_s)  # the game must see the key held for a few frames
        finally:
            with self._lock:
                xtest.fake_input(self._display, X.KeyRelease, keycode)
                self._display.sync()

    def close(self) -> None:
        """Release every key, stop the PWM thread and the guard, close the X connection."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._lock.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        try:
            with self._lock, contextlib.suppress(ConnectionClosedError, OSError):
                # Suppressed: a server that is gone (the game's Xvfb ended) holds no keys.
                for channel in self._channels:
                    channel.set_duty(0.0, 0.0)
                release(self._display, self._keycodes)
                self._display.close()
        finally:
            _stop_guard(self._guard)
            atexit.unregister(self.close)

    def _run(self) -> None:
        with self._lock:
            while self._running:
                now = time.monotonic()
                next_edge = self._apply(now)
                self._lock.wait(
                    timeout=None if math.isinf(next_edge) else max(0.0, next_edge - now)
                )

    def _apply(self, now: float) -> float:
        """Press or release what the plan says for `now`; return when the next edge is due."""
        changed = False
        next_edge = math.inf
        for channel in self._channels:
            want_down, edge = channel.plan(now)
            next_edge = min(next_edge, edge)
            if want_down != channel.down:
                xtest.fake_input(
                    self._display, X.KeyPress if want_down else X.KeyRelease, channel.keycode
                )
                channel.down = want_down
                changed = True
        if changed:
            self._display.sync()  # the key state is at the server when send() returns
        return next_edge


class _Channel:
    """One key's pulse-width modulation: its own period, on-time and carried remainder."""

    def __init__(self, keycode: int, period_s: float, min_press_s: float) -> None:
        self.keycode = keycode
        self.down = False
        self._period = period_s
        self._min_press = min_press_s
        self._duty = 0.0
        self._start = 0.0  # when the current period began
        self._on = 0.0  # how long the key is down in the current period
        self._carry = 0.0  # on-time owed to (or taken from) later periods by the rounding

    def set_duty(self, duty: float, now: float) -> None:
        """Take a new duty: from zero it starts a period now; otherwise it re-plans this one."""
        if duty == self._duty:
            return
        if duty <= 0.0:
            self._duty, self._on, self._carry = 0.0, 0.0, 0.0
            return
        if self._duty == 0.0:
            self._start = now
        else:
            self._advance(now)
        self._duty, self._carry = duty, 0.0
        self._on = self._round(duty * self._period)
        if not self.down and self._start + self._on - now < self._min_press:
            self._on = 0.0  # what is left of this period's press would be too short to see

    def plan(self, now: float) -> tuple[bool, float]:
        """Whether the key should be down at `now`, and when that next changes."""
        if self._duty == 0.0:
            return False, math.inf
        self._advance(now)
        end_of_press = self._start + self._on
        if now < end_of_press:
            return True, end_of_press
        return False, self._start + self._period

    def _advance(self, now: float) -> None:
        """Move to the period that holds `now` (whole periods: a late wake-up keeps the phase)."""
        if now < self._start + self._period:
            return
        # At least one: at exactly the period's end, rounding may make the quotient 0.999...
        self._start += self._period * max(1, math.floor((now - self._start) / self._period))
        self._on = self._round(self._duty * self._period + self._carry)

    def _round(self, wanted: float) -> float:
        """The on-time to use for `wanted`: none, the whole period, or as is; keep the rest."""
        if wanted < self._min_press:
            on = 0.0
        elif wanted > self._period - self._min_press:
            on = self._period
        else:
            on = wanted
        self._carry = min(self._period, max(-self._period, wanted - on))
        return on


def _keycodes(display: Display, keys: KeyMap) -> list[int]:
    try:
        codes = keycodes_for(display, keys.names())
    except ValueError as error:
        raise ControllerError(f"keyboard key map: {error}") from None
    if len(set(codes)) != len(codes):
        raise ControllerError(f"keyboard key map uses one key twice: {keys}")
    return codes


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _open_display(name: str | None) -> Display:
    try:
        display = Display(name)
    except (DisplayError, OSError) as error:
        shown = name or os.environ.get("DISPLAY") or "(DISPLAY is not set)"
        raise ControllerError(
            f"the keyboard controller cannot open the X display {shown}: {error}. It presses "
            "keys through XTest on the X server the game runs on; set DISPLAY to that server"
        ) from None
    if not display.has_extension("XTEST"):
        display.close()
        raise ControllerError(
            f"the X display {display.get_display_name()} has no XTEST extension, which the "
            "keyboard controller needs to press keys (Xorg and Xvfb have it unless started "
            "with -extension XTEST)"
        )
    return display


def _start_guard(display: Display, keys: KeyMap) -> subprocess.Popen[bytes]:
    """Start the watchdog and wait until it is connected, so no key goes down unguarded."""
    guard = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(GUARD_SCRIPT),
            "--display",
            display.get_display_name(),
            *keys.names(),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert guard.stdout is not None
    ready = threading.Event()
    line: list[bytes] = []

    def read_ready() -> None:
        line.append(guard.stdout.readline())
        ready.set()

    threading.Thread(target=read_ready, name="key-guard-ready", daemon=True).start()
    ready.wait(GUARD_START_TIMEOUT_S)
    if not line or line[0].decode().strip() != READY:
        guard.kill()
        guard.wait()
        raise ControllerError(
            f"the key guard ({GUARD_SCRIPT.name}) did not start within {GUARD_START_TIMEOUT_S} s "
            f"(exit code {guard.returncode}); see its error above"
        )
    guard.stdout.close()
    return guard


def _stop_guard(guard: subprocess.Popen[bytes] | None) -> None:
    """Close the guard's pipe (it releases the keys once more, harmlessly) and reap it."""
    if guard is None:
        return
    assert guard.stdin is not None
    guard.stdin.close()
    try:
        guard.wait(GUARD_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()
