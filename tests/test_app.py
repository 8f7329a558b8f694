"""The stream app end to end: hub, supervisor, a collector, the trainer and the driver, for real.

TensorFlow takes many seconds to start on two shared cores, so the module runs
ONE small app (tiny frames and buffers, the demo line) in the test's event
loop, and each test checks one thing about it, awaiting what the app records.
The tests run in file order and change the stream as they go (switch, kills);
each waits for its own condition. The last test runs the real `charles-stream`
command in a subprocess and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from engine.app.app import StreamApp
from engine.core.config import load_config
from engine.data.storage import SampleStorage, default_storage_path
from engine.records.timeline import Timeline
from models.checkpoints import list_checkpoints
from models.registry import version_dir
from tests.stream_helpers import TINY_STREAM_CONFIG

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# Generous: TensorFlow start-up in two processes at once on two shared cores.
START_S = 120.0
WAIT_S = 60.0
CONFIG = (
    TINY_STREAM_CONFIG
    + """
[hub]
port = {port}

[stream]
collectors = 1

[supervisor]
backoff_s = 0.2
# Small liveness bounds, so a frozen process is found within the test's patience; still far
# above what a busy machine's slowest step takes (the trainer's first compile, a model build).
liveness_trainer_s = 45.0
liveness_driver_s = 20.0
liveness_collector_s = 10.0
"""
)


def write_config(directory: Path, port: int = 0) -> Path:
    path = directory / "config.toml"
    path.write_text(CONFIG.format(data_dir=directory / "data", port=port), encoding="utf-8")
    return path


async def wait_for(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait for something the app's tasks or processes make true (there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(tmp_path_factory) -> AsyncIterator[StreamApp]:
    directory = tmp_path_factory.mktemp("app")
    path = write_config(directory)
    stream = StreamApp(load_config(path), config_path=str(path))
    await stream.start()
    try:
        yield stream
    finally:
        await stream.stop()


def api(app: StreamApp, route: str) -> str:
    return f"http://127.0.0.1:{app.hub.port}/api/{route}"


async def test_the_app_trains_and_drives_and_reports_it(app):
    state = app.state
    await wait_for(lambda: state.trainer is not None and state.trainer.batch >= 1, START_S)
    await wait_for(lambda: state.driver is not None and state.driver.pps > 0)
    async with aiohttp.ClientSession() as session, session.get(api(app, "status")) as reply:
        status = await reply.json()
    assert status["version"] == "model_0000_demo_v1"
    assert status["created"]
    assert status["batch"] >= 1
    assert status["pps"] > 0
    assert set(status["loss"]) >= {"total", "steering", "throttle_brake"}
    assert status["connections"] == {
        "obs": "off ([obs] enabled = false)",
        "twitch": "not configured",
    }
    assert {name: p["state"] for name, p in status["processes"].items()} == {
        "trainer": "running",
        "driver": "running",
        "collector-0": "running",
    }


async def test_a_switch_moves_trainer_and_driver_and_records_the_timeline(app):
    headers = {"Authorization": f"Bearer {app.token}"}
    body = {"model": "model_0000_demo", "new": True}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(api(app, "switch"), json=body) as reply,
    ):
        assert reply.status == 200
        switched = await reply.json()
    assert switched["version"] == "model_0000_demo_v2"
    assert switched["how"] == "from scratch"
    state = app.state
    await wait_for(lambda: state.trainer is not None and state.trainer.version.endswith("_v2"))
    await wait_for(lambda: state.driver is not None and state.driver.version.endswith("_v2"))
    events = Timeline(app.data_dir).events()
    assert [(e.kind, e.version) for e in events] == [
        ("started", "model_0000_demo_v1"),
        ("stopped", "model_0000_demo_v1"),
        ("started", "model_0000_demo_v2"),
    ]
    assert events[0].how == "from scratch"
    assert events[1].batch >= 1


async def test_a_killed_trainer_is_restarted_resumes_from_its_checkpoint_and_loses_no_sample(app):
    state = app.state
    version = state.version
    await wait_for(lambda: state.checkpoint is not None and state.checkpoint.version == version)
    checkpoint_batch = state.checkpoint.batch
    storage_path = default_storage_path(app.config)
    pid = state.processes["trainer"].pid

    app.supervisor.kill("trainer")
    await wait_for(lambda: state.processes["trainer"].pid not in (None, pid))
    # What the killed trainer left stored; its replacement must train on it, not lose it.
    with SampleStorage(storage_path, capacity=app.config.data.buffer_capacity) as storage:
        left = {row.id for row in storage.load()}
        before = storage.counters()
    await wait_for(
        lambda: (
            state.trainer is not None
            and state.trainer.version == version
            and state.trainer.batch > checkpoint_batch
        ),
        START_S,
    )
    assert state.processes["trainer"].restarts == 1
    with SampleStorage(storage_path, capacity=app.config.data.buffer_capacity) as storage:
        gone = left - {row.id for row in storage.load()}
        after = storage.counters()
    used = sum(after.get(k, 0) - before.get(k, 0) for k in ("samples_drawn", "samples_rotated_out"))
    assert len(gone) <= used


async def test_a_killed_driver_is_restarted_and_drives_again(app):
    state = app.state
    pid = state.processes["driver"].pid
    app.supervisor.kill("driver")
    await wait_for(lambda: state.processes["driver"].pid not in (None, pid))
    before = state.driver
    # Restarted with its first --model, it catches up with the switch the hub greets it with.
    await wait_for(
        lambda: (
            state.driver is not None
            and state.driver is not before
            and state.driver.version == state.version
            and state.driver.pps > 0
        ),
        START_S,
    )
    assert state.processes["driver"].restarts == 1


async def freeze_until_restarted(app: StreamApp, name: str) -> int:
    """SIGSTOP a process (alive, silent: a deadlock); await its restart; return the silence, s."""
    state = app.state
    before = state.processes[name]
    assert before.state == "running" and before.pid is not None
    os.kill(before.pid, signal.SIGSTOP)
    await wait_for(lambda: state.processes[name].restarts > before.restarts, START_S)
    assert state.processes[name].last_exit == -signal.SIGKILL
    prefix = f"{name} (pid {before.pid}) was unresponsive for "
    line = next(event for event in state.events if event.startswith(prefix))
    silent_s, bound_s = map(float, re.findall(r"for (\d+) s \(liveness bound ([\d.]+) s", line)[0])
    assert bound_s <= silent_s <= bound_s + 2.0  # looked at every second, no earlier
    assert any(a.kind == "unresponsive" and a.text.startswith(name) for a in state.alerts)
    return int(silent_s)


async def test_a_frozen_collector_is_restarted_within_its_bound_and_the_trainer_waits(app):
    state = app.state
    await freeze_until_restarted(app, "collector-0")
    await wait_for(lambda: state.processes["collector-0"].state == "running")
    # Meanwhile the trainer had no data to wait for, and waiting is not hanging.
    assert state.processes["trainer"].state == "running"


async def test_a_frozen_driver_is_restarted_within_its_bound_and_drives_again(app):
    state = app.state
    await freeze_until_restarted(app, "driver")
    before = state.driver
    await wait_for(
        lambda: state.driver is not None and state.driver is not before and state.driver.pps > 0,
        START_S,
    )


async def test_a_frozen_trainer_is_restarted_within_its_bound_and_trains_again(app):
    state = app.state
    await freeze_until_restarted(app, "trainer")
    await wait_for(lambda: state.trainer is not None and state.trainer.status == "starting")
    await wait_for(lambda: state.trainer.status in ("training", "waiting_for_data"), START_S)


async def test_no_process_was_restarted_but_the_killed_and_frozen_ones(app):
    # Model builds, first compiles, a switch and waits for data on a busy machine all took
    # less than their bounds: a slow but alive process is never killed.
    restarts = {name: process.restarts for name, process in app.state.processes.items()}
    assert restarts == {"trainer": 2, "driver": 2, "collector-0": 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_sigterm_stops_the_command_cleanly_with_a_checkpoint(tmp_path):
    port = free_port()
    path = write_config(tmp_path, port)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = await wait_for_status(port, lambda s: (s["batch"] or 0) >= 1)
        process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        _, errors = await asyncio.to_thread(process.communicate, timeout=60)
        stopped_in = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors[-3000:]
    assert stopped_in < 12.0  # [supervisor] shutdown_timeout_s = 10, then SIGKILL
    # Each stopped by itself within the bound, none was killed.
    for name in ("driver", "collector-0", "trainer"):
        assert re.search(rf"{name} \(pid \d+\) exited with code 0", errors), (name, errors[-3000:])
    assert "SIGKILL" not in errors, errors[-3000:]
    version = status["version"]
    saved = list_checkpoints(version_dir(tmp_path / "data", version))
    assert saved and saved[-1].batch >= status["batch"]
    last = Timeline(tmp_path / "data").events()[-1]
    assert (last.kind, last.version) == ("stopped", version)
    # The collector stopped before the trainer: its last report, sent after its last set, is
    # stored (the trainer stores what the hub routes to it, in order).
    collector_log = tmp_path / "data" / "logs" / "collector-0.log"
    output = errors + (collector_log.read_text() if collector_log.exists() else "")
    sent = re.findall(r"collector: stopped by SIGTERM after (\d+) sets", output)
    assert len(sent) == 1, errors[-3000:]
    config = load_config(path)
    with SampleStorage(default_storage_path(config), capacity=config.data.buffer_capacity) as db:
        reports = list(db.collector_stats().values())
    assert [report["sets_sent"] for report in reports] == [int(sent[0])]


async def wait_for_status(port: int, condition: Callable[[dict], bool]) -> dict:
    """Poll /api/status of a `charles-stream` subprocess until `condition` holds."""
    deadline = time.monotonic() + START_S
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/api/status") as reply:
                    status = await reply.json()
                if condition(status):
                    return status
            except aiohttp.ClientConnectionError:
                pass  # the app is still starting
            assert time.monotonic() < deadline, "the app never got there"
            await asyncio.sleep(0.2)
