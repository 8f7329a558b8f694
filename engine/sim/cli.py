"""`charles-stream sim`: play or watch the built-in driving game, in a window or headless.

Examples::

    charles-stream sim                                  # a window; drive with arrows/WASD
    charles-stream sim --autopilot                      # a window; the NPC drives
    charles-stream sim --autopilot --headless --seconds 60 --json

`--seconds` counts game time. Headless runs as fast as it can (rendering the
hood view every tick) unless `--realtime`; a window always runs in real time.
`--start-on-enter` (a window) shows the first frame and starts the game clock
at a line on stdin, once a driver or recorder started from outside is ready.
With `--json` the last line printed is one JSON object:
{"seed", "seconds", "frames", "fps", "distance_m", "laps", "offroad_events",
"progress_m", "metres_per_offroad"}: the last two are `eval`'s score of whoever
drove (engine/sim/score.py), for a scorer watching a game window driven from
outside (the driver itself never sees them).

`--latency-marker FILE` (a window only) numbers each hood frame in its
top-left corner and logs, as JSON lines in FILE, when each numbered frame was
on screen and when the game read each key event, both on `time.monotonic()`
(engine/sim/marker.py): `bench/driver.py --window-latency` measures with it
how long a driver that sees only the window takes from a frame drawn to its
key reaching the game. The marker is in the model's view: never for a stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import select
import sys
from typing import TYPE_CHECKING

from engine.core.cli_args import add_config_argument, config_from, seed_value
from engine.core.errors import DeviceError, UsageError

if TYPE_CHECKING:
    from engine.sim.game import Game
    from engine.sim.runner import RunStats

log = logging.getLogger("charles.sim")

HEADLESS_DEFAULT_SECONDS = 10.0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `sim`."""
    parser = subparsers.add_parser(
        "sim",
        help="run the built-in driving game",
        description="Run the built-in driving game in a window (keyboard or autopilot) "
        "or headless.",
    )
    parser.add_argument("--autopilot", action="store_true", help="the NPC driver drives")
    parser.add_argument("--headless", action="store_true", help="no window: render off-screen")
    parser.add_argument(
        "--realtime", action="store_true", help="headless: pace game time to the wall clock"
    )
    parser.add_argument(
        "--seconds",
        type=game_seconds,
        default=None,
        metavar="N",
        help="game seconds to run (default: until the window closes or Ctrl-C; "
        f"{HEADLESS_DEFAULT_SECONDS:g} headless without --realtime)",
    )
    parser.add_argument(
        "--seed", type=seed_value, default=None, metavar="S", help="track seed (default: sim.seed)"
    )
    parser.add_argument(
        "--start-on-enter",
        action="store_true",
        help="a window: show the first frame and start the game at a line on stdin",
    )
    parser.add_argument(
        "--latency-marker",
        metavar="FILE",
        help="a window: number each hood frame in its top-left corner and log (JSON lines in "
        "FILE) when each frame was shown and each key event read, for bench/driver.py "
        "--window-latency",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    add_config_argument(parser)
    parser.set_defaults(handler=run)


def game_seconds(text: str) -> float:
    """argparse type of --seconds: a positive, finite number of game seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; give game seconds, e.g. --seconds 30"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; give a positive, finite number of game seconds"
        )
    return value


def run(args: argparse.Namespace) -> int:
    """Run the game as the flags say; log a summary and print it as JSON with --json."""
    config = config_from(args)
    if args.latency_marker and args.headless:
        raise UsageError(
            "--latency-marker numbers the frames of the game's window; it cannot be used with "
            "--headless (accepted: --latency-marker FILE with a window)"
        )
    windowed = _use_window(args.headless, config.sim.window)
    if args.latency_marker and not windowed:
        raise UsageError(
            f"--latency-marker needs the game's window, and sim.window = {config.sim.window!r} "
            "runs headless here; accepted: a display and sim.window = 'on' or 'auto'"
        )
    # Heavy imports (OpenCV, pygame, the renderers) wait until a run is really wanted.
    from engine.sim.autopilot import Autopilot
    from engine.sim.game import Game
    from engine.sim.runner import run_headless

    seed = config.sim.seed if args.seed is None else args.seed
    game = Game(config.sim, seed=seed)
    pilot = Autopilot(config.autopilot, seed=seed) if args.autopilot else None
    log.info(
        "sim: seed %d, track %.0f m, %s, %s",
        seed,
        game.track.length_m,
        "window" if windowed else ("headless, real time" if args.realtime else "headless"),
        "autopilot" if pilot else ("keyboard" if windowed else "no driver"),
    )
    stats = None
    if windowed:
        from engine.sim.marker import LatencyMarker, MarkerLog
        from engine.sim.window import WindowUnavailable, run_window

        marker = LatencyMarker(MarkerLog(args.latency_marker)) if args.latency_marker else None
        try:
            start = enter_pressed if args.start_on_enter else None
            stats = run_window(game, pilot, args.seconds, start=start, marker=marker)
        except WindowUnavailable as error:
            if marker is not None:
                raise DeviceError(
                    f"--latency-marker needs the game's window, but {error}"
                ) from None
            if config.sim.window == "on":
                raise DeviceError(f"sim.window = 'on' but {error}; run with --headless") from None
            log.warning("%s: running headless (sim.window = 'auto')", error)
        finally:
            if marker is not None:
                marker.log.close()
    if stats is None:
        seconds = args.seconds
        if seconds is None and not args.realtime:
            seconds = HEADLESS_DEFAULT_SECONDS
        stats = run_headless(game, pilot, seconds, realtime=args.realtime)
    summary = run_summary(game, stats)
    telemetry = game.telemetry()
    log.info(
        "sim: %.1f game s, %d frames at %.0f fps, %.0f m, %d laps, %d off-road",
        summary["seconds"],
        stats.frames,
        stats.fps,
        telemetry.distance_m,
        telemetry.laps,
        telemetry.offroad_events,
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


def enter_pressed() -> bool:
    """Whether a line (or the end of input) waits on stdin; reads it. Never blocks the game.

    `--start-on-enter`: a window opens and waits until whoever started it (a person, a scorer
    getting a driver ready, a recorder) is ready and says so.
    """
    readable, _, _ = select.select([sys.stdin], [], [], 0)
    if readable:
        sys.stdin.readline()
    return bool(readable)


def run_summary(game: Game, stats: RunStats) -> dict[str, float | int]:
    """What `--json` prints about a run: the game's figures and the eval score of the driving."""
    from engine.sim.score import metres_per_offroad

    telemetry = game.telemetry()
    return {
        "seed": game.seed,
        "seconds": round(game.time, 3),
        "frames": stats.frames,
        "fps": round(stats.fps, 1),
        "distance_m": round(telemetry.distance_m, 1),
        "laps": telemetry.laps,
        "offroad_events": telemetry.offroad_events,
        "progress_m": round(stats.progress_m, 1),
        "metres_per_offroad": round(
            metres_per_offroad(stats.progress_m, telemetry.offroad_events), 1
        ),
    }


def _use_window(headless: bool, mode: str) -> bool:
    """Whether to open a window: never with --headless or window = "off"; "auto" needs a display."""
    if headless or mode == "off":
        return False
    from engine.sim.window import display_problem

    problem = display_problem()
    if problem is None:
        return True
    if mode == "on":
        raise DeviceError(
            f"sim.window = 'on' but {problem}; "
            "run with --headless, or set sim.window = 'auto' or 'off'"
        )
    log.warning("%s: running headless (sim.window = 'auto')", problem)
    return False
