"""Benchmark the stream's recovery: kill -9, SIGSTOP and SIGTERM of each process, repeated.

    .venv/bin/python bench/liveness.py [--repeats 10] [--processes trainer,driver,collector-0]

One small stream (the tests' tiny config: small frames and buffers, the demo
line, one collector) runs in this process, as `tests/test_app.py` runs it,
with liveness bounds small enough to wait for (`--bounds`, printed), a
constant restart delay of 0.2 s and no crash-loop stop. For each
process and each way to end it, `--repeats` times, once the process is at
work again:

- kill -9: the supervisor sees the exit and restarts it;
- SIGSTOP: alive but silent (a deadlock): the liveness watchdog kills it after
  its bound and restarts it;
- SIGTERM: the process stops by itself (its exit code says whether it did)
  and is restarted.

Per process and signal it prints the time from the signal to the new process
running (restart) and to the new process at work again (back: a trainer
training or waiting for data, a driver's new status with PPS, a collector's
report from its new source), p50 and max; for SIGTERM the time to the exit
and the exit codes. Batches lost at a trainer's end: the batch it had
reported minus the newest checkpoint (what the replacement resumes from).
Samples lost: samples stored minus those still stored, drawn into batches,
rotated out or found corrupt (storage's own counters), over the whole run.
Finally the whole app's stop (SIGTERM to the app: `StreamApp.stop`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.app.app import StreamApp  # noqa: E402
from engine.core.config import load_config  # noqa: E402
from engine.data.storage import SampleStorage, default_storage_path  # noqa: E402
from tests.stream_helpers import TINY_STREAM_CONFIG  # noqa: E402

WAIT_S = 300.0
POLL_S = 0.02


def main() -> None:
    """Parse the flags, run the stream in a scratch folder, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="trials per process and signal")
    parser.add_argument(
        "--processes", default="trainer,driver,collector-0", help="comma-separated names"
    )
    parser.add_argument(
        "--signals", default="kill,stop,term", help="comma-separated: kill, stop, term"
    )
    parser.add_argument(
        "--bounds",
        default="45,20,10",
        help="liveness bounds in s for trainer, driver, collector (default 45,20,10)",
    )
    args = parser.parse_args()
    trainer_s, driver_s, collector_s = (float(v) for v in args.bounds.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="charles-bench-liveness-"))
    try:
        config = scratch / "config.toml"
        config.write_text(
            TINY_STREAM_CONFIG.format(data_dir=scratch / "data")
            + "\n[hub]\nport = 0\n\n[stream]\ncollectors = 1\n\n[supervisor]\n"
            # A constant 0.2 s restart delay and no crash-loop stop: the trials end the same
            # process every few seconds, which the stream would rightly call a crash loop.
            + "backoff_s = 0.2\nbackoff_max_s = 0.2\ncrash_loop_restarts = 1000\n"
            + f"liveness_trainer_s = {trainer_s}\nliveness_driver_s = {driver_s}\n"
            + f"liveness_collector_s = {collector_s}\n",
            encoding="utf-8",
        )
        print(
            f"liveness bounds: trainer {trainer_s:g} s, driver {driver_s:g} s, "
            f"collector {collector_s:g} s; {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        asyncio.run(bench(config, args.processes.split(","), args.signals.split(","), args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def bench(
    config_path: Path, names: list[str], signals: list[str], args: argparse.Namespace
) -> None:
    """Start the stream, run every trial, stop it, print the figures."""
    config = load_config(config_path)
    app = StreamApp(config, config_path=str(config_path))
    await app.start()
    try:
        for name in names:
            await until(lambda name=name: at_work(app, name))
        for name in names:
            for how in signals:
                trials = [await end_once(app, name, how) for _ in range(args.repeats)]
                report(name, how, trials)
    finally:
        stopping = time.monotonic()
        await app.stop()
        print(
            f"app stop (driver, collectors, trainer in order): {time.monotonic() - stopping:.2f} s"
        )
    with SampleStorage(default_storage_path(config), capacity=config.data.buffer_capacity) as db:
        counters, held = db.counters(), len(db.load())
    accounted = held + sum(
        counters.get(k, 0) for k in ("samples_drawn", "samples_rotated_out", "corrupt_samples")
    )
    print(
        f"samples stored {counters.get('samples_stored', 0)}, held {held}, drawn "
        f"{counters.get('samples_drawn', 0)}, rotated out {counters.get('samples_rotated_out', 0)}"
        f": lost {counters.get('samples_stored', 0) - accounted}"
    )


async def end_once(app: StreamApp, name: str, how: str) -> dict:
    """End `name` one way, await its replacement at work; the times from the signal."""
    state = app.state
    await until(lambda: at_work(app, name))
    if name == "trainer" and how != "term":
        # Batches lost need a checkpoint to resume from: wait for one of this process's.
        pid = state.processes[name].pid
        await until(lambda: state.checkpoint is not None and state.trainer.status == "training")
        if state.processes[name].pid != pid:
            raise RuntimeError("the trainer restarted by itself during a trial")
    before = state.processes[name]
    batch = state.trainer.batch if name == "trainer" and state.trainer else None
    checkpoint = state.checkpoint.batch if name == "trainer" and state.checkpoint else None
    work_before = work_mark(app, name)
    sent = time.monotonic()
    os.kill(
        before.pid, {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "term": signal.SIGTERM}[how]
    )
    await until(lambda: state.processes[name].pid != before.pid)  # None from its exit on
    to_exit_s = time.monotonic() - sent
    await until(lambda: state.processes[name].state == "running")
    restart_s = time.monotonic() - sent
    await until(lambda: work_mark(app, name) != work_before and at_work(app, name))
    back_s = time.monotonic() - sent
    lost = None
    if batch is not None and checkpoint is not None and how != "term":
        lost = batch - checkpoint
    return {
        "restart_s": restart_s,
        "back_s": back_s,
        "exit": state.processes[name].last_exit,
        "to_exit_s": to_exit_s,
        "batches_lost": lost,
    }


def at_work(app: StreamApp, name: str) -> bool:
    """Whether `name` runs and its newest report says it works."""
    state = app.state
    if state.processes[name].state != "running":
        return False
    if name == "trainer":
        return state.trainer is not None and state.trainer.status in (
            "training",
            "waiting_for_data",
        )
    if name == "driver":
        return state.driver is not None and state.driver.pps > 0
    return name in state.collectors


def work_mark(app: StreamApp, name: str) -> object:
    """The newest report of `name`'s kind: a new object once the replacement reports."""
    state = app.state
    if name == "trainer":
        return state.trainer
    if name == "driver":
        return state.driver
    report = state.collectors.get(name)
    return None if report is None else report.source  # a restart reports as a new source


def report(name: str, how: str, trials: list[dict]) -> None:
    """One line per process and signal: p50 and max of each time, exit codes, batches lost."""

    def spread(key: str) -> str:
        values = [trial[key] for trial in trials]
        return f"p50 {statistics.median(values):.2f} s max {max(values):.2f} s"

    line = (
        f"{name:12s} {how:4s} x{len(trials)}: to exit {spread('to_exit_s')}; restarted "
        f"{spread('restart_s')}; back at work {spread('back_s')}; "
        f"exits {sorted({trial['exit'] for trial in trials})}"
    )
    lost = [trial["batches_lost"] for trial in trials if trial["batches_lost"] is not None]
    if lost:
        line += f"; batches lost p50 {statistics.median(lost):g} max {max(lost)}"
    print(line, flush=True)


async def until(condition: Callable[[], bool]) -> None:
    """Poll the app's state (this is a benchmark: 20 ms is precise enough)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the stream did not get there")
        await asyncio.sleep(POLL_S)


if __name__ == "__main__":
    main()
