"""The node processes end to end: a real Hub, a real collector, trainer and driver subprocess.

TensorFlow takes many seconds to start on two shared cores, so the module runs
ONE small stream (tiny frames and buffers, the demo line) and each test checks
one thing about it, awaiting what the hub records: sets reach the trainer and
train it, its checkpoints reach the driver, a switch moves both to another
version, SIGTERM makes the trainer checkpoint. The tests run in file order;
each waits for its own condition, so one alone works too (the later ones change
the stream: switch, then stop the trainer).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from engine.app.hub import Hub
from engine.core.config import HubConfig
from engine.core.store import AppState, VersionStreamed
from engine.core.wire import SwitchModel
from engine.data.storage import SampleStorage
from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV
from engine.node.hub_files import HUB_DATA_DIR_ENV
from models.checkpoints import list_checkpoints
from models.registry import Registry, version_dir
from tests.driver_helpers import create_version
from tests.stream_helpers import TINY_STREAM_CONFIG, NodeStream, nodes_joined

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "node-test-token"
# Generous: TensorFlow start-up in two processes at once on two shared cores.
START_S = 90.0
WAIT_S = 45.0
CONFIG = TINY_STREAM_CONFIG


@dataclass(kw_only=True)
class Stream(NodeStream):
    """The running hub and nodes, and where their files and logs are."""

    data_dir: Path
    versions: tuple[str, str]

    async def exit_code(self, name: str, timeout: float = WAIT_S) -> int:
        """Wait for a node process to end; its exit code."""
        process = self.processes[name]
        try:
            return await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not exit within {timeout:g} s\n{self.log_tails()}")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stream(tmp_path_factory) -> AsyncIterator[Stream]:
    root = tmp_path_factory.mktemp("stream")
    data_dir = root / "data"
    config_path = root / "config.toml"
    config_path.write_text(CONFIG.format(data_dir=data_dir), encoding="utf-8")
    versions = (create_version(data_dir), create_version(data_dir))
    state = AppState()
    state.apply(VersionStreamed(versions[0], created=""))
    hub = Hub(HubConfig(port=0), TOKEN, state)
    await hub.start()
    # The app's own children: they share its data directory, so checkpoints are not copied.
    env = {
        **os.environ,
        HUB_URL_ENV: hub.url(),
        HUB_TOKEN_ENV: TOKEN,
        HUB_DATA_DIR_ENV: str(data_dir),
    }
    config = ("--config", str(config_path))
    commands = {
        "trainer": ("engine.trainer.node", *config, "--model", versions[0]),
        "driver": ("engine.driver.node", *config, "--model", versions[0]),
        "collector-0": ("engine.collector.node", *config, "--index", "0"),
    }
    logs = root / "logs"
    async with nodes_joined(
        hub, commands, env=env, cwd=root, logs=logs, start_s=START_S, stop_s=30.0
    ) as started:
        yield Stream(
            state=state,
            hub=hub,
            processes=started,
            logs=logs,
            wait_s=WAIT_S,
            data_dir=data_dir,
            versions=versions,
        )


async def test_collector_sets_reach_the_trainer_which_trains_batches(stream):
    v1 = stream.versions[0]
    await stream.until(
        lambda: (
            stream.state.trainer is not None
            and stream.state.trainer.version == v1
            and stream.state.trainer.status == "training"
            and stream.state.trainer.batch >= 1
        ),
        f"the trainer to train {v1} on collected sets",
    )
    assert set(stream.state.trainer.loss) == {"total", "steering", "throttle_brake"}


async def test_collector_reports_are_stored_next_to_the_samples(stream):
    path = stream.data_dir / "samples" / "samples.db"

    def stored() -> dict:
        with SampleStorage(path, capacity=100) as storage:
            return storage.collector_stats()

    await stream.until(lambda: path.exists() and stored(), "a collector report in storage")
    (source, report), *_ = stored().items()
    assert source.startswith("collector-0@")
    assert set(report["balance"]["balancers"]) == {"steering", "throttle_brake"}


async def test_the_trainers_checkpoints_are_loaded_by_the_driver(stream):
    v1 = stream.versions[0]
    await stream.until(
        lambda: (
            stream.state.driver is not None
            and stream.state.driver.version == v1
            and stream.state.driver.batch > 0
        ),
        "the driver to load a checkpoint the trainer announced",
    )
    checkpoints = [c.batch for c in list_checkpoints(version_dir(stream.data_dir, v1))]
    assert stream.state.driver.batch % 2 == 0  # checkpoint_every = 2
    assert stream.state.driver.batch <= max(checkpoints)


async def test_switch_model_moves_trainer_and_driver_to_another_version(stream):
    v1, v2 = stream.versions
    # Let v1 train (and checkpoint) first, so its period has something to close.
    await stream.until(
        lambda: stream.state.trainer is not None and stream.state.trainer.batch >= 1,
        "the trainer to train a batch",
    )
    assert await stream.hub.send("trainer", SwitchModel(version=v2)) == 1
    assert await stream.hub.send("driver", SwitchModel(version=v2)) == 1
    await stream.until(
        lambda: stream.state.trainer.version == v2 and stream.state.driver.version == v2,
        f"trainer and driver to move to {v2}",
    )
    with Registry(stream.data_dir) as registry:
        (period,) = registry.periods(v1)
        trained = registry.version(v1).batches_trained
    assert period.streamed and period.ended is not None
    assert (
        period.end_batch == trained == list_checkpoints(version_dir(stream.data_dir, v1))[-1].batch
    )


async def test_sigterm_makes_the_trainer_checkpoint_and_exit_0(stream):
    await stream.until(
        lambda: (
            stream.state.trainer is not None
            and stream.state.trainer.status == "training"
            and stream.state.trainer.batch >= 1
        ),
        "the trainer to train a batch",
    )
    version = stream.state.trainer.version
    stream.processes["trainer"].send_signal(signal.SIGTERM)
    assert await stream.exit_code("trainer") == 0
    await stream.until(lambda: stream.state.trainer.status == "stopped", "the last status")
    last = stream.state.trainer
    assert last.version == version
    assert list_checkpoints(version_dir(stream.data_dir, version))[-1].batch == last.batch
    with Registry(stream.data_dir) as registry:
        assert registry.periods(version)[-1].ended is not None
