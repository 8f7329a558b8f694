"""`charles-stream collect`: run K NPC collector processes until N balanced samples are stored.

Example::

    charles-stream collect --samples 4000 --collectors 2 --seed 7 --json

Each collector is its own process (the built-in game and its rendering are
CPU-bound; processes use every core) with its own seed, so tracks differ. They
send balanced sets over a multiprocessing queue; this parent process is the only
writer of the sample storage, which keeps SQLite writes in one place.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import queue
import random
import time
import traceback
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_int,
    seed_value,
)
from engine.core.config import Config
from engine.core.errors import UsageError
from engine.core.logs import setup_logging
from engine.core.shutdown import parent_watch, sigterm_as_exit
from engine.data.storage import SampleStorage, default_storage_path

log = logging.getLogger("charles.collect")

# How long the parent waits for a message before checking that collectors still live.
_POLL_S = 1.0
_JOIN_S = 10.0


class CollectorFailed(RuntimeError):
    """A collector process crashed or died; collection cannot finish."""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `collect`."""
    parser = subparsers.add_parser(
        "collect", help="run NPC data collectors until N balanced samples are stored"
    )
    parser.add_argument(
        "--samples", required=True, type=positive_int, help="balanced samples to store"
    )
    parser.add_argument(
        "--collectors",
        type=positive_int,
        help="collector processes (default: [collector] collectors)",
    )
    add_data_argument(parser)
    parser.add_argument(
        "--seed", type=seed_value, help="first collector's seed (default: a new random one per run)"
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    parser.set_defaults(handler=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    """Start the collectors, store what they send, stop them once enough samples are in."""
    config = config_from(args)
    # Imported here so `charles-stream --help` never loads the game.
    from engine.data.controls import check_recordable

    check_recordable(config, "the built-in game's collector")
    count = args.collectors or config.collector.collectors
    if count > 64:
        raise UsageError(f"--collectors {count} is too many; accepted: 1 to 64")
    # A fresh seed per run by default: the same seed would record the same tracks again.
    seed = random.SystemRandom().randrange(2**31 - 64) if args.seed is None else args.seed
    log.info("collecting with %d collector(s), seeds %d..%d", count, seed, seed + count - 1)
    path = default_storage_path(config, data_dir_from(args, config))
    with sigterm_as_exit(), SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        try:
            summary = collect(config, storage, samples=args.samples, collectors=count, seed=seed)
        except CollectorFailed as error:
            log.error("%s", error)
            return 1
    if args.json:
        print(json.dumps(summary))
    else:
        log.info(
            "stored %d samples in %d sets at %.1f samples/s into %s",
            summary["samples"],
            summary["sets"],
            summary["samples_per_s"],
            summary["storage"],
        )
    return 0


def collect(
    config: Config, storage: SampleStorage, *, samples: int, collectors: int, seed: int
) -> dict[str, Any]:
    """Run `collectors` processes until `samples` balanced samples are stored; return a summary."""
    context = multiprocessing.get_context("spawn")  # the only start method on Windows too
    messages = context.Queue(maxsize=256)
    stop = context.Event()
    run_id = f"{int(time.time()):x}"
    processes = [
        context.Process(
            target=collector_process,
            args=(config, seed + i, f"collector-{i}@{run_id}", messages, stop),
            name=f"collector-{i}",
            daemon=True,
        )
        for i in range(collectors)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    stored = sets = 0
    try:
        with _progress() as progress:
            task = progress.add_task("collecting", total=samples, dropped=0)
            dropped: dict[str, int] = {}
            while stored < samples:
                try:
                    kind, source, payload = messages.get(timeout=_POLL_S)
                except queue.Empty:
                    _check_alive(processes)
                    continue
                if kind == "set":
                    storage.insert_set(payload)
                    stored += len(payload.samples)
                    sets += 1
                    progress.update(task, completed=min(stored, samples))
                elif kind == "stats":
                    storage.record_collector_stats(source, payload)
                    dropped[source] = sum(
                        b["sets_dropped"] for b in payload["balance"]["balancers"].values()
                    )
                    progress.update(task, dropped=sum(dropped.values()))
                else:
                    raise CollectorFailed(f"{source} failed:\n{payload}")
    finally:
        _stop(processes, messages, stop, storage)
    elapsed = time.perf_counter() - started
    return {
        "samples": stored,
        "sets": sets,
        "collectors": collectors,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(stored / elapsed, 2) if elapsed > 0 else 0.0,
        "storage": str(storage.path),
    }


def collector_process(config: Config, seed: int, source: str, messages: Queue, stop: Event) -> None:
    """A collector process: run until told to stop, sending sets and stats to the parent."""
    setup_logging(config.app.log_level)
    # Imported here so the parent (and `--help`) never loads the game.
    from engine.collector.collector import Collector

    try:
        collector = Collector(
            config,
            seed=seed,
            source=source,
            sink=lambda sample_set: messages.put(("set", source, sample_set)),
            report=lambda stats: messages.put(("stats", source, stats.as_dict())),
        )
        parent_gone = parent_watch()
        collector.run(should_stop=lambda: stop.is_set() or parent_gone())
    except KeyboardInterrupt:
        return
    except Exception:
        messages.put(("error", source, traceback.format_exc()))


def _stop(
    processes: list[multiprocessing.Process],
    messages: Queue,
    stop: Event,
    storage: SampleStorage,
) -> None:
    """Tell collectors to stop and drain the queue so none blocks on a full one.

    Their final counters are kept; sets still in flight are not stored (N is reached).
    """
    stop.set()
    deadline = time.monotonic() + _JOIN_S
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        try:
            kind, source, payload = messages.get(timeout=0.2)
        except queue.Empty:
            continue
        if kind == "stats":
            storage.record_collector_stats(source, payload)
    for process in processes:
        if process.is_alive():
            log.warning("%s did not stop within %.0f s; terminating it", process.name, _JOIN_S)
            process.terminate()
        process.join()


def _check_alive(processes: list[multiprocessing.Process]) -> None:
    dead = [p for p in processes if not p.is_alive()]
    if dead:
        codes = ", ".join(f"{p.name} (exit {p.exitcode})" for p in dead)
        raise CollectorFailed(f"collector processes ended unexpectedly: {codes}")


def _progress() -> Progress:
    # stderr, so a --json line on stdout stays machine-readable.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("dropped sets: {task.fields[dropped]}"),
        console=Console(stderr=True),
    )
