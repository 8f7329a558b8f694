"""`charles-stream record`: record a person playing a game as training samples.

Examples::

    charles-stream record --game torcs --player ada
    charles-stream record --window "Grand Theft Auto V" --player ada
    charles-stream record --window "Grand Theft Auto V" --pad auto
    charles-stream record --region 0,0,1280,720 --keys left=a,right=d,accelerate=w,brake=s \\
        --smoothing 0.15 --samples 4000

The player drives; every 1/[collector] sample_hz s the recorder reads the keys
held on the X server and, when a balancer wants the sample, grabs the window,
and stores balanced sets into `<data_dir>/samples/samples.db` exactly as
`charles-stream collect` does, with source "human:<player>". F9 (`--pause-key`)
pauses and resumes: keep it paused through menus and loading screens. Ctrl-C or
SIGTERM stops; every completed set is already stored. With `--pad` the stick and
triggers of a gamepad are recorded instead of the keys (`pad.py`), and its
Back/Select button pauses too.

`--game PROFILE` reads a game profile (`charles-stream games list`): its window,
crop and masks (blanked black in every stored frame), its keys and its
`[recorder]` smoothing and pause key; --window/--region, --keys, --smoothing and
--pause-key given as well override the profile's.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import math
import re
import sys
import time
from typing import TYPE_CHECKING, TextIO

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_float,
    positive_int,
)
from engine.core.config import Config
from engine.core.errors import UsageError
from engine.core.rates import RateMeter
from engine.core.shutdown import sigterm_as_exit

if TYPE_CHECKING:
    from engine.games.profile import GameProfile
    from engine.recorder.game import RecorderSettings
    from engine.recorder.recorder import RecorderStats

log = logging.getLogger("charles.record")

DEFAULT_KEYS = "left=Left,right=Right,accelerate=Up,brake=Down"
DEFAULT_PAUSE_KEY = "F9"
STATUS_INTERVAL_S = 0.5  # the terminal line, about twice a second
LOG_INTERVAL_S = 10.0  # plain log lines when stderr is not a terminal
_PLAYER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `record`."""
    parser = subparsers.add_parser(
        "record",
        help="record a person playing a game (frames + keys) as training samples",
        description="Record human play: the game window's frames and the player's keys, "
        "balanced and stored like collector samples.",
    )
    parser.add_argument(
        "--game",
        metavar="PROFILE",
        help="a game profile (name or .toml path): its window, crop, masks, keys, pause key",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--window", metavar="TITLE", help="capture the window with this title")
    where.add_argument(
        "--region", metavar="L,T,W,H", help="capture this screen region (default: [capture] region)"
    )
    parser.add_argument(
        "--keys",
        metavar="MAP",
        help=f"X keysym names per role (default: the --game's, else {DEFAULT_KEYS})",
    )
    parser.add_argument(
        "--pause-key",
        metavar="KEY",
        help=f"pauses/resumes recording (default: the --game's, else {DEFAULT_PAUSE_KEY})",
    )
    parser.add_argument(
        "--paused",
        action="store_true",
        help="start paused: the pause key begins recording (start the game, then press it)",
    )
    parser.add_argument(
        "--pad",
        metavar="DEVICE",
        help="record a gamepad's stick and triggers instead of the keys: auto, a "
        "/dev/input/eventN (Linux, the 'pad' extra) or an XInput pad 0-3 (Windows); "
        "its Back/Select button pauses too",
    )
    parser.add_argument(
        "--smoothing",
        type=smoothing_seconds,
        metavar="S",
        help="time constant (s) that grades tapped keys; 0 = raw -1/0/1 "
        "(default: the --game's, else 0)",
    )
    parser.add_argument(
        "--player", metavar="NAME", help="stored as source human:NAME (default: $USER)"
    )
    parser.add_argument("--samples", type=positive_int, help="stop once this many are stored")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    parser.set_defaults(handler=run_record)


def smoothing_seconds(text: str) -> float:
    """argparse type of --smoothing: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; accepted: seconds from 0 (raw keys) to 10"
        ) from None
    if not (math.isfinite(value) and 0.0 <= value <= 10.0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range; accepted: seconds from 0 (raw keys) to 10"
        )
    return value


def run_record(args: argparse.Namespace) -> int:
    """Check the flags, find the window, record until stopped; 0 when done."""
    config = config_from(args)
    # Imported here so `charles-stream --help` loads neither X nor OpenCV.
    from contextlib import nullcontext

    from engine.core.wire import message_fields
    from engine.data.controls import check_recordable
    from engine.data.storage import SampleStorage, default_storage_path
    from engine.games.profile import load_profile
    from engine.recorder.game import masked
    from engine.recorder.inputs import (
        Hotkey,
        KeyboardInput,
        XKeyState,
        check_key_name,
    )
    from engine.recorder.node import report_of
    from engine.recorder.pad import AnyPressed, open_pad
    from engine.recorder.recorder import Recorder
    from engine.recorder.screen import ScreenGrabber

    check_recordable(config, "the recorder")
    profile = load_profile(args.game) if args.game is not None else None
    settings = _settings(args, profile)
    bindings = settings.bindings
    pause_key = check_key_name(settings.pause_key, flag="--pause-key")
    if pause_key in bindings.names():
        raise UsageError(
            f"pause key {pause_key!r} is also a driving key ({', '.join(bindings.names())}); "
            "give --pause-key or --keys another key"
        )
    if args.pad and args.smoothing is not None:
        raise UsageError(
            f"--smoothing {args.smoothing:g} grades tapped keys, and a pad's stick and triggers "
            "are graded already; drop --smoothing, or --pad to record the keys"
        )
    player = player_name(args.player)
    region = _region(args, config, profile)
    keys = XKeyState([*bindings.names(), pause_key])
    path = default_storage_path(config, data_dir_from(args, config))
    try:
        with (
            sigterm_as_exit(),
            ScreenGrabber(region) as screen,
            SampleStorage(path, capacity=config.data.buffer_capacity) as storage,
            (
                open_pad(args.pad, snap=config.collector.dead_zone) if args.pad else nullcontext()
            ) as pad,
        ):
            source = f"human:{player}"
            recorder = Recorder(
                config,
                source=source,
                grab=masked(screen.grab, profile) if profile is not None else screen.grab,
                inputs=pad
                or KeyboardInput(
                    bindings,
                    keys,
                    smoothing_s=settings.smoothing_s,
                    dead_zone=config.collector.dead_zone,
                ),
                pause=AnyPressed(Hotkey(pause_key, keys), pad.pause)
                if pad
                else Hotkey(pause_key, keys),
                start_paused=args.paused,
                sink=storage.insert_set,
            )
            log.info(
                "recording %s from region %s at %g Hz into %s; %s pauses/resumes",
                source,
                ",".join(map(str, region)),
                config.collector.sample_hz,
                path,
                pause_key,
            )
            status = StatusLine(sys.stderr, capacity=config.data.buffer_capacity)
            stats = recorder.run(samples=args.samples, seconds=args.seconds, on_tick=status.update)
            status.close()
            # The shape of a collector's report (what the recorder node sends and the trainer
            # stores), so `data stats` sums recorders and collectors alike.
            storage.record_collector_stats(source, message_fields(report_of(stats)))
    finally:
        keys.close()
    summary = {
        "source": stats.source,
        "samples": stats.samples_stored,
        "sets": stats.sets_stored,
        "steps": stats.steps,
        "frames": stats.frames_grabbed,
        "recording_s": round(stats.recording_s, 3),
        "paused_s": round(stats.paused_s, 3),
        "episodes": stats.episodes,
        "cpu_s": round(stats.cpu_s, 3),
        "storage": str(path),
    }
    if args.json:
        print(json.dumps(summary))
    log.info(
        "stored %d samples in %d sets (%.0f s recording, %.0f s paused) into %s",
        stats.samples_stored,
        stats.sets_stored,
        stats.recording_s,
        stats.paused_s,
        path,
    )
    return 0


def player_name(name: str | None) -> str:
    """--player, else the login name; letters, digits and _.@- only (it is stored and shown)."""
    if name is None:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "player"
    if not _PLAYER.fullmatch(name):
        raise UsageError(
            f"--player {name!r} is not accepted; use 1 to 64 letters, digits or _ . @ -"
        )
    return name


def _settings(args: argparse.Namespace, profile: GameProfile | None) -> RecorderSettings:
    """Keys, smoothing and pause key: each flag given, else the profile's, else the default."""
    from engine.recorder.game import RecorderSettings, recorder_settings
    from engine.recorder.inputs import parse_key_bindings

    if profile is not None:
        base = recorder_settings(profile)
    else:
        base = RecorderSettings(parse_key_bindings(DEFAULT_KEYS), 0.0, DEFAULT_PAUSE_KEY)
    return RecorderSettings(
        bindings=parse_key_bindings(args.keys) if args.keys is not None else base.bindings,
        smoothing_s=args.smoothing if args.smoothing is not None else base.smoothing_s,
        pause_key=args.pause_key if args.pause_key is not None else base.pause_key,
    )


def _region(
    args: argparse.Namespace, config: Config, profile: GameProfile | None = None
) -> tuple[int, int, int, int]:
    """The screen rectangle recorded; with a profile, its crop of the window (given or found)."""
    from engine.recorder.game import capture_region
    from engine.recorder.screen import find_window_region, parse_region

    window: tuple[int, int, int, int] | None = None
    if args.window is not None:
        window = find_window_region(args.window)
    elif args.region is not None:
        try:
            window = parse_region(args.region)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if profile is not None:
        return capture_region(profile, window)
    if window is not None:
        return window
    if config.capture.region:
        left, top, width, height = config.capture.region
        return (left, top, width, height)
    if config.capture.window_title:
        return find_window_region(config.capture.window_title)
    raise UsageError(
        "record needs the game's picture: give --window TITLE or --region L,T,W,H "
        "(or set [capture] region or window_title)"
    )


class StatusLine:
    """The live status: one rewritten line on a terminal, else a plain log line now and then."""

    def __init__(self, stream: TextIO, *, capacity: int) -> None:
        self._stream = stream
        self._terminal = stream.isatty()
        self._capacity = capacity
        self._rate = RateMeter(window_s=2.0)
        self._steps = 0
        self._last = -math.inf
        self._paused: bool | None = None

    def update(self, stats: RecorderStats) -> None:
        """Count the step just taken; show the line when due (or when pause state changed)."""
        for _ in range(stats.steps - self._steps):
            self._rate.record()
        self._steps = stats.steps
        now = time.monotonic()
        changed = stats.paused != self._paused
        interval = STATUS_INTERVAL_S if self._terminal else LOG_INTERVAL_S
        if not changed and now - self._last < interval:
            return
        self._paused = stats.paused
        self._last = now
        line = format_status(stats, self._rate.rate(), self._capacity)
        if self._terminal:
            self._stream.write("\r\x1b[2K" + line)
            self._stream.flush()
        else:
            log.info("%s", line)

    def close(self) -> None:
        """End the terminal line so later log lines start on their own."""
        if self._terminal:
            self._stream.write("\n")
            self._stream.flush()


def format_status(stats: RecorderStats, rate: float, capacity: int) -> str:
    """The live line: state, samples/s, stored, and each buffer's fill of its capacity."""
    fill = ", ".join(
        f"{name} {count}/{capacity}" for name, count in sorted(stats.stored_by_buffer.items())
    )
    dropped = sum(b.sets_dropped for b in stats.balance.balancers.values())
    state = "PAUSED" if stats.paused else "recording"
    rate_text = f"{rate:.1f}" if math.isfinite(rate) else "-"
    return (
        f"{state}: {rate_text} samples/s, {stats.samples_stored} stored in "
        f"{stats.sets_stored} sets ({fill}), {dropped} sets dropped"
    )
