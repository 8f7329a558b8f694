"""The collector node: one headless NPC collector whose balanced sets go to the hub.

Example::

    python -m engine.collector.node --config config.toml --index 0

Each start picks a fresh random seed (plus the index), so a restarted
collector records new tracks rather than the ones it recorded before; the seed
is logged (`--seed S` fixes it, as `charles-stream collect --seed` does). Every
completed set goes to the hub as one `SampleSets` message (the hub hands it to
the trainer), and the collector's cumulative counters as a `CollectorReport`
every `collector.report_interval_s` of game time. The node runs until SIGTERM,
or until the hub is gone for good. SIGTERM ends the loop at its next sample,
not wherever it was: the sets completed so far and a last report are sent
before the hub link closes, and the node exits 0.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence

from engine.core.cli_args import non_negative_int, seed_value
from engine.core.config import Config
from engine.core.wire import SampleSets, collector_report
from engine.node.process import EXIT_HUB_GONE, exit_process, node_parser, run_node, sigterm_as_flag

log = logging.getLogger("charles.nodes.collector")

# Seeds stay below numpy's and the track generator's limit with the index added.
_MAX_BASE_SEED = 2**31 - 1 - 64
# On the way out, what is queued for the hub (the last sets, the last report) may take this
# long to go; well within the supervisor's shutdown_timeout_s.
_CLOSE_S = 3.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m engine.collector.node --index I [--config PATH]`."""
    parser = node_parser("collector", "An NPC data collector feeding the stream's trainer.")
    parser.add_argument(
        "--index", required=True, type=non_negative_int, help="which collector (0, 1, ...)"
    )
    parser.add_argument(
        "--seed", type=seed_value, help="this collector's seed (default: a new random one)"
    )
    args = parser.parse_args(argv)
    return run_node(args, lambda config: collect(config, args.index, args.seed))


def collect(config: Config, index: int, seed: int | None = None) -> int:
    """Collect and send until SIGTERM or the hub is lost; returns the exit code."""
    # Imported here so a bad flag fails before the game loads.
    from engine.collector.collector import Collector
    from engine.node.client import NodeClient

    name = f"collector-{index}"
    # The source names this run's samples and counters apart from a restarted one's.
    source = f"{name}@{int(time.time()):x}-{os.getpid()}"
    if seed is None:
        seed = random.SystemRandom().randrange(_MAX_BASE_SEED) + index
    client = NodeClient.from_environment("collector", name)
    collector = Collector(
        config,
        seed=seed,
        source=source,
        sink=lambda sample_set: client.send(SampleSets(sets=(sample_set,))),
        report=lambda stats: client.send(collector_report(stats.as_dict())),
    )
    client.start()
    log.info("%s collecting as %s with seed %d", name, source, seed)
    with sigterm_as_flag() as stop:
        try:
            stats = collector.run(should_stop=lambda: stop.is_set() or client.lost.is_set())
        finally:
            client.close(timeout=_CLOSE_S)
    if stop.is_set():
        log.info(
            "stopped by SIGTERM after %d sets (%d samples)", stats.sets_sent, stats.samples_sent
        )
        return 0
    log.error(
        "hub lost: %s stops after %d sets (%d samples)", name, stats.sets_sent, stats.samples_sent
    )
    return EXIT_HUB_GONE


if __name__ == "__main__":
    exit_process(main())
