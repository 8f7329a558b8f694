"""`charles-stream npc`: the keyboard NPC plays the built-in game's window, through keys only.

Examples::

    charles-stream npc --seed 3 --seconds 120                     # play for `record` to record
    charles-stream record --game builtin --player keyboard-npc --paused &
    charles-stream npc --seed 3 --seconds 120 --pause-key F9      # recoveries, not mistakes
    charles-stream npc --seed 101 --seconds 60 --clean --json     # the score to beat
    charles-stream npc --seeds 1,4,2,5 --segment-seconds 20 --seconds 1200 --pause-key F9

The game runs in its window exactly as `charles-stream sim` shows it to a
person at the keyboard; the NPC (engine/driver/keyboard_npc.py) presses the
profile "builtin"'s keys through XTest, with the pointer over the window (with
no window manager, X sends keys to the window under the pointer). `--clean`
drives without noise or deliberate mistakes (the figure `eval` holds a model
to). `--start-on-enter` opens the window and waits for a line on stdin before
driving, so a recorder or scorer can get ready first. After `--seconds` of
driving the NPC lets go of the keys, pauses the recorder if it was recording,
and presses Q, which ends the game. With `--seeds` it takes turns at several
tracks, `--segment-seconds` each, the window closing and opening again between
turns (the recorder stays paused meanwhile): Balancing_v3 completes a set only
once every bin has a sample, so a recording needs left and right turns at full
lock alike, and each of this game's tracks bends one way only. `--json` prints
`charles-stream sim`'s summary over every track driven (with the eval score of
the drive), plus "pause_taps".
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import threading
from typing import TYPE_CHECKING

import msgspec

from engine.core.cli_args import add_config_argument, config_from, positive_float, seed_value
from engine.core.errors import DeviceError, UsageError
from engine.core.shutdown import sigterm_as_exit

if TYPE_CHECKING:
    from engine.driver.keyboard import KeyboardController
    from engine.driver.keyboard_npc import KeyboardNpc
    from engine.sim.game import Game
    from engine.sim.runner import RunStats

log = logging.getLogger("charles.npc")

PROFILE = "builtin"
QUIT_KEY = "q"
QUIT_HOLD_S = 0.1


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `npc`."""
    parser = subparsers.add_parser(
        "npc",
        help="the NPC plays the built-in game's window through the keyboard (XTest)",
        description="Open the built-in game's window and let the NPC play it through X key "
        "events only, as a person at the keyboard would: an expert for `record` to record.",
    )
    tracks = parser.add_mutually_exclusive_group()
    tracks.add_argument(
        "--seed", type=seed_value, default=None, metavar="S", help="track seed (default: sim.seed)"
    )
    tracks.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        metavar="S1,S2,...",
        help="take turns on these tracks, --segment-seconds each (left- and right-hand tracks "
        "alternating give balanced sets both ways)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=positive_float,
        default=None,
        metavar="N",
        help="game seconds per turn at one track of --seeds (default: all of --seconds)",
    )
    parser.add_argument(
        "--seconds",
        type=positive_float,
        default=None,
        metavar="N",
        help="game seconds of driving, then quit (default: until the window closes or Ctrl-C)",
    )
    parser.add_argument(
        "--clean", action="store_true", help="drive without noise or deliberate mistakes"
    )
    parser.add_argument(
        "--pause-key",
        metavar="KEY",
        help="pause the recorder (started with --paused) during each mistake, e.g. F9",
    )
    parser.add_argument(
        "--hood-only",
        action="store_true",
        help="open the hood window only, no chase window: what a recorder records, for about "
        "half the game's CPU (a recording rig needs no view for the stream)",
    )
    parser.add_argument(
        "--start-on-enter",
        action="store_true",
        help="open the window, then wait for a line on stdin before driving",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    add_config_argument(parser)
    parser.set_defaults(handler=run_npc)


def run_npc(args: argparse.Namespace) -> int:
    """Open the window, press keys for the autopilot until done; 0 when the game ended."""
    config = config_from(args)
    # Heavy imports (OpenCV, pygame, Xlib) only once a run is really wanted.
    from engine.driver.controller import open_controller
    from engine.driver.keyboard_npc import KeyboardNpc
    from engine.games.profile import is_keysym, load_profile
    from engine.sim.autopilot import Autopilot
    from engine.sim.cli import enter_pressed
    from engine.sim.expert import expert_config
    from engine.sim.game import Game
    from engine.sim.window import WindowUnavailable, display_problem, run_window

    problem = display_problem()
    if problem is not None:
        raise DeviceError(f"the keyboard NPC plays a window: {problem}")
    profile = load_profile(PROFILE)
    if args.pause_key and not is_keysym(args.pause_key):
        raise UsageError(
            f"--pause-key {args.pause_key!r} is not an X key name; accepted: keysym names such "
            f"as F9, Pause, space (the recorder's pause key: {profile.recorder.pause_key})"
        )
    seeds = args.seeds or [config.sim.seed if args.seed is None else args.seed]
    autopilot = expert_config(config.autopilot) if args.clean else config.autopilot
    # One game and one autopilot per track, kept: a track driven again goes on where it was.
    games = {seed: Game(config.sim, seed=seed) for seed in seeds}
    pilots = {seed: Autopilot(autopilot, seed=seed) for seed in seeds}
    keyboard = msgspec.structs.replace(config.controller, backend="keyboard")
    tally = _Tally()
    log.info(
        "npc: seeds %s, %s driving, keys of profile %r%s",
        ",".join(map(str, seeds)),
        "clean" if args.clean else "noisy",
        PROFILE,
        f", pausing the recorder with {args.pause_key} during mistakes" if args.pause_key else "",
    )
    with sigterm_as_exit(), open_controller(keyboard, profile=profile) as keys:
        _point_at_hood(games[seeds[0]])
        start = enter_pressed if args.start_on_enter else None
        for seed in itertools.cycle(seeds):
            game = games[seed]
            turn = _turn_seconds(args.seconds, args.segment_seconds, tally.seconds)
            npc = KeyboardNpc(pilots[seed], keys, pause_key=args.pause_key)
            player = _Session(npc, keys, until=None if turn is None else game.time + turn)
            before = game.time
            try:
                stats = run_window(
                    game,
                    pilot=None,
                    seconds=None,
                    player=player,
                    start=start,
                    chase_view=not args.hood_only,
                )
            except WindowUnavailable as error:
                raise DeviceError(str(error)) from None
            finally:
                player.let_go()
            start = None
            tally.add(game, stats, game.time - before, npc.pause_taps)
            if not player.done or turn is None or args.seconds is None:
                break  # the window was closed (or quit) by someone else, or no time was set
            if tally.seconds >= args.seconds - 1e-6:
                break
    summary = tally.summary(games)
    log.info(
        "npc: %.0f m on the road, %d off-road, score %.1f",
        summary["progress_m"],
        summary["offroad_events"],
        summary["metres_per_offroad"],
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


def _turn_seconds(total: float | None, segment: float | None, driven: float) -> float | None:
    """Game seconds of the next turn at one track: a segment, or what is left of the total."""
    left = None if total is None else max(0.0, total - driven)
    if segment is None:
        return left
    return segment if left is None else min(segment, left)


class _Tally:
    """The NPC's drives over every turn: figures added up for the summary."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.frames = 0
        self.wall_s = 0.0
        self.progress_m = 0.0
        self.pause_taps = 0

    def add(self, game: Game, stats: RunStats, seconds: float, pause_taps: int) -> None:
        self.seconds += seconds
        self.frames += stats.frames
        self.wall_s += stats.wall_s
        self.progress_m += stats.progress_m
        self.pause_taps += pause_taps

    def summary(self, games: dict[int, Game]) -> dict[str, object]:
        """`charles-stream sim`'s summary, over every track driven, and the pause key's taps."""
        from engine.sim.score import metres_per_offroad

        telemetry = [game.telemetry() for game in games.values()]
        offroad = sum(t.offroad_events for t in telemetry)
        return {
            "seeds": list(games),
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "fps": round(self.frames / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "distance_m": round(sum(t.distance_m for t in telemetry), 1),
            "laps": sum(t.laps for t in telemetry),
            "offroad_events": offroad,
            "progress_m": round(self.progress_m, 1),
            "metres_per_offroad": round(metres_per_offroad(self.progress_m, offroad), 1),
            "pause_taps": self.pause_taps,
        }


def seed_list(text: str) -> list[int]:
    """argparse type of --seeds: distinct track seeds separated by commas."""
    try:
        seeds = [seed_value(part.strip()) for part in text.split(",")]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: {error}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r} names a track twice; list each once")
    return seeds


class _Session:
    """The NPC's turn at one track: drive until game time `until`, then press Q to leave it."""

    def __init__(self, npc: KeyboardNpc, keys: KeyboardController, *, until: float | None) -> None:
        self._npc = npc
        self._keys = keys
        self._until = until
        self.done = False
        self._quit: threading.Thread | None = None

    def __call__(self, game: Game) -> None:
        if self.done:
            return
        if self._until is not None and game.time >= self._until:
            self.done = True
            self._npc.finish()
            # Q quits the game at its next look at the keys; pressed aside, the game goes on.
            self._quit = threading.Thread(
                target=self._keys.press, args=(QUIT_KEY, QUIT_HOLD_S), name="quit-key"
            )
            self._quit.start()
            return
        self._npc(game)

    def let_go(self) -> None:
        """The game is over (or being stopped): every key up, Q included, before the keys close."""
        if self._quit is not None:
            self._quit.join()
        self._npc.finish()


def _point_at_hood(game: Game) -> None:
    """Put the pointer over the hood window, as a person clicks into the game before playing.

    On X without a window manager (Xvfb) keys go to the window under the pointer; a desktop's
    window manager focuses the new window itself, and other platforms need nothing here.
    """
    if not sys.platform.startswith("linux"):
        return
    from Xlib import X
    from Xlib.display import Display
    from Xlib.ext import xtest

    from engine.sim.window import HOOD_ORIGIN

    display = Display()
    try:
        x = HOOD_ORIGIN[0] + game.config.hood_width // 2
        y = HOOD_ORIGIN[1] + game.config.hood_height // 2
        xtest.fake_input(display, X.MotionNotify, x=x, y=y)
        display.sync()
    finally:
        display.close()
