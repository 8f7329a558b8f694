"""Frame rate of the built-in game on ONE CPU core: headless views and physics, then its windows.

Usage::

    .venv/bin/python bench/sim.py [--seconds 5] [--seed 1]
    DISPLAY=:99 .venv/bin/python bench/sim.py          # adds the window figures (e.g. Xvfb)

Each figure is measured over `--seconds` of wall time with the NPC autopilot
driving (so the camera really moves through the scenery), after a warm-up.
The process is pinned to one core and every library is told to use one
thread. Printed ratios compare with the 30 FPS the pipeline needs and with
the 300 FPS target (10x headroom) of the hood view, in the same run.

With a display, the window path (`engine.sim.window`) is measured too: both
views put on screen from frames rendered beforehand (the window's own cost),
tick + render + show as fast as possible, and `run_window` in real time at
30 and 120 ticks/s, where frames shown per tick says how many were dropped.
The X server is another process and is not pinned.
"""

from __future__ import annotations

import os

# Before numpy/OpenCV load: one thread each, so "one core" means one core.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402

from engine.core.config import AutopilotConfig, SimConfig  # noqa: E402
from engine.sim.autopilot import Autopilot  # noqa: E402
from engine.sim.game import Game  # noqa: E402

PIPELINE_FPS = 30.0
TARGET_HOOD_FPS = 300.0


def main() -> None:
    """Measure and print frames per second and the ratios against 30 and 300 FPS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wall seconds per measurement")
    parser.add_argument("--seed", type=int, default=1, help="track seed")
    args = parser.parse_args()
    core = pin_to_one_core()
    cv2.setNumThreads(1)
    game = Game(SimConfig(), seed=args.seed)
    pilot = Autopilot(AutopilotConfig(), seed=args.seed)

    def drive() -> None:
        game.set_controls(pilot.decide(game))
        game.tick()

    def hood() -> None:
        drive()
        game.render_hood()

    def hood_and_chase() -> None:
        drive()
        game.render_hood()
        game.render_chase()

    hood_fps = rate(hood, args.seconds)
    both_fps = rate(hood_and_chase, args.seconds)
    physics_hz = rate(drive, args.seconds)
    config = game.config
    print(
        f"built-in game, seed {args.seed}, one core (cpu {core}), "
        f"OpenCV threads {cv2.getNumThreads()}"
    )
    print(
        f"hood {config.hood_width}x{config.hood_height}:        {hood_fps:8.1f} fps  "
        f"= {hood_fps / PIPELINE_FPS:5.1f}x the {PIPELINE_FPS:.0f} fps pipeline, "
        f"{hood_fps / TARGET_HOOD_FPS:4.2f}x the {TARGET_HOOD_FPS:.0f} fps target"
    )
    print(
        f"hood + chase {config.chase_width}x{config.chase_height}: {both_fps:8.1f} fps  "
        f"= {both_fps / PIPELINE_FPS:5.1f}x the {PIPELINE_FPS:.0f} fps pipeline"
    )
    print(f"physics + autopilot only:  {physics_hz:8.0f} ticks/s")
    window_figures(game, pilot, drive, args.seconds)


def window_figures(game: Game, pilot: Autopilot, drive: Callable[[], None], seconds: float) -> None:
    """Print the window path's frame rates, or why there is no window to measure."""
    from engine.sim.window import display_problem, open_windows, run_window

    problem = display_problem()
    if problem is not None:
        print(f"windows: not measured ({problem})")
        return
    hood, chase = game.render_hood(), game.render_chase()
    windows = open_windows(game)
    try:

        def present() -> None:
            windows.show(hood, chase)
            windows.poll(wait_s=0.0)

        def play() -> None:
            drive()
            windows.show(game.render_hood(), game.render_chase())
            windows.poll(wait_s=0.0)

        present_fps = rate(present, seconds)
        play_fps = rate(play, seconds)
    finally:
        windows.close()
    print(f"windows hood + chase, shown from ready frames: {present_fps:8.1f} fps")
    print(f"windows, tick + render + show, no pacing:      {play_fps:8.1f} fps")
    for tick_hz in (30.0, 120.0):
        paced = Game(SimConfig(tick_hz=tick_hz), seed=game.seed)
        stats = run_window(paced, Autopilot(pilot.config, seed=game.seed), seconds)
        print(
            f"windows in real time at {tick_hz:3.0f} ticks/s:           {stats.fps:8.1f} fps  "
            f"= {stats.fps / tick_hz:4.2f} frames shown per tick"
        )


def pin_to_one_core() -> int | str:
    """Restrict this process to a single CPU (Linux); returns which, or 'unpinned' elsewhere."""
    if not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def rate(step: Callable[[], None], seconds: float) -> float:
    """Calls of `step` per wall second, measured for `seconds` after a short warm-up."""
    for _ in range(30):
        step()
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        step()
        calls += 1
    return calls / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
