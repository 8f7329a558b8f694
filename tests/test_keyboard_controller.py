"""The keyboard controller on a real X server (Xvfb): duty cycles, and keys released on every exit.

Key state is always read the way a game would see it, from the X server through
a second connection (XQueryKeymap), never from the controller's own bookkeeping.
Timed measurements sample in a separate process, so the sampler and the PWM
thread do not take turns on one interpreter lock.
"""

from __future__ import annotations

import math
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

from engine.driver.controller import ControllerError, GamepadState
from engine.driver.keyboard import KeyboardController, KeyMap, _Channel
from tests.torcs_process import XvfbDisplay

pytestmark = pytest.mark.x11

REPO = Path(__file__).resolve().parents[1]
KEYS = KeyMap().names()  # Left, Right, Up, Down
PERIOD_S = 0.1
SAMPLE_S = 4.0  # 40 periods: scheduling hiccups on a busy machine average out
DUTY_TOLERANCE = 0.07
CHILD_READY_TIMEOUT_S = 60.0  # a child imports the controller; slow when the cores are busy
RELEASE_TIMEOUT_S = 20.0

# A process that holds Left and Up until it is stopped, the way a driver would:
# SIGTERM becomes SystemExit (the driver's `sigterm_as_exit`), Ctrl-C KeyboardInterrupt.
HOLDER = """
import sys, time
from engine.core.shutdown import sigterm_as_exit
from engine.driver.controller import GamepadState
from engine.driver.keyboard import KeyboardController
display, guard = sys.argv[1], sys.argv[2] == "guard"
with sigterm_as_exit(), KeyboardController(display=display, guard=guard) as keys:
    keys.send(GamepadState(steering=-1.0, right_trigger=1.0))
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def display() -> Iterator[str]:
    """A private Xvfb (-noreset: a server reset would let go of every key and hide a leak)."""
    with XvfbDisplay() as xvfb:
        yield xvfb.name


@pytest.fixture
def observer(display: str) -> Iterator[Display]:
    """A second X connection that reads the key state, as the game would."""
    connection = Display(display)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (GamepadState(steering=-0.4, right_trigger=0.7), {"Left": 0.4, "Up": 0.7}),
        (GamepadState(steering=0.25, left_trigger=0.5), {"Right": 0.25, "Down": 0.5}),
    ],
    ids=["left-and-accelerate", "right-and-brake"],
)
def test_each_key_is_held_its_value_of_every_period(display, state, expected):
    with KeyboardController(period_s=PERIOD_S, display=display) as keys:
        keys.send(state)
        held, presses = _sample_in_another_process(display, SAMPLE_S)
    for name in KEYS:
        assert held[name] == pytest.approx(expected.get(name, 0.0), abs=DUTY_TOLERANCE), name
    for name in expected:
        # Taps, once a period, not a key held down throughout.
        assert 0.75 * SAMPLE_S / PERIOD_S <= presses[name] <= 1.1 * SAMPLE_S / PERIOD_S + 1, name


def test_a_key_goes_down_when_send_returns_and_full_value_holds_it(display, observer):
    with KeyboardController(period_s=PERIOD_S, display=display) as keys:
        keys.send(GamepadState(steering=1.0))
        assert _down(observer) == {"Right"}
        time.sleep(3 * PERIOD_S)
        assert _down(observer) == {"Right"}


def test_neutral_releases_every_key_at_once_and_keeps_them_up(display, observer):
    with KeyboardController(period_s=PERIOD_S, display=display) as keys:
        keys.send(GamepadState(steering=-1.0, right_trigger=1.0))
        assert _down(observer) == {"Left", "Up"}
        keys.neutral()
        assert _down(observer) == set()
        time.sleep(3 * PERIOD_S)
        assert _down(observer) == set()


def test_an_exception_inside_the_with_block_releases_every_key(display, observer):
    with (
        pytest.raises(RuntimeError, match="the model crashed"),
        KeyboardController(display=display) as keys,
    ):
        keys.send(GamepadState(steering=-1.0, right_trigger=1.0))
        assert _down(observer) == {"Left", "Up"}
        raise RuntimeError("the model crashed")
    assert _down(observer) == set()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_process_releases_its_keys_itself(display, observer, stop):
    holder = _start_holder(display, guard=False)
    assert _down(observer) == {"Left", "Up"}
    holder.send_signal(stop)
    holder.wait(RELEASE_TIMEOUT_S)
    assert _down(observer) == set()


def test_a_sigkilled_process_has_its_keys_released_by_its_guard(display, observer):
    holder = _start_holder(display, guard=True)
    assert _down(observer) == {"Left", "Up"}
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while _down(observer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _down(observer) == set()


def test_without_a_guard_the_x_server_keeps_a_sigkilled_process_key_down(display, observer):
    # Why the guard exists: X does not release XTest keys when their client dies.
    holder = _start_holder(display, guard=False)
    holder.kill()
    holder.wait()
    time.sleep(1.0)
    assert _down(observer) == {"Left", "Up"}
    for name in ("Left", "Up"):
        xtest.fake_input(observer, X.KeyRelease, _keycode(observer, name))
    observer.sync()


def test_close_ends_the_guard_and_later_sends_are_refused(display):
    keys = KeyboardController(display=display)
    guard = keys._guard
    keys.close()
    assert guard is not None and guard.returncode == 0
    with pytest.raises(ControllerError, match="closed"):
        keys.send(GamepadState(steering=0.5))


@pytest.mark.parametrize("duty", [0.03, 0.05, 0.4, 0.95, 0.99])
def test_the_pwm_plan_keeps_the_average_duty_and_never_presses_too_briefly(duty):
    # The plan alone, on a simulated clock: what the key would do, edge by edge.
    period, min_press = 0.1, 0.01
    channel = _Channel(keycode=1, period_s=period, min_press_s=min_press)
    channel.set_duty(duty, now=0.0)
    now, held, press_began = 0.0, 0.0, None
    shortest_press = math.inf
    while now < 200 * period:
        down, next_edge = channel.plan(now)
        if down and press_began is None:
            press_began = now
        if not down and press_began is not None:
            shortest_press = min(shortest_press, now - press_began)
            press_began = None
        channel.down = down
        step = min(next_edge, 200 * period) - now
        held += step if down else 0.0
        now += step
    assert held / now == pytest.approx(duty, abs=0.005)
    assert shortest_press >= min_press - 1e-9


def test_an_unknown_key_name_is_refused_with_examples(display):
    with pytest.raises(ControllerError, match=r"'Upp' is not an X keysym name.*Left"):
        KeyboardController(KeyMap(accelerate="Upp"), display=display)


def test_a_missing_x_display_is_refused_naming_it():
    with pytest.raises(ControllerError, match="cannot open the X display :4321"):
        KeyboardController(display=":4321")


def _down(observer: Display) -> set[str]:
    keymap = observer.query_keymap()
    return {name for name in KEYS if _is_down(keymap, _keycode(observer, name))}


def _keycode(connection: Display, name: str) -> int:
    return connection.keysym_to_keycode(XK.string_to_keysym(name))


def _is_down(keymap: list[int], keycode: int) -> bool:
    return bool(keymap[keycode // 8] >> (keycode % 8) & 1)


def _start_holder(display: str, guard: bool) -> subprocess.Popen[bytes]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, display, "guard" if guard else "no-guard"],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], CHILD_READY_TIMEOUT_S)
    line = holder.stdout.readline() if ready else b""
    if line.strip() != b"holding":
        holder.kill()
        holder.wait()
        pytest.fail(f"the key-holding child did not start (exit code {holder.returncode})")
    return holder


def _sample_in_another_process(
    display: str, seconds: float
) -> tuple[dict[str, float], dict[str, int]]:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(held_fractions, display, seconds).result()


def held_fractions(display: str, seconds: float) -> tuple[dict[str, float], dict[str, int]]:
    """Poll the server's key state for `seconds`: each key's held fraction and press count."""
    connection = Display(display)
    codes = {name: _keycode(connection, name) for name in KEYS}
    held = dict.fromkeys(KEYS, 0.0)
    presses = dict.fromkeys(KEYS, 0)
    previous: dict[str, bool] | None = None
    start = last = time.monotonic()
    while last - start < seconds:
        keymap = connection.query_keymap()
        now = time.monotonic()
        state = {name: _is_down(keymap, code) for name, code in codes.items()}
        if previous is not None:
            for name in KEYS:
                held[name] += now - last if previous[name] else 0.0
                presses[name] += state[name] and not previous[name]
        previous, last = state, now
    connection.close()
    return {name: held[name] / (last - start) for name in KEYS}, presses
