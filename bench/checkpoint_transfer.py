"""Benchmark checkpoints across machines: trainer on one data directory, driver on another.

    .venv/bin/python bench/checkpoint_transfer.py [--rounds 5] [--xception-rounds 3]

All on this machine over 127.0.0.1, each data directory standing for a
machine: a real hub (`engine.app.hub.Hub` with `engine.app.model_files`) over
`streaming-pc/`, the trainer's side on `gpu-box/`, the driver's on `other-pc/`,
with the code the nodes run (`models.transfer` over `engine.node.hub_files`,
`Checkpointed` through the hub's websocket between two `NodeClient`s).

model_0000_demo, per round, from the moment `save_checkpoint` returned on
the trainer's side: upload to the hub (verified, installed) and its training
period -> `Checkpointed` sent and received by the driver's link -> fetched
into the driver's data directory (verified, installed) -> loaded into the
driver's model (the loader checks the checksum again) -> the first
prediction with it. The driver node does the last two at its next unstuck
or `[driver] reload_interval_s`: a policy wait not counted here.

model_0003_xception: the size of a checkpoint with its optimizer state, and
the upload and fetch times over loopback (the hub's side and the node's side
each hash what they receive).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.app.hub import Hub
from engine.app.model_files import ModelFiles
from engine.core.config import HubConfig
from engine.core.store import AppState
from engine.core.wire import Checkpointed, Hello, Message
from engine.node.client import NodeClient
from engine.node.hub_files import HubFiles
from models.build import build_architecture, compile_model
from models.checkpoints import save_checkpoint
from models.registry import Registry, version_dir
from models.spec import ModelSpec
from models.transfer import (
    checkpoint_files,
    fetch_checkpoint,
    send_period,
    sync_version,
    upload_checkpoint,
)
from models.versions import new_version

if TYPE_CHECKING:
    import keras

TOKEN = "bench-token"


class HubThread:
    """The hub and its model files on an event loop of their own thread."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, AppState())
        ModelFiles(data_dir, TOKEN, self.hub.state, keep=3).add_routes(self.hub.app)
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.hub.start(), self.loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.hub.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def trained_model(spec: ModelSpec) -> keras.Model:
    """The version's model as the trainer holds it: compiled, optimizer slots built."""
    model = build_architecture(spec)
    compile_model(model, spec)
    model.optimizer.build(model.trainable_variables)
    return model


def demo_rounds(root: Path, hub: HubThread, rounds: int) -> None:
    from engine.driver.inference import OnePassModel, load_version

    hub_dir, trainer_dir, driver_dir = root / "streaming-pc", root / "gpu-box", root / "other-pc"
    with Registry(hub_dir) as registry:
        version = new_version(registry, "model_0000_demo").name
    http = HubFiles(hub.hub.url(), TOKEN)
    sync_version(http, trainer_dir, version, keep=3)
    sync_version(http, driver_dir, version, keep=3)
    with Registry(trainer_dir) as registry:
        period = registry.open_period(version, streamed=True, start_batch=0)
    trainer_model = trained_model(Registry(trainer_dir).version(version).spec())
    loaded = load_version(driver_dir, version)
    spec = loaded.spec
    one_pass = OnePassModel(loaded.model, spec.output_names, (spec.convcam,))
    frame = np.zeros(one_pass.input_shape, np.uint8)
    arrived: list[tuple[float, Checkpointed]] = []
    ready = threading.Event()

    def on_message(message: Message) -> None:
        if isinstance(message, Checkpointed):
            arrived.append((time.perf_counter(), message))
            ready.set()

    trainer_link = NodeClient(hub.hub.url(), TOKEN, Hello(role="trainer", name="trainer"))
    driver_link = NodeClient(hub.hub.url(), TOKEN, Hello(role="driver", name="driver"), on_message)
    trainer_link.start()
    driver_link.start()
    stages: dict[str, list[float]] = {
        k: [] for k in ("upload", "announce", "fetch", "load", "predict", "total")
    }
    size = 0
    for number in range(1, rounds + 1):
        batch = number * 100
        trainer_model.optimizer.iterations.assign(batch)
        saved = save_checkpoint(trainer_model, version_dir(trainer_dir, version), batch, keep=3)
        t0 = time.perf_counter()
        upload_checkpoint(http, version, batch, saved.path)
        with Registry(trainer_dir) as registry:
            registry.record_batches(period.id, batch)
        send_period(http, trainer_dir, version)
        t1 = time.perf_counter()
        ready.clear()
        trainer_link.send(
            Checkpointed(version, batch, str(saved.path), files=checkpoint_files(saved.path))
        )
        ready.wait(30)
        t2, message = arrived[-1]
        fetch_checkpoint(http, driver_dir, version, batch, message.files, keep=3)
        t3 = time.perf_counter()
        loaded.reload_latest()
        t4 = time.perf_counter()
        one_pass.predict(frame)
        t5 = time.perf_counter()
        assert loaded.batch == batch
        size = sum(file.size for file in message.files)
        for name, seconds in zip(
            stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True
        ):
            stages[name].append(seconds * 1000)
    trainer_link.close()
    driver_link.close()
    print(f"model_0000_demo: checkpoint {size / 1e6:.2f} MB; median of {rounds} rounds, ms:")
    for name, values in stages.items():
        print(f"  {name:9s} {statistics.median(values):8.1f}   (min {min(values):.1f})")


def xception_rounds(root: Path, hub: HubThread, rounds: int) -> None:
    hub_dir, trainer_dir, driver_dir = root / "streaming-pc", root / "gpu-box", root / "other-pc"
    with Registry(hub_dir) as registry:
        version = new_version(registry, "model_0003_xception").name
    http = HubFiles(hub.hub.url(), TOKEN)
    sync_version(http, trainer_dir, version, keep=3)
    model = trained_model(Registry(trainer_dir).version(version).spec())
    uploads, fetches = [], []
    for number in range(1, rounds + 1):
        saved = save_checkpoint(model, version_dir(trainer_dir, version), number, keep=3)
        files = checkpoint_files(saved.path)
        started = time.perf_counter()
        upload_checkpoint(http, version, number, saved.path)
        uploads.append(time.perf_counter() - started)
        started = time.perf_counter()
        fetch_checkpoint(http, driver_dir, version, number, files, keep=3)
        fetches.append(time.perf_counter() - started)
    size = sum(file.size for file in files)
    upload, fetch = statistics.median(uploads), statistics.median(fetches)
    print(
        f"model_0003_xception: checkpoint {size / 1e6:.1f} MB (weights + optimizer state); "
        f"median of {rounds}: upload {upload:.2f} s ({size / upload / 1e6:.0f} MB/s), "
        f"fetch {fetch:.2f} s ({size / fetch / 1e6:.0f} MB/s)"
    )


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="demo checkpoints timed")
    parser.add_argument("--xception-rounds", type=int, default=3, help="0 skips xception")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="charles-transfer-") as folder:
        root = Path(folder)
        hub = HubThread(root / "streaming-pc")
        try:
            demo_rounds(root, hub, args.rounds)
            if args.xception_rounds:
                xception_rounds(root, hub, args.xception_rounds)
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
