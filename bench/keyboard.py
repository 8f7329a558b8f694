"""Benchmark the keyboard controller: key-event latency against 2 ms, and duty-cycle accuracy.

    .venv/bin/python bench/keyboard.py [--decisions 300] [--torcs]

On a private Xvfb (with --torcs: the one TORCS races on, a real game drawing
its frames on the same X server and cores; it first prints TORCS's frame rate
as mss sees it, standing and with Up held through the controller):

1. Latency from a decision to the X server. A decision is a `send` that changes
   a key (steering -1.0, then 0.0, alternately, 20-40 ms apart). It ends when
   another process, polling XQueryKeymap on its own connection, sees the key's
   new state. Both sides stamp CLOCK_MONOTONIC. Target: p95 <= 2 ms (issue 13).
   The limit measured in the same run: the bare XTest request (fake_input +
   sync on a raw connection) timed the same way, so the ratio shows what the
   controller adds to what X itself costs.
2. Duty cycle: steering -0.4 and throttle 0.7 for a few seconds; the held
   fraction of Left and Up that the observer saw, against 0.4 and 0.7.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

from engine.driver.controller import GamepadState
from engine.driver.keyboard import KeyboardController, KeyMap
from tests.torcs_process import TorcsProcess, XvfbDisplay

TARGET_P95_MS = 2.0
KEYS = KeyMap().names()
PERIOD_S = 0.1
DUTY_SECONDS = 5.0
DUTIES = {"Left": 0.4, "Up": 0.7}
FPS_SECONDS = 5.0

Transition = tuple[float, str, bool]  # (monotonic time, key, down)


def main() -> None:
    """Run both measurements and print them with their ratios."""
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--decisions", type=int, default=300)
    arguments.add_argument("--torcs", action="store_true", help="measure while TORCS races")
    options = arguments.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if options.torcs:
            with TorcsProcess(Path(root)) as torcs:
                _torcs_frame_rate(torcs)
                _measure(torcs.display, options.decisions)
        else:
            with XvfbDisplay() as xvfb:
                _measure(xvfb.name, options.decisions)


def _torcs_frame_rate(torcs: TorcsProcess) -> None:
    """TORCS's frame rate as mss sees it (changed frames/s), standing and accelerating."""
    fps, standing = torcs.motion(FPS_SECONDS)
    print(f"TORCS {torcs.width}x{torcs.height} on {torcs.display}, {FPS_SECONDS:.0f} s each:")
    print(f"  standing on the grid: {fps:.1f} frames/s (frame motion {standing:.2f})")
    with KeyboardController(display=torcs.display) as keys:
        keys.send(GamepadState(right_trigger=1.0))
        fps, driving = torcs.motion(FPS_SECONDS)
        keys.send(GamepadState(left_trigger=1.0))
        time.sleep(2.0)  # stopped again, so the game draws the same scene for what follows
    print(f"  accelerating (Up held): {fps:.1f} frames/s (frame motion {driving:.2f})")


def _measure(display: str, decisions: int) -> None:
    context = get_context("spawn")
    results, sink = context.Pipe(duplex=False)
    stop = context.Event()
    ready = context.Event()
    watcher = context.Process(target=watch_keys, args=(display, ready, stop, sink))
    watcher.start()
    ready.wait()

    connection = Display(display)
    left = connection.keysym_to_keycode(XK.string_to_keysym("Left"))

    def bare(down: bool) -> None:
        xtest.fake_input(connection, X.KeyPress if down else X.KeyRelease, left)
        connection.sync()

    bare_decisions = _decide(bare, decisions)
    with KeyboardController(period_s=PERIOD_S, display=display) as keys:
        controller_decisions = _decide(
            lambda down: keys.send(GamepadState(steering=-1.0 if down else 0.0)), decisions
        )
        duty_start = time.monotonic()
        keys.send(GamepadState(steering=-DUTIES["Left"], right_trigger=DUTIES["Up"]))
        time.sleep(DUTY_SECONDS)
        keys.neutral()
        duty_end = time.monotonic()
    stop.set()
    transitions: list[Transition] = results.recv()
    watcher.join()
    connection.close()

    bare_ms = _latencies_ms(bare_decisions, transitions)
    controller_ms = _latencies_ms(controller_decisions, transitions)
    print(f"decision -> X server key state, {decisions} decisions each (ms):")
    for label, values in (("bare XTest (limit)", bare_ms), ("KeyboardController", controller_ms)):
        print(
            f"  {label:20s} p50 {_percentile(values, 50):.3f}  p95 {_percentile(values, 95):.3f}"
            f"  max {max(values):.3f}  seen {len(values)}/{decisions}"
        )
    p95 = _percentile(controller_ms, 95)
    print(
        f"  ratio p95 / 2 ms target: {p95 / TARGET_P95_MS:.2f}"
        f" ({'met' if p95 <= TARGET_P95_MS else 'MISSED'});"
        f" controller p95 / bare p95: {p95 / _percentile(bare_ms, 95):.2f}"
    )
    print(f"duty cycle over {DUTY_SECONDS:.0f} s, period {PERIOD_S} s:")
    for key, duty in DUTIES.items():
        held = _held_fraction(transitions, key, duty_start, duty_end)
        print(f"  {key:5s} asked {duty:.2f}  held {held:.3f}  error {held - duty:+.3f}")


def _decide(apply: Callable[[bool], None], count: int) -> list[tuple[float, bool]]:
    """Alternate press and release, 20-40 ms apart; return (when decided, wanted down)."""
    decisions = []
    for index in range(count):
        time.sleep(random.uniform(0.02, 0.04))
        down = index % 2 == 0
        decided = time.monotonic()
        apply(down)
        decisions.append((decided, down))
    time.sleep(0.05)
    return decisions


def _latencies_ms(
    decisions: list[tuple[float, bool]], transitions: list[Transition]
) -> list[float]:
    left = [(when, down) for when, key, down in transitions if key == "Left"]
    latencies = []
    for decided, wanted in decisions:
        seen = next((when for when, down in left if when >= decided and down == wanted), None)
        if seen is not None:
            latencies.append((seen - decided) * 1000.0)
    return latencies


def _held_fraction(transitions: list[Transition], key: str, start: float, end: float) -> float:
    down, since, held = False, start, 0.0
    for when, name, state in transitions:
        if name != key or when < start:
            down = state if name == key else down
            continue
        if when > end:
            break
        if down:
            held += when - since
        down, since = state, when
    if down:
        held += end - since
    return held / (end - start)


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100)[percent - 1]


def watch_keys(display: str, ready: Event, stop: Event, sink: Connection) -> None:
    """Poll XQueryKeymap as fast as possible; send back every change of the mapped keys."""
    connection = Display(display)
    codes = {name: connection.keysym_to_keycode(XK.string_to_keysym(name)) for name in KEYS}
    previous = dict.fromkeys(KEYS, False)
    transitions: list[Transition] = []
    ready.set()
    while not stop.is_set():
        keymap = connection.query_keymap()
        now = time.monotonic()
        for name, code in codes.items():
            down = bool(keymap[code // 8] >> (code % 8) & 1)
            if down != previous[name]:
                transitions.append((now, name, down))
                previous[name] = down
    sink.send(transitions)
    connection.close()


if __name__ == "__main__":
    main()
