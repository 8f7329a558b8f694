"""A trainer and a driver on "other machines": their own data directories, joined to a real hub.

The streaming PC is the hub with its model files and the app's actions
(timeline, switches) over `streaming-pc/`; the trainer node runs on `gpu-box/`
and the driver node on `other-pc/`, each with no `CHARLES_HUB_DATA_DIR`, as a
node started on another machine is. A collector (a local one) feeds the
trainer. Checks: the trainer's checkpoints reach the hub (verified, in its
registry with their period, its TensorBoard curves beside them) and the
driver, which loads them; a switch moves both, switched back they take the
version up from its newest checkpoint, and the timeline and registry on the
streaming PC say what a local trainer's would. TensorFlow in two processes on
two shared cores: one module stream, tests in file order, each awaiting what
the hub records.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
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
from models.loss_chart import read_loss_curves
from models.registry import Registry, version_dir
from models.tensorboard_log import tensorboard_dir
from models.transfer import checkpoint_files
from tests.driver_helpers import create_version
from tests.stream_helpers import TINY_STREAM_CONFIG, NodeStream, nodes_joined

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "remote-node-test-token"
START_S = 240.0
WAIT_S = 180.0


@dataclass(kw_only=True)
class Stream(NodeStream):
    """The hub and the nodes, and each machine's data directory."""

    actions: StreamActions
    files: ModelFiles
    hub_dir: Path
    trainer_dir: Path
    driver_dir: Path
    versions: tuple[str, str]

    def checkpoints(self, data_dir: Path, version: str) -> list[int]:
        return [c.batch for c in list_checkpoints(version_dir(data_dir, version))]


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
    commands = {
        "trainer": (
            "engine.trainer.node", "--config", str(configs["gpu-box"]), "--model", versions[0],
        ),
        "driver": (
            "engine.driver.node", "--config", str(configs["other-pc"]), "--model", versions[0],
        ),
        "collector-0": (
            "engine.collector.node", "--config", str(configs["streaming-pc"]), "--index", "0",
        ),
    }  # fmt: skip
    logs = root / "logs"
    repo = Path(__file__).resolve().parents[1]
    # 60 s to stop: the trainer ships its last checkpoint to this hub on its way out.
    async with nodes_joined(
        hub, commands, env=env, cwd=repo, logs=logs, start_s=START_S, stop_s=60.0
    ) as started:
        yield Stream(
            state=state,
            hub=hub,
            processes=started,
            logs=logs,
            wait_s=WAIT_S,
            actions=actions,
            files=files,
            hub_dir=hub_dir,
            trainer_dir=dirs["gpu-box"],
            driver_dir=dirs["other-pc"],
            versions=versions,
        )


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
    # Its TensorBoard curves come along: the streaming PC's model pages draw them.
    await stream.until(
        lambda: "total" in read_loss_curves(tensorboard_dir(stream.hub_dir, v1)),
        f"the GPU box's loss curves of {v1} on the streaming PC",
    )


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
    if theirs.exists() and mine.exists():  # not pruned yet on either PC
        assert checkpoint_files(mine) == checkpoint_files(theirs)
    # Fetched into the other PC's own data directory. On a busy machine newer ones may have
    # come meanwhile and pruned it to [models] keep_checkpoints: only newer, never older.
    local = stream.checkpoints(stream.driver_dir, v1)
    assert batch in local or (local and min(local) > batch), (batch, local)


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
    # Both take v1 up where the GPU box left it, as local nodes would: the trainer resumes
    # from that checkpoint, the driver drives with it (or a newer one).
    resumed = f"training {v1} from batch {newest} (streamed)"
    await stream.until(
        lambda: resumed in (stream.logs / "trainer.log").read_text(errors="replace"),
        f"the GPU box's trainer to log {resumed!r}",
    )
    await stream.until(
        lambda: stream.state.driver.version == v1 and stream.state.driver.batch >= newest,
        f"the other PC's driver to drive {v1} with batch {newest} or newer",
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
