"""The trainer on a GPU box: `charles-stream node trainer` in its own namespace, over TLS.

The streaming PC (the hub's namespace) runs the real `charles-stream run`
with a collector and the driver but `[stream] trainer = false`; the GPU box is
another namespace joined by a veth pair (tests/netns.py), with its own data
folder and host name. Across that link, with the token given once and the
hub's certificate pinned on first contact: the GPU box fetches the streamed
version, trains on the collector's sets, and its checkpoints (and curves) go
to the streaming PC, whose driver drives with them; the streaming PC shows
the trainer with its host name. Every wait polls /api/status under a bound
that only ends a hung run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from models.checkpoints import list_checkpoints
from models.registry import version_dir
from models.tensorboard_log import tensorboard_dir
from models.transfer import checkpoint_files
from tests.netns import Lab, network_lab
from tests.stream_helpers import TINY_STREAM_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.tf]

HUB_PORT = 18775
LOCAL_PORT = 18776
VERSION = "model_0000_demo_v1"  # what `run` streams by default
# A command's own host name (a UTS namespace), as on another PC.
AS_GPU_BOX = ["unshare", "--uts", "sh", "-c", 'hostname gpu-box && exec "$@"', "sh"]
# Only ends a hung run: the app, a collector, the driver and a trainer start TensorFlow on
# two busy cores.
HANG_S = 600.0

STREAMING_PC = (
    TINY_STREAM_CONFIG
    + f"""
[hub]
host = "0.0.0.0"
port = {HUB_PORT}
local_port = {LOCAL_PORT}

[stream]
collectors = 1
trainer = false
driver = true
"""
)


def test_a_trainer_on_a_gpu_box_trains_the_stream_and_the_streaming_pcs_driver_drives_with_it(
    tmp_path,
):
    streaming_pc, gpu_box = tmp_path / "streaming-pc", tmp_path / "gpu-box"
    for folder, text in ((streaming_pc, STREAMING_PC), (gpu_box, TINY_STREAM_CONFIG)):
        folder.mkdir()
        (folder / "config.toml").write_text(text.format(data_dir=folder / "data"), encoding="utf-8")
    with network_lab(["gpu"]) as lab:
        processes: list[subprocess.Popen] = []
        logs = [streaming_pc / "app.log", gpu_box / "node.log"]
        try:
            with logs[0].open("w") as output:
                processes.append(
                    lab.popen(
                        "hub",
                        [
                            *(sys.executable, "-m", "engine.cli", "run"),
                            *("--config", str(streaming_pc / "config.toml"), "--for", "900"),
                        ],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
            status = _status_reader(lab)
            _wait_for(lambda: status() is not None, "the app's hub to answer", processes, logs)
            token = gpu_box / "hub_token"
            token.write_text((streaming_pc / "data" / "secrets" / "hub_token").read_text())
            node = [
                *(sys.executable, "-m", "engine.cli", "node", "trainer"),
                *("--hub", f"{lab.hub_address('gpu')}:{HUB_PORT}", "--model", VERSION),
                *("--token-file", str(token), "--config", str(gpu_box / "config.toml")),
            ]
            with logs[1].open("w") as output:
                processes.append(
                    lab.popen(
                        "gpu",
                        [*AS_GPU_BOX, *node],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )

            def driving_a_remote_checkpoint() -> bool:
                now = status() or {}
                return (now.get("driver_batch") or 0) > 0 and now.get("trainer_status") in (
                    "training",
                    "waiting_for_data",
                    "saving",
                )

            _wait_for(
                driving_a_remote_checkpoint,
                "the streaming PC's driver to drive with a checkpoint from the GPU box",
                processes,
                logs,
            )
            now = status()
            link = now["node_links"]["trainer"]
            assert link["host"] == "gpu-box"
            assert link["peer"].startswith(lab.address("gpu") + ":")  # over the veth, not loopback
            # Trained on the GPU box, verified on arrival, where a local trainer saves.
            batch = now["driver_batch"]
            here = version_dir(streaming_pc / "data", VERSION) / f"batch-{batch:012d}"
            there = version_dir(gpu_box / "data", VERSION) / f"batch-{batch:012d}"
            if there.exists():  # not pruned yet on the GPU box
                assert checkpoint_files(here) == checkpoint_files(there)
            assert list_checkpoints(version_dir(streaming_pc / "data", VERSION))
            _wait_for(
                lambda: any(
                    tensorboard_dir(streaming_pc / "data", VERSION).glob("events.out.tfevents.*")
                ),
                "the GPU box's curves on the streaming PC",
                processes,
                logs,
            )
            secrets = gpu_box / "data" / "secrets"
            stem = f"hub-{lab.hub_address('gpu')}-{HUB_PORT}"
            assert (secrets / f"{stem}.fingerprint").is_file()  # pinned on first contact
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in reversed(processes):
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
        # Stopped with SIGTERM, the GPU box's trainer shipped its last checkpoint first.
        assert processes[1].returncode == 0, _tails(logs)


def _status_reader(lab: Lab) -> Callable[[], dict | None]:
    def status() -> dict | None:
        url = f"http://127.0.0.1:{LOCAL_PORT}/api/status"
        try:
            return json.loads(lab.http_get("hub", url, timeout=5.0))
        except OSError:
            return None

    return status


def _wait_for(
    condition: Callable[[], bool], what: str, processes: list[subprocess.Popen], logs: list[Path]
) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        exited = [p.args for p in processes if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"a process exited: {exited}" if exited else f"not within {HANG_S:g} s"
            raise AssertionError(f"{what}: {why}\n{_tails(logs)}")
        time.sleep(0.5)


def _tails(logs: list[Path]) -> str:
    return "\n".join(
        f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
        for path in logs
        if path.exists()
    )
