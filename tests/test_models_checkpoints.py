"""Checkpoints: atomic, keep the last K, keep the batch counter, survive kill -9 and corruption."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import msgspec
import numpy as np
import pytest

from models.build import build_architecture, compile_model
from models.checkpoints import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    list_checkpoints,
    load_latest_checkpoint,
    resumable_checkpoint,
    save_checkpoint,
)
from models.spec import CommonDenseSpec, InputSpec, load_spec

pytestmark = pytest.mark.tf

TINY_SPEC = msgspec.structs.replace(
    load_spec("model_0000_demo"), input=InputSpec(16, 16, 1), common=CommonDenseSpec(units=64)
)

# Saves checkpoints of the demo model forever, printing each batch once it is saved.
SAVER = """
import sys
from models.build import build_architecture, compile_model
from models.checkpoints import save_checkpoint
from models.spec import load_spec

spec = load_spec("model_0000_demo")
model = compile_model(build_architecture(spec), spec)
model.optimizer.build(model.trainable_variables)
batch = 0
while True:
    batch += 1
    save_checkpoint(model, sys.argv[1], batch, keep=2)
    print(batch, flush=True)
"""


def tiny_model(trained_steps: int = 0) -> keras.Model:
    model = compile_model(build_architecture(TINY_SPEC), TINY_SPEC)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(trained_steps)
    frames = rng.uniform(0, 255, size=(4, 16, 16, 3))
    targets = {name: rng.uniform(-1, 1, size=(4, 1)) for name in TINY_SPEC.output_names}
    for _ in range(trained_steps):
        model.train_on_batch(frames, targets)
    return model


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def test_a_checkpoint_restores_weights_optimizer_state_and_batch_counter(tmp_path):
    trained = tiny_model(trained_steps=3)
    save_checkpoint(trained, tmp_path, batch=1234, keep=3)
    restored = tiny_model()
    checkpoint = load_latest_checkpoint(restored, tmp_path)
    assert checkpoint.batch == 1234
    assert_same_weights(restored, trained)
    assert int(restored.optimizer.iterations.numpy()) == 3


def test_no_checkpoint_yet_loads_nothing(tmp_path):
    assert load_latest_checkpoint(tiny_model(), tmp_path / "models" / "v1") is None


def test_only_the_newest_k_checkpoints_are_kept(tmp_path):
    model = tiny_model()
    for batch in (100, 200, 300, 400, 500):
        save_checkpoint(model, tmp_path, batch, keep=3)
    assert [checkpoint.batch for checkpoint in list_checkpoints(tmp_path)] == [300, 400, 500]


def test_saving_the_same_batch_again_replaces_it(tmp_path):
    save_checkpoint(tiny_model(), tmp_path, 100, keep=3)
    newer = tiny_model(trained_steps=2)
    save_checkpoint(newer, tmp_path, 100, keep=3)
    restored = tiny_model()
    assert load_latest_checkpoint(restored, tmp_path).batch == 100
    assert_same_weights(restored, newer)
    assert [path.name for path in tmp_path.iterdir()] == ["batch-000000000100"]


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, caplog):
    older = tiny_model(trained_steps=1)
    save_checkpoint(older, tmp_path, 100, keep=3)
    latest = save_checkpoint(tiny_model(trained_steps=2), tmp_path, 200, keep=3)
    weights = latest.path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    weights.write_bytes(bytes(data))

    restored = tiny_model()
    with caplog.at_level(logging.WARNING, logger="charles.models.checkpoints"):
        checkpoint = load_latest_checkpoint(restored, tmp_path)
    assert checkpoint.batch == 100
    assert_same_weights(restored, older)
    assert "batch-000000000200" in caplog.text and "falling back" in caplog.text


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ("null", "checkpoint.json is a JSON null; accepted: a JSON object"),
        ("[]", "checkpoint.json is a JSON list; accepted: a JSON object"),
        ("5", "checkpoint.json is a JSON number; accepted: a JSON object"),
        ('{"batch": "200"}', "'batch' = '200' has the wrong type; expected int"),
        ("[" * 5000 + "]" * 5000, "checkpoint.json is nested too deeply to be read"),
    ],
    ids=["null", "list", "number", "batch-type", "nested-thousands-deep"],
)
def test_metadata_that_is_json_but_not_a_checkpoints_falls_back_naming_it(
    tmp_path, caplog, meta, problem
):
    older = tiny_model(trained_steps=1)
    save_checkpoint(older, tmp_path, 100, keep=3)
    latest = save_checkpoint(tiny_model(trained_steps=2), tmp_path, 200, keep=3)
    (latest.path / META_FILE).write_text(meta, encoding="utf-8")

    restored = tiny_model()
    with caplog.at_level(logging.WARNING, logger="charles.models.checkpoints"):
        checkpoint = load_latest_checkpoint(restored, tmp_path)
    assert checkpoint.batch == 100
    assert_same_weights(restored, older)
    assert problem in caplog.text
    assert resumable_checkpoint(tmp_path) == checkpoint


def test_when_every_checkpoint_is_damaged_loading_refuses_to_start_over(tmp_path):
    checkpoint = save_checkpoint(tiny_model(), tmp_path, 100, keep=3)
    (checkpoint.path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint could be loaded"):
        load_latest_checkpoint(tiny_model(), tmp_path)


def test_kill_during_save_leaves_a_loadable_checkpoint(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER, encoding="utf-8")
    directory = tmp_path / "model_0000_demo_v1"
    for _attempt in range(3):
        saved = _kill_saver_mid_save(script, directory)
        if any(path.name.startswith(".saving-") for path in directory.iterdir()):
            break
    else:
        pytest.fail("could not catch the saver mid-save in 3 attempts")

    spec = load_spec("model_0000_demo")
    checkpoint = load_latest_checkpoint(build_architecture(spec), directory)
    assert checkpoint.batch >= saved >= 2
    # The next save clears what the killed one left behind.
    save_checkpoint(build_architecture(spec), directory, checkpoint.batch + 1, keep=2)
    assert not any(path.name.startswith(".saving-") for path in directory.iterdir())


def _kill_saver_mid_save(script: Path, directory: Path) -> int:
    """Run the saver until it has saved twice, SIGKILL it while a save is in progress."""
    saver = subprocess.Popen(
        [sys.executable, str(script), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    try:
        saved = int(saver.stdout.readline())
        saved = int(saver.stdout.readline())
        deadline = time.monotonic() + 30
        # A hidden staging directory exists only while a save is in flight.
        while not any(entry.name.startswith(".saving-") for entry in os.scandir(directory)):
            assert time.monotonic() < deadline, "the saver stopped saving"
            time.sleep(0.0005)
        os.kill(saver.pid, signal.SIGKILL)
    finally:
        saver.kill()
        saver.wait(timeout=30)
        saver.stdout.close()
    return saved
