"""`charles-stream train`: off-stream periods, bad versions, unready data, SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.config import load_config
from models.checkpoints import list_checkpoints
from models.registry import Registry
from tests.test_trainer import VERSION, create_version, store_sets, write_config

pytestmark = pytest.mark.tf


def prepared(tmp_path: Path, *, sets_per_buffer: int = 10) -> tuple[Path, Path]:
    """A config file and its data directory with the tiny version and some stored sets."""
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    create_version(Path(config.app.data_dir))
    store_sets(config, sets_per_buffer=sets_per_buffer)
    return config_path, Path(config.app.data_dir)


def test_train_records_an_off_stream_period_and_prints_a_summary(tmp_path, capsys):
    config_path, data_dir = prepared(tmp_path)
    argv = ["train", "--model", VERSION, "--batches", "3", "--config", str(config_path), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["batches"] == 3 and summary["stopped_because"] == "batches_done"
    with Registry(data_dir) as registry:
        (period,) = registry.periods(VERSION)
    assert (period.start_batch, period.end_batch, period.streamed) == (0, 3, False)
    assert period.ended is not None


def test_train_an_unknown_version_exits_2_listing_the_existing_ones(tmp_path, caplog):
    config_path, _ = prepared(tmp_path, sets_per_buffer=0)
    assert main(["train", "--model", "tiny_line_v7", "--config", str(config_path)]) == 2
    assert "unknown model version 'tiny_line_v7'" in caplog.text
    assert VERSION in caplog.text


def test_train_without_ready_data_exits_1_saying_how_full_the_buffers_are(tmp_path, caplog):
    config_path, data_dir = prepared(tmp_path, sets_per_buffer=1)  # 21 and 23 of 24 needed
    assert main(["train", "--model", VERSION, "--config", str(config_path)]) == 1
    assert "steering 21/24, throttle_brake 23/24" in caplog.text
    with Registry(data_dir) as registry:
        assert registry.periods(VERSION) == []


def test_sigterm_finishes_saves_a_checkpoint_closes_the_period_and_exits_0(tmp_path):
    config_path, data_dir = prepared(tmp_path)
    argv = ["train", "--model", VERSION, "--wait", "--config", str(config_path)]
    trainer = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        # The stored sets last ~50 batches; then it waits for more, and is stopped.
        _wait_for_line(trainer, "waiting for data", timeout=120)
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=60) == 0
    finally:
        trainer.kill()
        trainer.wait()
    (checkpoint,) = list_checkpoints(data_dir / "models" / VERSION)  # checkpoint_every: 1000
    with Registry(data_dir) as registry:
        (period,) = registry.periods(VERSION)
    assert period.ended is not None
    assert period.end_batch == checkpoint.batch > 0


def test_the_trainer_process_yields_cpu_with_its_nice_value_and_thread_cap():
    script = (
        "import os, tensorflow as tf\n"
        "from engine.core.config import TrainerConfig\n"
        "from engine.trainer.trainer import configure_process\n"
        "before = os.nice(0)\n"
        "configure_process(TrainerConfig(threads=1, nice=5))\n"
        "print(os.nice(0) - before, tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    # Niceness stops at 19: under a niced test run (CI at nice 15) the step is what is left.
    expected_step = min(5, 19 - os.nice(0))
    assert done.stdout.split() == [str(expected_step), "1", "1"]


def _wait_for_line(process: subprocess.Popen, text: str, *, timeout: float) -> None:
    """Read the process's stderr until a line contains `text` (a reader thread keeps it drained)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stderr], daemon=True
    ).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no line with {text!r} within {timeout} s; stderr:\n{''.join(seen)}")
