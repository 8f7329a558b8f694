"""`charles-stream run --data DIR`, and a console free of the processes' own output.

The first tests run the app without processes (fast, the unit tier); the last
one runs the real command with a real trainer, which loads TensorFlow: its C++
start-up lines ("failed call to cuInit" on a machine without a GPU, oneDNN,
CPU features) belong in the trainer's log file, not on the console where they
read like failures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from engine.app.app import FAILURE_LINES, failure_tail
from engine.cli import main
from engine.core.cli_args import config_from
from engine.core.store import ProcessState
from engine.node.process import node_parser
from engine.records.timeline import Timeline
from tests.stream_helpers import TINY_STREAM_CONFIG

NO_PROCESSES = """
[app]
data_dir = "{data_dir}"

[hub]
port = 0

[obs]
enabled = false

[stream]
collectors = 0
trainer = false
driver = false
"""
# What TensorFlow's C++ side says at start-up that a newcomer would take for a failure.
NATIVE_NOISE = re.compile(
    r"cuInit|CUDA error|oneDNN|absl::InitializeLog|cpu_feature_guard|"
    r"This TensorFlow binary is optimized|Unable to register cu(DNN|FFT|BLAS) factory"
)
# Only ends a hung test: TensorFlow's start on two busy cores takes tens of seconds.
HANG_S = 300.0


def write_config(tmp_path: Path, template: str, **values: object) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(template.format(data_dir=tmp_path / "configured", **values), encoding="utf-8")
    return path


def test_run_data_puts_the_streams_data_in_the_given_folder(tmp_path):
    config = write_config(tmp_path, NO_PROCESSES)
    given = tmp_path / "given"

    assert main(["run", "--config", str(config), "--data", str(given), "--for", "0.5"]) == 0

    events = Timeline(given).events()
    assert [(e.kind, e.version) for e in events] == [
        ("started", "model_0000_demo_v1"),
        ("stopped", "model_0000_demo_v1"),
    ]
    assert (given / "secrets" / "hub_token").is_file()
    assert not (tmp_path / "configured").exists()  # [app] data_dir is not touched


def test_plain_command_takes_data_too(tmp_path):
    config = write_config(tmp_path, NO_PROCESSES)
    given = tmp_path / "given"

    assert main(["--config", str(config), "--data", str(given), "--for", "0.5"]) == 0

    assert [e.kind for e in Timeline(given).events()] == ["started", "stopped"]


@pytest.mark.parametrize("bad", ["file", ""])
def test_run_data_that_is_not_a_folder_is_refused_with_exit_2(tmp_path, capsys, bad):
    value = str(tmp_path / "a_file") if bad == "file" else ""
    (tmp_path / "a_file").write_text("not a folder", encoding="utf-8")

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--data", value, "--for", "1"])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --data: {value!r}" in err and "accepted: a folder path" in err


def test_a_node_reads_the_data_folder_the_app_hands_on(tmp_path):
    config = write_config(tmp_path, NO_PROCESSES)
    args = node_parser("trainer", "a node").parse_args(
        ["--config", str(config), "--data", str(tmp_path / "given")]
    )

    assert config_from(args).app.data_dir == str(tmp_path / "given")


def test_a_failed_process_shows_its_last_output_lines_on_the_console(tmp_path):
    log = tmp_path / "trainer.log"
    log.write_text("".join(f"line {n}\n" for n in range(20)) + "ModelError: boom\n", "utf-8")

    tail = failure_tail(tmp_path, ProcessState("trainer", "backoff", last_exit=2))

    assert tail is not None
    lines = tail.splitlines()
    assert lines[0] == f"trainer's last output ({log}):"
    assert lines[1:] == [f"  | line {n}" for n in range(13, 20)] + ["  | ModelError: boom"]
    assert len(lines) == 1 + FAILURE_LINES


@pytest.mark.parametrize(
    "process",
    [
        ProcessState("trainer", "running", pid=5),
        ProcessState("trainer", "backoff", last_exit=0),
        ProcessState("driver", "crash_loop", last_exit=1),  # no log file
    ],
    ids=["running", "clean exit", "no log"],
)
def test_nothing_is_shown_for_a_process_that_did_not_fail_or_left_no_output(tmp_path, process):
    (tmp_path / "trainer.log").write_text("something\n", encoding="utf-8")

    assert failure_tail(tmp_path, process) is None


@pytest.mark.tf
@pytest.mark.slow
async def test_tensorflows_start_up_lines_stay_off_the_console_and_in_the_log(tmp_path):
    port = _free_port()
    config = write_config(
        tmp_path,
        TINY_STREAM_CONFIG + "\n[hub]\nport = {port}\n\n[stream]\ncollectors = 0\ndriver = false\n",
        port=port,
    )
    data = tmp_path / "given"
    app = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "--config", str(config), "--data", str(data)],
        # TensorFlow says all it says at start-up (its INFO lines too), wherever it goes.
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The trainer has loaded TensorFlow, built the model and found no samples yet.
        status = await _status_when(port, lambda s: s["trainer_status"] == "waiting_for_data")
        app.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(app.communicate, timeout=HANG_S)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()

    assert app.returncode == 0, err[-3000:]
    console = out + err
    assert "trainer started (pid" in err  # the app's own log is on the console
    assert not NATIVE_NOISE.search(console), NATIVE_NOISE.search(console)
    trainer_log = (data / "logs" / "trainer.log").read_text(encoding="utf-8")
    assert NATIVE_NOISE.search(trainer_log)  # kept, where someone who looks for it finds it
    assert f"training {status['version']} from batch 0" in trainer_log
    assert (data / "tensorboard" / status["version"]).is_dir()  # --data reached the trainer
    assert not (tmp_path / "configured").exists()


async def _status_when(port: int, condition) -> dict:
    """/api/status of the app once `condition` holds (polled: the app pushes no event here)."""
    deadline = time.monotonic() + HANG_S
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/api/status") as reply:
                    status = json.loads(await reply.text())
                if condition(status):
                    return status
            except aiohttp.ClientConnectionError:
                pass  # the app is still starting
            assert time.monotonic() < deadline, "the app never got there"
            await asyncio.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
