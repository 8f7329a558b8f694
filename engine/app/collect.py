"""`charles-stream collect`: NPC collectors as supervised nodes until N balanced samples are stored.

Example::

    charles-stream collect --samples 4000 --collectors 2 --seed 7 --json

One process model with the stream (`charles-stream run`): the collectors are
`python -m engine.collector.node` children of the app's `Supervisor` (a
crash or a hang is restarted, a crash loop ends the command with exit 1,
SIGTERM stops them and they send what they completed), and their sets travel
over the hub, routed by the services table as in the stream. In place of the
trainer, the hub hands sets and reports to a receiver in this process
(`Hub.add_receiver`), the only writer of the sample storage; each is stored
before the hub reads that collector's next message, so a slow disk slows the
collectors the way a slow trainer does in the stream. The hub listens on
127.0.0.1 at a free port with a token made for this run, so a stream running
beside it is not disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import signal
import time
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.app.processes import ProcessSpec, process_table
from engine.app.signals import on_stop_signals
from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    config_path_for_processes,
    data_dir_from,
    positive_int,
    seed_value,
)
from engine.core.config import Config, HubConfig, StreamConfig
from engine.core.errors import ProtocolError, UsageError
from engine.core.store import AppState
from engine.core.wire import CollectorReport, SampleSets, decode, message_fields
from engine.data.controls import check_recordable
from engine.data.storage import SampleStorage, default_storage_path

log = logging.getLogger("charles.collect")

MAX_COLLECTORS = 64
# After the collectors stopped: how long their last messages may take through the hub.
_DRAIN_S = 10.0


class CollectFailed(RuntimeError):
    """A collector is left in a crash loop: collection cannot finish."""


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
    """Collect until enough samples are stored (exit 0), a crash loop (1) or Ctrl-C/SIGTERM."""
    config = config_from(args)
    check_recordable(config, "the built-in game's collector")
    count = args.collectors or config.collector.collectors
    if count > MAX_COLLECTORS:
        raise UsageError(f"--collectors {count} is too many; accepted: 1 to {MAX_COLLECTORS}")
    # A fresh seed per run by default: the same seed would record the same tracks again.
    seed = secrets.randbelow(2**31 - MAX_COLLECTORS) if args.seed is None else args.seed
    log.info("collecting with %d collector(s), seeds %d..%d", count, seed, seed + count - 1)
    path = default_storage_path(config, data_dir_from(args, config))
    config_path = config_path_for_processes(args)
    with SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        try:
            summary = asyncio.run(
                collect(
                    config, config_path, storage, samples=args.samples, collectors=count, seed=seed
                )
            )
        except CollectFailed as error:
            log.error("%s", error)
            return 1
    if summary["interrupted"]:
        log.warning("%s: stopped after %d samples", summary["interrupted"], summary["samples"])
        return 128 + signal.Signals[summary["interrupted"]].value
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


async def collect(
    config: Config,
    config_path: str | None,
    storage: SampleStorage,
    *,
    samples: int,
    collectors: int,
    seed: int,
) -> dict[str, Any]:
    """Run `collectors` supervised collector nodes until `samples` samples are stored.

    Returns a summary (samples, sets, collectors, seconds, samples_per_s,
    storage, interrupted: the signal's name, or None). Sets that were on
    their way when enough were stored are stored too. Raises `CollectFailed`
    when a collector is left in a crash loop before enough were stored.
    """
    # Imported here: aiohttp is not for `charles-stream --help`.
    from engine.app.hub import Hub
    from engine.app.supervisor import Supervisor
    from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV

    state = AppState()
    changed = asyncio.Event()
    state.subscribe(lambda _: changed.set())
    token = secrets.token_urlsafe(32)
    hub = Hub(
        HubConfig(host="127.0.0.1", port=0, max_message_mb=config.hub.max_message_mb),
        token,
        state,
    )
    done = asyncio.Event()  # enough stored, a crash loop, or a signal
    interrupted: list[str] = []
    started = time.perf_counter()
    await hub.start()
    try:
        supervisor = Supervisor(
            collector_specs(config, config_path, collectors, seed),
            config.supervisor,
            {HUB_URL_ENV: hub.url(), HUB_TOKEN_ENV: token},
            state,
            on_alert=lambda alert: done.set() if alert.kind == "crash_loop" else None,
        )
        with _progress() as progress, _stop_on_signals(done, interrupted):
            receiver = _StorageReceiver(storage, samples, done, progress)
            hub.add_receiver("trainer", receiver.receive)
            try:
                await supervisor.start()
                await done.wait()
            finally:
                await supervisor.stop()
            # A collector's last sets and report are stored once the hub has seen it leave.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_S):
                    while "collector" in state.nodes.values():
                        changed.clear()
                        await changed.wait()
    finally:
        await hub.stop()
    failed = [name for name, p in state.processes.items() if p.state == "crash_loop"]
    if failed and not interrupted and receiver.samples < samples:
        raise CollectFailed(
            f"{', '.join(failed)} kept failing (see the log above): stored {receiver.samples} "
            f"of {samples} samples"
        )
    elapsed = time.perf_counter() - started
    return {
        "samples": receiver.samples,
        "sets": receiver.sets,
        "collectors": collectors,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(receiver.samples / elapsed, 2) if elapsed > 0 else 0.0,
        "storage": str(storage.path),
        "interrupted": interrupted[0] if interrupted else None,
    }


def collector_specs(
    config: Config, config_path: str | None, collectors: int, seed: int
) -> list[ProcessSpec]:
    """The stream's collector rows of the process table, collector I with seed `seed + I`."""
    only_collectors = StreamConfig(collectors=collectors, trainer=False, driver=False)
    specs = process_table(msgspec.structs.replace(config, stream=only_collectors), config_path, "")
    return [
        dataclasses.replace(spec, args=(*spec.args, "--seed", str(seed + index)))
        for index, spec in enumerate(specs)
    ]


class _StorageReceiver:
    """Where the hub hands the collectors' sets and reports: the sample storage."""

    def __init__(
        self, storage: SampleStorage, wanted: int, done: asyncio.Event, progress: Progress
    ) -> None:
        self.samples = 0
        self.sets = 0
        self._storage = storage
        self._wanted = wanted
        self._done = done
        self._progress = progress
        self._task = progress.add_task("collecting", total=wanted, dropped=0)
        self._dropped: dict[str, int] = {}

    async def receive(self, kind: str, data: bytes) -> None:
        """Store one routed message (off the event loop: decoding and SQLite take a while)."""
        message = await asyncio.to_thread(self._store, data)
        if isinstance(message, SampleSets):
            self.sets += len(message.sets)
            self.samples += sum(len(s.samples) for s in message.sets)
            self._progress.update(self._task, completed=min(self.samples, self._wanted))
            if self.samples >= self._wanted:
                self._done.set()
        elif isinstance(message, CollectorReport):
            balancers = message.balance.balancers.values()
            self._dropped[message.source] = sum(b.sets_dropped for b in balancers)
            self._progress.update(self._task, dropped=sum(self._dropped.values()))

    def _store(self, data: bytes) -> SampleSets | CollectorReport | None:
        try:
            message = decode(data)
        except ProtocolError as error:
            # The trainer would refuse it the same way: the hub only read its header.
            log.warning("a collector sent a message that is not stored: %s", error)
            return None
        if isinstance(message, SampleSets):
            for sample_set in message.sets:
                self._storage.insert_set(sample_set)
            return message
        if isinstance(message, CollectorReport):
            self._storage.record_collector_stats(message.source, message_fields(message))
            return message
        return None


def _stop_on_signals(done: asyncio.Event, received: list[str]) -> contextlib.AbstractContextManager:
    """SIGINT and SIGTERM end the collection in order (collectors stop and send what they have)."""

    def stop(signum: int) -> None:
        name = signal.Signals(signum).name
        log.info("%s received: stopping the collectors", name)
        received.append(name)
        done.set()

    return on_stop_signals(stop)


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
