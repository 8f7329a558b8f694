"""Drive a real game through the keyboard: analog pad values become key taps (XTest, SendInput).

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
is gone, so the X sink also starts a watchdog child (`key_guard.py`) that
releases every mapped key when this process dies, however it died.

Where the keys go is a `KeySink`, picked by `sys.platform`: `xtest_keys.py`
(Linux: XTest on the game's X server, with the guard) or `sendinput_keys.py`
(Windows: SendInput scan codes, untested here). The PWM plan below knows
nothing of either; it asks the sink for key codes and tells it which go down.
"""

from __future__ import annotations

import atexit
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from engine.driver.controller import Controller, ControllerError, GamepadState


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


class KeySink(Protocol):
    """Where key presses go: the platform's way of typing into the game."""

    def codes(self, names: Sequence[str]) -> list[int]:
        """The sink's codes for keysym names; ValueError names one it cannot press."""
        ...

    def set_key(self, code: int, down: bool) -> None:
        """Queue a press or a release."""
        ...

    def flush(self) -> None:
        """Deliver what was queued: when this returns, the game can see it."""
        ...

    def close(self) -> None:
        """Release every key of the map it was opened for and let go of the device."""
        ...


def open_key_sink(
    names: Sequence[str],
    *,
    display: str | None = None,
    guard: bool = True,
    platform: str | None = None,
) -> KeySink:
    """The key sink for this platform (`sys.platform`), opened for the mapped keys `names`.

    Raises ControllerError naming an unknown key or a missing display, and for a
    platform that has neither XTest nor SendInput.
    """
    platform = platform or sys.platform
    try:
        if platform.startswith("linux"):
            # Imported here: Xlib is a Linux-only dependency.
            from engine.driver.xtest_keys import XTestKeys

            return XTestKeys(names, display=display, guard=guard)
        if platform == "win32":
            from engine.driver.sendinput_keys import SendInputKeys

            return SendInputKeys(names, platform=platform)
    except ValueError as error:
        raise ControllerError(f"keyboard key map: {error}") from None
    raise ControllerError(
        f"the keyboard controller has no key sink for platform {platform!r}; "
        "accepted: linux (XTest) and win32 (SendInput)"
    )


class KeyboardController(Controller):
    """A keyboard for the driver: pad values in, duty-cycled key presses out (XTest or SendInput).

    `sink` replaces the platform's own (tests, or another way of typing); `display`
    and `guard` are the X sink's.
    """

    def __init__(
        self,
        keys: KeyMap = KeyMap(),  # frozen, so one shared default is safe
        period_s: float = 0.1,
        min_press_s: float = 0.01,
        display: str | None = None,
        guard: bool = True,
        sink: KeySink | None = None,
    ) -> None:
        if not 0.0 < min_press_s <= period_s / 2:
            raise ControllerError(
                f"keyboard min_press_s = {min_press_s} must be > 0 and at most half of "
                f"period_s = {period_s}: a shorter press goes unseen, a longer one leaves no "
                "room for a duty between 0 and 1"
            )
        self._sink = sink or open_key_sink(keys.names(), display=display, guard=guard)
        try:
            codes = _keycodes(self._sink, keys)
        except BaseException:
            self._sink.close()
            raise
        # The X sink's watchdog process, if it started one (None for other sinks).
        self._guard = getattr(self._sink, "guard", None)
        self._channels = [_Channel(code, period_s, min_press_s) for code in codes]
        self._lock = threading.Condition()  # over the sink and the channels
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
                (code,) = self._sink.codes([key])
            except ValueError as error:
                raise ControllerError(f"keyboard press: {error}") from None
            self._sink.set_key(code, True)
            self._sink.flush()
        try:
            time.sleep(hold_s)  # the game must see the key held for a few frames
        finally:
            with self._lock:
                self._sink.set_key(code, False)
                self._sink.flush()

    def close(self) -> None:
        """Release every key, stop the PWM thread, close the sink (and the X sink's guard)."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._lock.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        try:
            with self._lock:
                for channel in self._channels:
                    channel.set_duty(0.0, 0.0)
                self._sink.close()
        finally:
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
                self._sink.set_key(channel.keycode, want_down)
                channel.down = want_down
                changed = True
        if changed:
            self._sink.flush()  # the key state is at the server when send() returns
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


def _keycodes(sink: KeySink, keys: KeyMap) -> list[int]:
    try:
        codes = sink.codes(keys.names())
    except ValueError as error:
        raise ControllerError(f"keyboard key map: {error}") from None
    if len(set(codes)) != len(codes):
        raise ControllerError(f"keyboard key map uses one key twice: {keys}")
    return codes


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
