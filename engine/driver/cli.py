"""`charles-stream drive`: run the driver standalone, with the Player Console in the terminal.

Example::

    charles-stream drive --model model_0000_demo_v1 --sim --seconds 60 --json
    charles-stream drive --model model_0003_xception_v1 --capture mss    # a real game + vgamepad
    charles-stream drive --model model_0000_demo_v1 --game torcs   # its window, its keys (XTest)

`--json` prints one line at the end: {"pps", "fps", "distance_m",
"offroad_events", "unstucks", "convcam_ms", "stages", ...}; distance and off-road
events only with the built-in game (null otherwise). "stages" holds each loop
stage's p50/p95 in ms over its last turns, {"predict": {"p50_ms", "p95_ms",
"turns"}, ...}, from the same `StageTimes` as the Player Console's status. A SIGTERM or Ctrl-C stops
the drive the same way `--seconds` does: the pad goes neutral, the summary is
printed, and the exit code says what stopped it (143 for SIGTERM, 130 for
Ctrl-C). With the built-in game the summary's `final_controls` are the
controls the game itself applies after the driver let go - proof it is neutral.
A virtual gamepad that cannot be created, or a screen that cannot be
captured, exits 1 with what to fix; a bad flag or config value exits 2.

New checkpoints of the version (a trainer running next to it) are picked up
by polling its directory and applied at the next unstuck or reload interval.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from rich.console import Console
from rich.live import Live

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_float,
)
from engine.core.config import Config
from engine.core.errors import ConfigError
from engine.core.memory import released_memory
from engine.core.shutdown import sigterm_as_exit
from engine.core.wire import DriverStage, DriverStatus, Message, StageTime
from engine.driver.console import player_table

log = logging.getLogger("charles.drive")

EXIT_NO_DEVICE = 1
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 128 + signal.SIGINT
# How often a standalone driver looks for new checkpoints of its version.
CHECKPOINT_POLL_S = 2.0
# Without a terminal, the Player Console becomes a log line this often.
_LOG_STATUS_S = 5.0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `drive`."""
    parser = subparsers.add_parser(
        "drive", help="drive with a model version: capture, predict, gamepad, unstuck"
    )
    parser.add_argument("--model", required=True, metavar="VERSION", help="e.g. model_0000_demo_v1")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--sim", action="store_true", help="drive the built-in game (capture and pad)"
    )
    source.add_argument(
        "--capture", choices=("sim", "mss"), help="frame source (default: [capture] backend)"
    )
    source.add_argument(
        "--game",
        metavar="PROFILE",
        help="a game profile (`charles-stream games list`): capture its window, press its keys "
        "(default: [driver] game)",
    )
    parser.add_argument(
        "--seconds", type=positive_float, help="stop after this long (default: until stopped)"
    )
    parser.add_argument("--seed", type=int, help="built-in game's track seed (default: [sim] seed)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_drive)


def run_drive(args: argparse.Namespace) -> int:
    """Wire the driver's parts from config and flags, drive, report; returns the exit code."""
    config = _with_flags(config_from(args), args)
    data_dir = str(data_dir_from(args, config))
    with sigterm_as_exit():
        # Heavy imports after the handler is in place: a SIGTERM while TensorFlow loads is clean.
        from engine.driver.inference import set_tensorflow_threads

        set_tensorflow_threads(config.driver)
        from engine.driver.controller import ControllerError

        try:
            with released_memory(config.supervisor.release_memory_s):
                return _drive(config, args, data_dir)
        except ControllerError as error:
            log.error("%s", error)
            return EXIT_NO_DEVICE


def _drive(config: Config, args: argparse.Namespace, data_dir: str) -> int:
    from engine.driver.capture import CaptureError
    from engine.driver.driver import Driver, open_driver_parts
    from engine.driver.inference import load_version

    loaded = load_version(data_dir, args.model)
    spec = loaded.spec
    code = 0
    stopped_by = "time" if args.seconds else "end"
    with (
        PlayerConsole(enabled=not args.json) as console,
        open_driver_parts(config, loaded, seed=args.seed) as parts,
    ):
        game = getattr(parts.capture.source, "game", None)
        driver = Driver(parts, config.driver, sink=console.show)
        log.info(
            "driving %s (batch %d) on %s at %dx%d, unstuck: %s",
            loaded.version,
            loaded.batch,
            parts.capture.source.name,
            spec.input.width,
            spec.input.height,
            parts.unstuck.description,
        )
        with _checkpoint_poller(driver, loaded):
            try:
                driver.run(args.seconds)
            except SystemExit as stop:
                code, stopped_by = int(stop.code or 0), "SIGTERM"
            except KeyboardInterrupt:
                code, stopped_by = EXIT_SIGINT, "SIGINT"
            except CaptureError as error:
                log.error("%s", error)
                bad_config = isinstance(error.__cause__, ConfigError)
                code, stopped_by = (EXIT_BAD_INPUT if bad_config else EXIT_NO_DEVICE), "capture"
    summary = driver.summary()
    report: dict[str, Any] = {
        "pps": round(summary.pps, 2),
        "fps": round(summary.fps, 2),
        "distance_m": _rounded(summary.distance_m),
        "offroad_events": summary.offroad_events,
        "unstucks": summary.unstucks,
        "convcam_ms": round(summary.convcam_ms, 3),
        "predictions": summary.predictions,
        "frames_dropped": summary.frames_dropped,
        "reloads": summary.reloads,
        "version": summary.version,
        "batch": summary.batch,
        "seconds": round(summary.seconds, 2),
        "stopped_by": stopped_by,
        "last_pad": dataclasses.asdict(summary.last_pad),
        "final_controls": None,
        "stages": stage_report(summary.stages),
    }
    if game is not None:
        # One more tick applies whatever the game was last told: what the car would now do.
        game.tick()
        final = game.applied_controls
        report["final_controls"] = dataclasses.asdict(final)
        log.info(
            "stopped (%s): the game's controls are now steering=%.2f throttle_brake=%.2f",
            stopped_by,
            final.steering,
            final.throttle_brake,
        )
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        log.info("drive summary: %s", report)
    return code


@contextlib.contextmanager
def _checkpoint_poller(driver: Any, loaded: Any) -> Iterator[None]:
    """Offer the driver each newer checkpoint of its version, as the hub would."""
    from models.checkpoints import list_checkpoints

    stop = threading.Event()

    def poll() -> None:
        offered = loaded.batch
        while not stop.wait(CHECKPOINT_POLL_S):
            checkpoints = list_checkpoints(loaded.directory)
            if checkpoints and checkpoints[-1].batch > offered:
                offered = checkpoints[-1].batch
                driver.offer_weights(loaded.version, offered, checkpoints[-1].path)

    thread = threading.Thread(target=poll, name="checkpoint-poll", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


class PlayerConsole:
    """The reference's Player Console in the terminal: a live table, or log lines without a TTY."""

    def __init__(self, enabled: bool) -> None:
        self._console = Console(stderr=True)
        self._live = (
            Live(console=self._console, auto_refresh=False)
            if enabled and self._console.is_terminal
            else None
        )
        self._next_log = 0.0

    def __enter__(self) -> PlayerConsole:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()

    def show(self, message: Message) -> None:
        """Take one driver message; only the status is shown (images are for the overlay)."""
        if not isinstance(message, DriverStatus):
            return
        if self._live is not None:
            self._live.update(player_table(message), refresh=True)
            return
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + _LOG_STATUS_S
            predictions = " ".join(f"{k}={v:+.3f}" for k, v in message.predictions.items())
            log.info(
                "%s batch %d | %s | pad steer %+.2f LT %.2f RT %.2f | FPS %.1f PPS %.1f | "
                "unstucks %d",
                message.version,
                message.batch,
                predictions,
                message.pad.get("steering", 0.0),
                message.pad.get("left_trigger", 0.0),
                message.pad.get("right_trigger", 0.0),
                message.fps,
                message.pps,
                message.unstucks,
            )


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    """Config with --sim / --capture / --game applied, checked for a pad that fits the source."""
    capture, controller, driver = config.capture, config.controller, config.driver
    if args.game:
        driver = msgspec.structs.replace(driver, game=args.game)
    elif args.sim or args.capture:
        driver = msgspec.structs.replace(driver, game="")  # the flag's source, not the profile
    if driver.game:
        from engine.games.profile import apply_to_config, load_profile

        # Loaded here too, so a bad profile is a bad-input exit before TensorFlow loads.
        return apply_to_config(
            load_profile(driver.game), msgspec.structs.replace(config, driver=driver)
        )
    if args.sim:
        capture = msgspec.structs.replace(capture, backend="sim")
        controller = msgspec.structs.replace(controller, backend="sim")
    elif args.capture:
        capture = msgspec.structs.replace(capture, backend=args.capture)
    if capture.backend == "mss" and controller.backend == "sim":
        raise ConfigError(
            f"--capture mss with controller.backend = 'sim' (in {config.source}): the sim pad "
            "drives only the built-in game run by --sim; set controller.backend = 'vgamepad' "
            "for a real game, or use --sim"
        )
    return msgspec.structs.replace(config, capture=capture, controller=controller, driver=driver)


def stage_report(stages: dict[DriverStage, StageTime]) -> dict[str, dict[str, float | int]]:
    """The summary's stage times: the wire's `StageTime` fields, ms to the microsecond."""
    return {
        stage: {
            "p50_ms": round(timing.p50_ms, 3),
            "p95_ms": round(timing.p95_ms, 3),
            "turns": timing.turns,
        }
        for stage, timing in stages.items()
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
