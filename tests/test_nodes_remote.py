"""A trainer and a driver on "other machines": their own data directories, joined to a real hub.

The streaming PC is the hub with its model files and the app's actions
(timeline, switches) over `streaming-pc/`; the trainer node runs on `gpu-box/`
and the driver node on `other-pc/`, each with no `CHARLES_HUB_DATA_DIR`, as a
node started on another machine is. A collector (a local one) feeds the
trainer. Checks: the trainer's checkpoints reach the hub (verified, in its
registry with their period) and the driver, which loads them; a switch moves
both, and the timeline and registry on the streaming PC say what a local
trainer's would. TensorFlow in two processes on two shared cores: one module
stream, tests in file order, each awaiting what the hub records.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.app.model_files import ModelFiles
from engine.core.config import HubConfig
from engine.core.store import AppState
from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV
from engine.node.hub_files import HUB_DATA_DIR_ENV
from models.checkpoints import list_checkpoints
from models.registry import Registry, version_dir
from models.transfer import checkpoint_files
from tests.driver_helpers import create_version
from tests.stream_helpers import TINY_STREAM_CONFIG

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "remote-node-test-token"
START_S = 240.0
WAIT_S = 180.0


@dataclass
class Stream:
    """The hub and the nodes, and each machine's data directory."""

    state: AppState
    hub: Hub
    actions: StreamActions
    files: ModelFiles
    hub_dir: Path
    trainer_dir: Path
    driver_dir: Path
    versions: tuple[str, str]
    processes: dict[str, subprocess.Popen]
    logs: Path

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_S):
        """Wait for `condition` (checked as the hub records messages); fail naming `what`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{self.log_tails()}")
            await asyncio.sleep(0.05)

    def checkpoints(self, data_dir: Path, version: str) -> list[int]:
        return [c.batch for c in list_checkpoints(version_dir(data_dir, version))]

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-25:])
            for path in sorted(self.logs.glob("*.log"))
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stream(tmp_path_factory) -> AsyncIterator[Stream]:
    root = tmp_path_factory.mktemp("machines")
    dirs = {name: root / name for name in ("streaming-pc", "gpu-box", "other-pc")}
    configs = {}
    for name, data_dir in dirs.items():
        configs[name] = root / f"{name}.toml"
        configs[name].write_text(TINY_STREAM_CONFIG.format(data_dir=data_dir), encoding="utf-8")
    hub_dir = dirs["streaming-pc"]
    versions = (create_version(hub_dir), create_version(hub_dir))
    state = AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, state)
    files = ModelFiles(hub_dir, TOKEN, state, keep=3)
    files.add_routes(hub.app)
    actions = StreamActions(hub_dir, state, hub)
    hub.set_action_handler(actions)
    await hub.start()
    await actions.switch(versions[0], user="app")
    env = {**os.environ, HUB_URL_ENV: hub.url(), HUB_TOKEN_ENV: TOKEN}
    env.pop(HUB_DATA_DIR_ENV, None)
    logs = root / "logs"
    logs.mkdir()
    commands = {
        "trainer": ("gpu-box", "engine.trainer.node", "--model", versions[0]),
        "driver": ("other-pc", "engine.driver.node", "--model", versions[0]),
        "collector-0": ("streaming-pc", "engine.collector.node", "--index", "0"),
    }
    processes = {}
    for name, (machine, module, *args) in commands.items():
        with (logs / f"{name}.log").open("wb") as log_file:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", module, "--config", str(configs[machine]), *args],
                env=env,
                cwd=Path(__file__).resolve().parents[1],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
    running = Stream(
        state,
        hub,
        actions,
        files,
        hub_dir,
        dirs["gpu-box"],
        dirs["other-pc"],
        versions,
        processes,
        logs,
    )
    try:
        await running.until(
            lambda: {"trainer", "driver", "collector-0"} <= set(state.nodes),
            "all three nodes to connect",
            timeout=START_S,
        )
        yield running
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            # Off the event loop: the trainer ships its last checkpoint to this hub on its way out.
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        await hub.stop()


async def test_the_remote_trainers_checkpoints_reach_the_hub_and_its_registry(stream):
    v1 = stream.versions[0]
    await stream.until(
        lambda: stream.checkpoints(stream.hub_dir, v1) and stream.state.checkpoint is not None,
        f"a checkpoint of {v1} on the streaming PC, announced",
    )
    announced = stream.state.checkpoint
    hub_copy = version_dir(stream.hub_dir, v1) / f"batch-{announced.batch:012d}"
    assert checkpoint_files(hub_copy) == announced.files  # the trainer's list, verified
    assert str(stream.trainer_dir) in announced.path  # saved on the GPU box
    with Registry(stream.hub_dir) as registry:
        (period,) = registry.periods(v1)
    assert period.streamed and period.end_batch >= announced.batch > 0


async def test_the_remote_driver_fetches_the_checkpoints_and_drives_with_them(stream):
    v1 = stream.versions[0]
    await stream.until(
        lambda: (
            stream.state.driver is not None
            and stream.state.driver.version == v1
            and stream.state.driver.batch > 0
        ),
        "the driver on the other PC to load a checkpoint",
    )
    batch = stream.state.driver.batch
    mine = version_dir(stream.driver_dir, v1) / f"batch-{batch:012d}"
    theirs = version_dir(stream.trainer_dir, v1) / f"batch-{batch:012d}"
    if theirs.exists():  # not pruned yet on the GPU box
        assert checkpoint_files(mine) == checkpoint_files(theirs)
    assert batch in stream.checkpoints(stream.driver_dir, v1)


async def test_a_switch_reaches_the_remote_nodes_and_the_timeline_is_the_streaming_pcs(stream):
    v1, v2 = stream.versions
    await stream.until(lambda: stream.checkpoints(stream.hub_dir, v1), "a checkpoint of v1")

    await stream.actions.switch(v2, user="test")
    await stream.until(
        lambda: (
            stream.state.trainer is not None
            and stream.state.trainer.version == v2
            and stream.state.driver.version == v2
        ),
        f"the remote trainer and driver to move to {v2}",
    )
    # The GPU box closes v1's period after its last checkpoint; the hub mirrors both.
    await stream.until(
        lambda: _ended(stream.hub_dir, v1), f"{v1}'s period, ended, in the hub's registry"
    )
    newest = stream.checkpoints(stream.hub_dir, v1)[-1]
    await stream.actions.switch(v1, user="test")
    await stream.until(
        lambda: (
            stream.state.trainer is not None
            and stream.state.trainer.version == v1
            and stream.state.driver.version == v1
        ),
        f"the remote trainer and driver to move back to {v1}",
    )

    rows = [event.describe() for event in stream.actions.timeline.events()]
    assert rows[0] == f"started streaming {v1} from batch 0 (from scratch)"
    assert rows[1].startswith(f"stopped streaming {v1} at batch ")
    assert rows[2] == f"started streaming {v2} from batch 0 (from scratch)"
    assert rows[4] == f"started streaming {v1} from batch {newest:,} (continuing training)"
    with Registry(stream.hub_dir) as registry:
        assert registry.version(v1).batches_trained == newest


def _ended(data_dir: Path, version: str) -> bool:
    with Registry(data_dir) as registry:
        periods = registry.periods(version)
    return bool(periods) and periods[-1].ended is not None


async def test_sigterm_the_remote_trainer_ships_its_last_checkpoint_before_it_exits(stream):
    await stream.until(
        lambda: (
            stream.state.trainer is not None
            and stream.state.trainer.status == "training"
            and stream.state.trainer.batch >= 1
        ),
        "the trainer to train a batch",
    )
    version = stream.state.trainer.version
    trainer = stream.processes["trainer"]

    trainer.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(trainer.wait, WAIT_S)

    assert code == 0
    last = stream.state.trainer
    assert last.status == "stopped" and last.version == version
    assert stream.checkpoints(stream.hub_dir, version)[-1] == last.batch
    assert _ended(stream.hub_dir, version)
