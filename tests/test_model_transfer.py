"""Checkpoints and versions between machines: a real hub, real HTTP, separate data directories.

Each data directory stands for a machine: `hub_dir` is the streaming PC's
(the app's registry, where the hub stores checkpoints), `trainer_dir` a GPU
box's, `driver_dir` another PC's. The node side is the real `HubFiles` over
127.0.0.1; checkpoints are real checkpoint directories (random weight bytes,
their metadata and checksum), so no TensorFlow is needed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from engine.app.hub import Hub
from engine.app.model_files import ModelFiles
from engine.core.config import HubConfig, default_config
from engine.core.errors import UsageError
from engine.core.store import AppState
from engine.core.tls import hub_identity
from engine.core.wire import Alert, Checkpointed
from engine.driver.node import ModelSwitcher
from engine.node.client import NodeError
from engine.node.hub_files import HubFiles
from engine.trainer.node import CheckpointShipper
from models.checkpoints import (
    META_FILE,
    WEIGHTS_FILE,
    install_checkpoint,
    list_checkpoints,
    resumable_checkpoint,
    staging_path,
)
from models.registry import Registry, TrainingPeriod, version_dir
from models.tensorboard_log import tensorboard_dir
from models.transfer import (
    FILES_HEADER,
    TransferRefused,
    checkpoint_files,
    fetch_checkpoint,
    read_files,
    send_curves,
    send_period,
    sync_version,
    upload_checkpoint,
)
from tests.driver_helpers import create_version
from tests.hub_helpers import TOKEN, wait_until

ROOT = Path(__file__).resolve().parents[1]


class Machines:
    """The hub (with its model files) and three data directories."""

    def __init__(self, root: Path, hub, files: ModelFiles, version: str) -> None:
        self.root = root
        self.hub = hub
        self.files = files
        self.version = version
        self.hub_dir = files.data_dir
        self.trainer_dir = root / "gpu-box"
        self.driver_dir = root / "other-pc"
        self.http = HubFiles(hub.url(), TOKEN)

    def checkpoints(self, data_dir: Path) -> list[int]:
        return [c.batch for c in list_checkpoints(version_dir(data_dir, self.version))]

    def hidden(self, data_dir: Path) -> list[str]:
        directory = version_dir(data_dir, self.version)
        return [p.name for p in directory.iterdir() if p.name.startswith(".")]


@pytest_asyncio.fixture
async def machines(tmp_path) -> AsyncIterator[Machines]:
    hub_dir = tmp_path / "streaming-pc"
    version = create_version(hub_dir)
    state = AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, state)
    files = ModelFiles(hub_dir, TOKEN, state, keep=3)
    files.add_routes(hub.app)
    await hub.start()
    try:
        yield Machines(tmp_path, hub, files, version)
    finally:
        await hub.stop()


def make_checkpoint(data_dir: Path, version: str, batch: int, size: int = 3 << 20) -> Path:
    """A checkpoint as the trainer's saver leaves it: weights, metadata with their SHA-256."""
    directory = version_dir(data_dir, version)
    directory.mkdir(parents=True, exist_ok=True)
    staging = staging_path(directory, batch, "test")
    staging.mkdir()
    weights = os.urandom(size)
    (staging / WEIGHTS_FILE).write_bytes(weights)
    digest = hashlib.sha256(weights).hexdigest()
    meta = {"batch": batch, "saved_at": datetime.now(UTC).isoformat(), "sha256": digest}
    (staging / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return install_checkpoint(staging, batch, digest, keep=3).path


async def remote_trainer_checkpoint(machines: Machines, batch: int) -> Path:
    """The GPU box holds the version (imported from the hub) and saves a checkpoint."""
    await asyncio.to_thread(
        sync_version, machines.http, machines.trainer_dir, machines.version, keep=3
    )
    return make_checkpoint(machines.trainer_dir, machines.version, batch)


async def test_a_remote_trainers_checkpoint_reaches_a_driver_on_a_third_machine(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    files = checkpoint_files(path)

    sent = await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    fetched = await asyncio.to_thread(
        fetch_checkpoint, machines.http, machines.driver_dir, machines.version, 40, files, keep=3
    )

    assert sent is True
    assert machines.checkpoints(machines.hub_dir) == [40]
    assert checkpoint_files(fetched) == files
    assert (fetched / WEIGHTS_FILE).read_bytes() == (path / WEIGHTS_FILE).read_bytes()
    assert resumable_checkpoint(fetched.parent).batch == 40  # the loader's own checks pass
    assert machines.hidden(machines.hub_dir) == machines.hidden(machines.driver_dir) == []


async def test_a_checkpoint_the_hub_holds_already_is_not_sent_again(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)

    again = await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)

    assert again is False


async def test_a_new_driver_gets_the_version_and_its_newest_checkpoint(machines):
    for batch in (10, 20):
        path = await remote_trainer_checkpoint(machines, batch)
        await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, batch, path)

    copied = await asyncio.to_thread(
        sync_version, machines.http, machines.driver_dir, machines.version, keep=3
    )

    assert copied == 20
    assert machines.checkpoints(machines.driver_dir) == [20]
    with Registry(machines.driver_dir) as mine, Registry(machines.hub_dir) as hubs:
        assert mine.version(machines.version) == hubs.version(machines.version)


async def test_the_hubs_registry_records_a_remote_trainers_period(machines):
    path = await remote_trainer_checkpoint(machines, 0)
    with Registry(machines.trainer_dir) as registry:
        period = registry.open_period(machines.version, streamed=True, start_batch=0)
        registry.record_batches(period.id, 300)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 0, path)
    await asyncio.to_thread(send_period, machines.http, machines.trainer_dir, machines.version)
    with Registry(machines.trainer_dir) as registry:
        registry.close_period(period.id, 450)
    await asyncio.to_thread(send_period, machines.http, machines.trainer_dir, machines.version)

    with Registry(machines.hub_dir) as registry:
        (mirrored,) = registry.periods(machines.version)
        trained = registry.version(machines.version).batches_trained
    assert (mirrored.start_batch, mirrored.end_batch, mirrored.streamed) == (0, 450, True)
    assert mirrored.started == period.started and mirrored.ended is not None
    assert trained == 450


async def test_bytes_flipped_in_transit_are_refused_logged_and_alerted(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    files = checkpoint_files(path)
    body = bytearray(b"".join(read_files(path, files)))
    body[1000] ^= 0x01

    status, reply = await asyncio.to_thread(
        machines.http.request,
        "PUT",
        f"/api/models/{machines.version}/checkpoints/40",
        chunks=[bytes(body)],
        headers={FILES_HEADER: msgspec.json.encode(files).decode()},
    )

    assert status == 422
    assert "model.weights.h5 of batch 40 arrived with SHA-256" in reply["error"]
    assert machines.files.refused == 1
    assert machines.checkpoints(machines.hub_dir) == []
    assert machines.hidden(machines.hub_dir) == []
    alert = machines.hub.state.snapshot().alerts[-1]
    assert alert.kind == "error" and "checkpoint refused" in alert.text


async def test_a_corrupted_copy_on_the_hub_is_refused_and_the_driver_keeps_its_checkpoint(
    machines,
):
    for batch in (10, 20):
        path = await remote_trainer_checkpoint(machines, batch)
        await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, batch, path)
        if batch == 10:
            await asyncio.to_thread(
                sync_version, machines.http, machines.driver_dir, machines.version, keep=3
            )
    hub_weights = version_dir(machines.hub_dir, machines.version) / "batch-000000000020"
    flipped = bytearray((hub_weights / WEIGHTS_FILE).read_bytes())
    flipped[-1] ^= 0x80
    (hub_weights / WEIGHTS_FILE).write_bytes(bytes(flipped))

    with pytest.raises(TransferRefused, match="arrived with SHA-256"):
        await asyncio.to_thread(
            fetch_checkpoint,
            machines.http,
            machines.driver_dir,
            machines.version,
            20,
            checkpoint_files(path),  # the trainer's list, as Checkpointed carries it
            keep=3,
        )

    assert machines.checkpoints(machines.driver_dir) == [10]
    assert machines.hidden(machines.driver_dir) == []


def _child(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.children.transfer", *arguments],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def _killed_halfway(child: subprocess.Popen) -> None:
    line = await asyncio.to_thread(child.stdout.readline)
    assert line.strip() == "halfway"
    child.send_signal(signal.SIGKILL)
    await asyncio.to_thread(child.wait)


async def test_an_uploader_killed_mid_transfer_leaves_no_checkpoint_on_the_hub(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    child = _child("upload", machines.hub.url(), TOKEN, machines.version, "40", str(path))

    await _killed_halfway(child)
    await wait_until(lambda: machines.files.dropped == 1)

    assert machines.checkpoints(machines.hub_dir) == []
    assert machines.hidden(machines.hub_dir) == []
    # The hub goes on taking checkpoints.
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    assert machines.checkpoints(machines.hub_dir) == [40]


async def test_a_driver_killed_mid_fetch_leaves_nothing_a_load_would_take(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    files = checkpoint_files(path)
    child = _child(
        "fetch",
        machines.hub.url(),
        TOKEN,
        str(machines.driver_dir),
        machines.version,
        "40",
        msgspec.json.encode(files).decode(),
    )

    await _killed_halfway(child)

    assert machines.checkpoints(machines.driver_dir) == []
    assert resumable_checkpoint(version_dir(machines.driver_dir, machines.version)) is None
    assert len(machines.hidden(machines.driver_dir)) == 1  # the dead transfer's staging
    await asyncio.to_thread(
        fetch_checkpoint, machines.http, machines.driver_dir, machines.version, 40, files, keep=3
    )
    assert machines.checkpoints(machines.driver_dir) == [40]
    assert machines.hidden(machines.driver_dir) == []  # removed by the next install


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "words"),
    [
        ("GET", "/api/models/{v}", {"Authorization": "Bearer wrong"}, 401, "wrong token"),
        ("GET", "/api/models/Not-A-Version", None, 400, "accepted: LINE_vN"),
        ("GET", "/api/models/model_0000_demo_v9", None, 404, "unknown model version"),
        ("GET", "/api/models/{v}/checkpoints/-3", None, 400, "batch '-3' is not accepted"),
        ("PUT", "/api/models/{v}/curves/notes.txt", None, 400, "accepted: a TensorBoard event"),
        ("PUT", "/api/models/model_0000_demo_v9/curves/events.out.tfevents.1", None, 404, "unk"),
        ("GET", "/api/models/{v}/checkpoints/40", None, 404, "holds no checkpoint"),
        ("GET", "/api/models/{v}/checkpoints/40/secrets", None, 404, "accepted: model.weights"),
        ("PUT", "/api/models/{v}/checkpoints/40", None, 400, "X-Charles-Checkpoint-Files is"),
        (
            "PUT",
            "/api/models/{v}/checkpoints/40",
            {FILES_HEADER: '[{"name": "x.bin", "size": 1, "sha256": "00"}]'},
            400,
            "'files[0].sha256' = '00'",
        ),
    ],
)
async def test_bad_requests_are_refused_naming_what_is_accepted(
    machines, method, path, headers, status, words
):
    sent = dict(headers or {})
    http = HubFiles(machines.hub.url(), "wrong" if "Authorization" in sent else TOKEN)
    sent.pop("Authorization", None)
    chunks = [b"x"] if method == "PUT" else None

    got, reply = await asyncio.to_thread(
        http.request, method, path.format(v=machines.version), chunks=chunks, headers=sent
    )

    assert got == status
    assert words in reply["error"]


def test_a_data_directory_holding_another_version_of_that_name_is_refused(tmp_path):
    hub_version = create_version(tmp_path / "hub")
    create_version(tmp_path / "node")  # made on its own: another creation time
    with Registry(tmp_path / "hub") as registry:
        theirs = registry.version(hub_version)

    with Registry(tmp_path / "node") as registry, pytest.raises(UsageError, match="holds another"):
        registry.import_version(theirs)


def test_a_mirrored_period_closes_the_versions_older_open_period(tmp_path):
    version = create_version(tmp_path)
    with Registry(tmp_path) as registry:
        older = registry.open_period(version, streamed=True, start_batch=0)
        registry.record_batches(older.id, 100)
        registry.mirror_period(
            TrainingPeriod(0, version, datetime.now(UTC), None, 100, 250, streamed=True)
        )
        periods = registry.periods(version)
        trained = registry.version(version).batches_trained
    assert [(p.start_batch, p.end_batch, p.ended is None) for p in periods] == [
        (0, 100, False),
        (100, 250, True),
    ]
    assert trained == 250


# -- the nodes' side: the driver's model-switch thread and the trainer's shipper --------------


@dataclass(frozen=True)
class _NewCheckpoint:
    """What the trainer hands its `on_checkpoint` (engine.trainer.trainer.NewCheckpoint)."""

    version: str
    batch: int
    path: Path


class _Driver:
    """Records the weights offered to it, as `Driver.offer_weights` receives them."""

    def __init__(self) -> None:
        self.offered: list[tuple[str, int, Path]] = []

    def offer_weights(self, version: str, batch: int, path: str | Path) -> None:
        self.offered.append((version, batch, Path(path)))


def _switcher(machines: Machines, sent: list) -> ModelSwitcher:
    config = default_config()
    config = msgspec.structs.replace(
        config, app=msgspec.structs.replace(config.app, data_dir=str(machines.driver_dir))
    )
    switcher = ModelSwitcher(config, hub=machines.http)
    switcher._send = sent.append
    return switcher


async def test_the_driver_node_offers_a_fetched_checkpoint_from_its_own_data_directory(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    announced = Checkpointed(machines.version, 40, str(path), files=checkpoint_files(path))
    driver, sent = _Driver(), []

    await asyncio.to_thread(_switcher(machines, sent)._offer, driver, announced)

    mine = version_dir(machines.driver_dir, machines.version) / "batch-000000000040"
    assert driver.offered == [(machines.version, 40, mine)]
    assert sent == []


async def test_the_driver_node_refuses_a_corrupted_checkpoint_alerts_and_offers_nothing(machines):
    path = await remote_trainer_checkpoint(machines, 40)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    hub_weights = version_dir(machines.hub_dir, machines.version) / "batch-000000000040"
    flipped = bytearray((hub_weights / WEIGHTS_FILE).read_bytes())
    flipped[0] ^= 0x01
    (hub_weights / WEIGHTS_FILE).write_bytes(bytes(flipped))
    announced = Checkpointed(machines.version, 40, str(path), files=checkpoint_files(path))
    driver, sent = _Driver(), []
    switcher = _switcher(machines, sent)

    await asyncio.to_thread(switcher._offer, driver, announced)

    assert driver.offered == [] and switcher.refused == 1
    (alert,) = sent
    assert alert.kind == "error" and "checkpoint refused" in alert.text
    assert machines.checkpoints(machines.driver_dir) == []


async def test_the_trainer_nodes_shipper_announces_only_what_the_hub_took(machines):
    good = await remote_trainer_checkpoint(machines, 10)
    bad = make_checkpoint(machines.trainer_dir, machines.version, 20)
    with (bad / WEIGHTS_FILE).open("r+b") as weights:  # the disk flipped a bit after the save
        weights.write(b"\x00")
    sent: list = []
    shipper = CheckpointShipper(machines.http, machines.trainer_dir, sent.append)

    shipper.ship(_NewCheckpoint(machines.version, 10, good))
    await asyncio.to_thread(shipper.close)
    shipper = CheckpointShipper(machines.http, machines.trainer_dir, sent.append)
    shipper.ship(_NewCheckpoint(machines.version, 20, bad))
    await asyncio.to_thread(shipper.close)

    announced, refused = sent
    assert isinstance(announced, Checkpointed) and announced.batch == 10
    assert announced.files == checkpoint_files(good)
    assert isinstance(refused, Alert) and "refused" in refused.text
    assert machines.checkpoints(machines.hub_dir) == [10]


async def test_a_remote_trainers_curves_go_with_its_checkpoints_and_only_when_they_grew(machines):
    """The streaming PC's model pages draw a GPU box's losses from the copies the hub keeps."""
    path = await remote_trainer_checkpoint(machines, 10)
    curves = tensorboard_dir(machines.trainer_dir, machines.version)
    curves.mkdir(parents=True)
    events = curves / "events.out.tfevents.1796400000.gpu-box.4242.0.v2"
    events.write_bytes(b"the first points")
    (curves / "notes.txt").write_text("not an event file")  # stays on the GPU box
    hub_copy = tensorboard_dir(machines.hub_dir, machines.version) / events.name
    sent: list = []
    shipper = CheckpointShipper(machines.http, machines.trainer_dir, sent.append)
    shipper.ship(_NewCheckpoint(machines.version, 10, path))
    await asyncio.to_thread(shipper.close)
    assert hub_copy.read_bytes() == b"the first points"
    assert [p.name for p in hub_copy.parent.iterdir()] == [events.name]  # no partial, no notes

    memory: dict[str, int] = {}
    took = partial(send_curves, machines.http, machines.trainer_dir, machines.version, memory)
    assert await asyncio.to_thread(took) == 1
    assert await asyncio.to_thread(took) == 0  # unchanged: not sent again
    with events.open("ab") as appended:  # the writer appends the next points
        appended.write(b", then more")
    assert await asyncio.to_thread(took) == 1
    assert hub_copy.read_bytes() == b"the first points, then more"


# -- over TLS, as a node on another machine reaches a hub beyond loopback ---------------------


@contextlib.asynccontextmanager
async def _tls_model_files(tmp_path: Path) -> AsyncIterator[tuple[int, str, str]]:
    """The hub's model files served with TLS on 127.0.0.1: (port, fingerprint, version)."""
    identity = hub_identity("", "", tmp_path / "secrets-home")
    version = create_version(tmp_path / "streaming-pc")
    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, AppState())
    ModelFiles(tmp_path / "streaming-pc", TOKEN, hub.state, keep=3).add_routes(hub.app)
    runner = web.AppRunner(hub.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=identity.server_context())
    await site.start()
    try:
        yield runner.addresses[0][1], identity.fingerprint, version
    finally:
        await runner.cleanup()


async def test_a_node_fetches_over_tls_from_the_hub_it_pinned(tmp_path):
    async with _tls_model_files(tmp_path) as (port, fingerprint, version):
        http = HubFiles(
            f"wss://127.0.0.1:{port}/ws/node",
            TOKEN,
            fingerprint=bytes.fromhex(fingerprint.replace(":", "")),
        )
        await asyncio.to_thread(sync_version, http, tmp_path / "gpu-box", version, keep=3)

    with Registry(tmp_path / "gpu-box") as registry:
        assert registry.version(version).name == version


async def test_a_node_refuses_a_hub_with_another_certificate_before_the_token_goes(tmp_path):
    async with _tls_model_files(tmp_path) as (port, _, version):
        http = HubFiles(f"wss://127.0.0.1:{port}/ws/node", TOKEN, fingerprint=b"\xab" * 32)
        with pytest.raises(ConnectionRefusedError, match="is not the pinned one"):
            await asyncio.to_thread(http.request, "GET", f"/api/models/{version}")


def test_plain_http_to_a_hub_beyond_loopback_is_refused():
    with pytest.raises(NodeError, match="would cross the network in clear"):
        HubFiles("ws://192.168.1.10:8765/ws/node", TOKEN)


async def test_the_streaming_pcs_driver_loads_a_remote_trainers_checkpoint_where_the_hub_put_it(
    machines,
):
    path = await remote_trainer_checkpoint(machines, 40)
    await asyncio.to_thread(upload_checkpoint, machines.http, machines.version, 40, path)
    announced = Checkpointed(machines.version, 40, str(path), files=checkpoint_files(path))
    config = default_config()
    config = msgspec.structs.replace(
        config, app=msgspec.structs.replace(config.app, data_dir=str(machines.hub_dir))
    )
    switcher = ModelSwitcher(config, hub=None)  # the app's own driver: its data directory
    driver = _Driver()

    await asyncio.to_thread(switcher._offer, driver, announced)

    installed = version_dir(machines.hub_dir, machines.version) / "batch-000000000040"
    assert driver.offered == [(machines.version, 40, installed)]
    assert switcher.fetched == 0  # zero copies: the upload is where a local trainer saves
