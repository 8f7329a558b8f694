"""The recorder node: a person drives a game while the stream trains on what they do.

Example::

    python -m engine.recorder.node --config config.toml --index 0 --game builtin --player ada

The app starts one per `[stream] recorders` entry (engine/app/processes.py);
a streamer at another machine runs the same command with CHARLES_HUB_URL and
CHARLES_HUB_TOKEN set. It reads the game profile's window (waiting for it to
appear: the app may start before the game), crop, masks, keys, smoothing and
pause key, and records exactly as `charles-stream record --game` does, but
every completed set goes to the hub as a `SampleSets` message, the way a
collector node sends its sets (the hub hands them to the trainer), with source
"human:<player>".

It joins the hub as a node of role "collector" (it sends what collectors
send, and the hub's routing is by role) named `recorder-<index>`, and reports
its counters as a `CollectorReport` every `collector.report_interval_s` of
wall time and at once when the player pauses or resumes, with `paused` set
while paused; the app's state keeps it with the collectors' reports
(`AppState.collectors`). `samples_sent / game_seconds` is its rate while
recording. It runs until SIGTERM (exit 0), or until the hub is gone for good
(exit 1, the supervisor restarts it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine.core.cli_args import non_negative_int
from engine.core.config import PLAYER_NAME, Config
from engine.core.errors import DeviceError, UsageError
from engine.core.wire import CollectorReport, SampleSets, collector_report
from engine.node.process import EXIT_HUB_GONE, node_parser, run_node
from engine.node.progress import report_progress
from engine.recorder.recorder import RecorderStats

if TYPE_CHECKING:
    from engine.games.profile import GameProfile

log = logging.getLogger("charles.nodes.recorder")

# How often the log repeats that the game's window is still missing.
WAITING_LOG_S = 30.0
WINDOW_POLL_S = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m engine.recorder.node --index I --game PROFILE --player NAME`."""
    parser = node_parser("recorder", "A recorder of human play feeding the stream's trainer.")
    parser.add_argument(
        "--index", required=True, type=non_negative_int, help="which recorder (0, 1, ...)"
    )
    parser.add_argument(
        "--game", required=True, metavar="PROFILE", help="game profile: a name or a .toml path"
    )
    parser.add_argument(
        "--player", required=True, type=_player, help='stored as source "human:NAME"'
    )
    args = parser.parse_args(argv)
    return run_node(args, lambda config: record(config, args.index, args.game, args.player))


def record(config: Config, index: int, game: str, player: str) -> int:
    """Record and send until SIGTERM (0) or the hub is lost (1); a bad profile raises (exit 2)."""
    # Imported here so a bad flag fails before X and OpenCV load.
    from engine.data.controls import check_recordable
    from engine.games.profile import load_profile
    from engine.node.client import NodeClient
    from engine.recorder.game import masked, recorder_settings
    from engine.recorder.inputs import Hotkey, KeyboardInput, XKeyState, check_key_name
    from engine.recorder.recorder import Recorder
    from engine.recorder.screen import ScreenGrabber

    check_recordable(config, "the recorder")
    profile = load_profile(game)
    profile.window_target()  # a profile without this platform's window is refused now
    settings = recorder_settings(profile)
    pause_key = check_key_name(settings.pause_key, flag=f"{profile.source}: recorder.pause_key")
    if pause_key in settings.bindings.names():
        raise UsageError(
            f"{profile.source}: recorder.pause_key {pause_key!r} is also a driving key "
            f"({', '.join(settings.bindings.names())}); accepted: a key the game does not use"
        )
    name = f"recorder-{index}"
    source = f"human:{player}"
    client = NodeClient.from_environment("collector", name)
    client.start()
    try:
        region = _wait_for_window(profile, client.lost.is_set)
        if region is None:
            log.error("hub lost: %s stops before it recorded", name)
            return EXIT_HUB_GONE
        keys = XKeyState([*settings.bindings.names(), pause_key])
        try:
            with ScreenGrabber(region) as screen:
                recorder = Recorder(
                    config,
                    source=source,
                    grab=masked(screen.grab, profile),
                    inputs=KeyboardInput(
                        settings.bindings,
                        keys,
                        smoothing_s=settings.smoothing_s,
                        dead_zone=config.collector.dead_zone,
                    ),
                    pause=Hotkey(pause_key, keys),
                    sink=lambda sample_set: client.send(SampleSets(sets=(sample_set,))),
                )
                reporter = Reporter(
                    client.send, config.collector.report_interval_s, fresh=recorder.stats_now
                )
                log.info(
                    "%s recording %s in %s (game profile %s, region %s); %s pauses/resumes",
                    name,
                    source,
                    profile.window_target().title or "a fixed region",
                    profile.name,
                    ",".join(map(str, region)),
                    pause_key,
                )
                stats = recorder.run(should_stop=client.lost.is_set, on_tick=reporter.tick)
                reporter.send(stats)  # the final counters, before the link closes
        finally:
            keys.close()
    finally:
        client.close()
    if client.lost.is_set():
        log.error(
            "hub lost: %s stops after %d sets (%d samples)",
            name,
            stats.sets_stored,
            stats.samples_stored,
        )
        return EXIT_HUB_GONE
    log.info(
        "%s stopped: sent %d samples in %d sets", name, stats.samples_stored, stats.sets_stored
    )
    return 0


def report_of(stats: RecorderStats) -> CollectorReport:
    """A recorder's counters as a collector's report: game time is the time it recorded."""
    return collector_report(
        {
            "source": stats.source,
            "balance": stats.balance,
            "episodes": stats.episodes,
            "game_seconds": stats.recording_s,
            "wall_seconds": stats.recording_s + stats.paused_s,
            "sets_sent": stats.sets_stored,
            "samples_sent": stats.samples_stored,
            "paused": stats.paused,
        }
    )


class Reporter:
    """Sends the recorder's report every `interval_s`, and at once when paused or resumed.

    `fresh` gives the stats with up-to-date balancing counters (`Recorder.stats_now`),
    called only when a report goes out.
    """

    def __init__(
        self,
        send: Callable[[CollectorReport], None],
        interval_s: float,
        *,
        fresh: Callable[[], RecorderStats] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._fresh = fresh
        self._interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")
        self._paused: bool | None = None

    def tick(self, stats: RecorderStats) -> None:
        """After every poll: progress for the watchdog; a report if due or the pause changed."""
        report_progress()
        now = self._clock()
        changed = self._paused is not None and stats.paused != self._paused
        if changed:
            log.info("%s %s", stats.source, "paused" if stats.paused else "resumed")
        if changed or self._paused is None or now - self._last >= self._interval_s:
            self._last = now
            self.send(stats)

    def send(self, stats: RecorderStats) -> None:
        """Report now."""
        if self._fresh is not None:
            stats = self._fresh()
        self._paused = stats.paused
        self._send(report_of(stats))


def _wait_for_window(
    profile: GameProfile, stopped: Callable[[], bool]
) -> tuple[int, int, int, int] | None:
    """The profile's capture region once its window shows; None if `stopped()` first.

    The app may start before the streamer starts the game, so a missing window
    is waited for (and said in the log) rather than an exit the supervisor
    would count towards a crash loop.
    """
    from engine.recorder.game import capture_region

    said = -float("inf")
    while not stopped():
        report_progress()  # waiting for the streamer to start the game is not hanging
        try:
            return capture_region(profile)
        except DeviceError as error:
            now = time.monotonic()
            if now - said >= WAITING_LOG_S:
                log.warning("waiting for the game's window: %s", error)
                said = now
        time.sleep(WINDOW_POLL_S)
    return None


def _player(text: str) -> str:
    """argparse type of --player: letters, digits and _.@- (it is stored and shown)."""
    if not PLAYER_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; use 1 to 64 letters, digits or _ . @ -"
        )
    return text


if __name__ == "__main__":
    sys.exit(main())
