"""The trainer: real train steps, checkpoints and resume, TensorBoard, periods, the 90% rule."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from engine.core.config import Config, load_config
from engine.core.errors import ModelError
from engine.core.wire import TrainerStatus
from engine.data.frames import decode_frame
from engine.data.storage import SampleStorage, default_storage_path
from engine.trainer.trainer import NewCheckpoint, Trainer
from models.build import build_architecture, parameter_counts
from models.checkpoints import list_checkpoints
from models.registry import Registry
from models.spec import parse_spec
from tests.data_helpers import full_set

pytestmark = pytest.mark.tf

LINE = "tiny_line"
VERSION = f"{LINE}_v1"
OUTPUTS = ("steering", "throttle_brake")
# An 80k-parameter small CNN on the test frames' own size (32x18): a step takes milliseconds.
TINY_SPEC = """
backbone = "small_cnn"
pooling = "flatten"
convcam_layer = "convcam"

[input]
height = 18
width = 32
frames = {frames}

[common]
units = 16

[heads]
layers = 1
shrink = 2

[[outputs]]
name = "steering"

[[outputs]]
name = "throttle_brake"

[training]
optimizer = "adam"
learning_rate = 0.003
batch_size = 8
"""
# Per buffer: enough for dozens of 4-sample half batches above a 10% threshold.
CAPACITY = 240
SETS_PER_BUFFER = 10


def write_config(tmp_path: Path, *, data: str = "", trainer: str = "") -> Path:
    """A real config file for the test data directory; `data`/`trainer` add or replace keys."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[app]\ndata_dir = "{tmp_path / "data"}"\n'
        f"[data]\nbuffer_capacity = {CAPACITY}\n{data or 'ready_threshold = 0.1'}\n"
        f"[trainer]\n{trainer or 'checkpoint_every = 1000'}\nlog_every = 5\n",
        encoding="utf-8",
    )
    return path


def make_config(tmp_path: Path, **sections: str) -> Config:
    return load_config(write_config(tmp_path, **sections))


def create_version(data_dir: Path, frames: int = 1) -> str:
    spec_toml = TINY_SPEC.format(frames=frames)
    counts = parameter_counts(build_architecture(parse_spec(spec_toml, line=LINE, source="test")))
    with Registry(data_dir) as registry:
        return registry.create_version(LINE, spec_toml=spec_toml, parameters=counts).name


def store_sets(config: Config, sets_per_buffer: int = SETS_PER_BUFFER, outputs=OUTPUTS) -> None:
    """What `charles-stream collect` leaves behind: balanced sets in the sample storage."""
    path = default_storage_path(config)
    with SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        for _ in range(sets_per_buffer):
            for output in outputs:
                storage.insert_set(full_set(output))


@pytest.fixture
def config(tmp_path) -> Config:
    """A data directory holding the tiny version and ten balanced sets per buffer."""
    config = make_config(tmp_path)
    create_version(Path(config.app.data_dir))
    store_sets(config)
    return config


def fixed_batch() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One steering set's frames and targets, decoded the way batches are."""
    samples = full_set("steering").samples
    x = np.stack([decode_frame(s.frame) for s in samples]).astype(np.float32)
    y = {name: np.array([[s.outputs[name]] for s in samples], np.float32) for name in OUTPUTS}
    return x, y


def batch_loss(trainer: Trainer, x: np.ndarray, y: dict[str, np.ndarray]) -> float:
    return float(trainer.model.test_on_batch(x, y, return_dict=True)["loss"])


def all_weights(trainer: Trainer) -> list[np.ndarray]:
    return [weight.numpy() for weight in trainer.model.weights]


def test_training_steps_reduce_the_loss_on_a_fixed_batch(config):
    x, y = fixed_batch()
    with Trainer(config, VERSION, streamed=False, seed=1) as trainer:
        before = batch_loss(trainer, x, y)
        result = trainer.run(max_batches=40)
        after = batch_loss(trainer, x, y)
    assert result.batches == 40
    assert after < 0.5 * before


def test_a_new_trainer_resumes_from_the_checkpoint_with_its_weights_and_batch_counter(config):
    with Trainer(config, VERSION, streamed=False, seed=1) as first:
        result = first.run(max_batches=6)
        trained = all_weights(first)
    assert result.checkpoint is not None and result.end_batch == 6
    with Trainer(config, VERSION, streamed=False) as resumed:
        assert resumed.batch == 6
        for saved, loaded in zip(trained, all_weights(resumed), strict=True):
            np.testing.assert_array_equal(saved, loaded)
        assert resumed.run(max_batches=2).end_batch == 8


def test_a_checkpoint_is_saved_and_announced_every_n_batches_and_at_the_end(tmp_path):
    config = make_config(tmp_path, trainer="checkpoint_every = 4")
    data_dir = Path(config.app.data_dir)
    create_version(data_dir)
    store_sets(config)
    announced: list[NewCheckpoint] = []
    with Trainer(config, VERSION, streamed=True, on_checkpoint=announced.append) as trainer:
        trainer.run(max_batches=10)
    assert [(c.version, c.batch) for c in announced] == [(VERSION, 4), (VERSION, 8), (VERSION, 10)]
    assert all(c.path.is_dir() for c in announced)
    assert [c.batch for c in list_checkpoints(data_dir / "models" / VERSION)] == [4, 8, 10]


def test_tensorboard_events_hold_total_and_per_output_loss_by_batch(config):
    with Trainer(config, VERSION, streamed=False, seed=1) as trainer:
        trainer.run(max_batches=12)
    events = EventAccumulator(str(Path(config.app.data_dir) / "tensorboard" / VERSION))
    events.Reload()
    tags = events.Tags()["tensors"]
    assert {"loss/total", "loss/steering", "loss/throttle_brake", "samples_per_s"} <= set(tags)
    steps = [event.step for event in events.Tensors("loss/total")]
    # Every log_every = 5 batches and the run's last partial interval; a slow machine may add
    # points in between (a report at least every 2 s), never out of order.
    assert {5, 10, 12} <= set(steps) and steps == sorted(set(steps)) and steps[-1] == 12
    total = [float(make_ndarray(e.tensor_proto)) for e in events.Tensors("loss/total")]
    per_output = [
        [float(make_ndarray(e.tensor_proto)) for e in events.Tensors(f"loss/{name}")]
        for name in OUTPUTS
    ]
    assert all(len(points) == len(steps) for points in per_output)
    np.testing.assert_allclose(total, np.sum(per_output, axis=0), rtol=1e-5)


def test_a_run_is_recorded_as_a_training_period_with_its_batches(config):
    with Trainer(config, VERSION, streamed=True) as trainer:
        trainer.run(max_batches=3)
        trainer.run(max_batches=2)
    with Registry(config.app.data_dir) as registry:
        periods = registry.periods(VERSION)
        version = registry.version(VERSION)
    assert [(p.start_batch, p.end_batch, p.streamed) for p in periods] == [
        (0, 3, True),
        (3, 5, True),
    ]
    assert all(p.ended is not None for p in periods)
    assert version.batches_trained == 5


def test_status_reports_state_batch_losses_speed_and_buffer_fill(config):
    statuses: list[TrainerStatus] = []
    with Trainer(config, VERSION, streamed=True, on_status=statuses.append) as trainer:
        trainer.run(max_batches=5)
    training = [s for s in statuses if s.status == "training"]
    # At log_every = 5; a slow machine may report earlier batches too (at least every 2 s).
    assert training[-1].batch == 5
    report = training[-1]
    assert report.version == VERSION
    assert set(report.loss) == {"total", *OUTPUTS} and math.isfinite(report.loss["total"])
    assert report.samples_per_s > 0
    needed = math.ceil(0.1 * CAPACITY)
    assert {name: (f.needed, f.capacity) for name, f in report.buffers.items()} == {
        name: (needed, CAPACITY) for name in OUTPUTS
    }
    assert statuses[-1].status == "stopped"
    assert "saving" in [s.status for s in statuses]


def test_a_status_comes_at_least_every_few_seconds_when_log_every_batches_take_longer(
    config, monkeypatch
):
    import engine.trainer.trainer

    # As if every batch took longer than the status interval (a big model on a CPU).
    monkeypatch.setattr(engine.trainer.trainer, "_STATUS_EVERY_S", 0.0)
    statuses: list[TrainerStatus] = []
    with Trainer(config, VERSION, streamed=True, on_status=statuses.append) as trainer:
        trainer.run(max_batches=3)
    assert [s.batch for s in statuses if s.status == "training"] == [1, 2, 3]


def test_no_step_runs_while_a_buffer_is_below_the_ready_threshold(tmp_path):
    config = make_config(tmp_path, data="ready_threshold = 0.9")  # 216 of 240 needed
    create_version(Path(config.app.data_dir))
    store_sets(config, sets_per_buffer=12, outputs=["steering"])  # 240: full
    store_sets(config, sets_per_buffer=9, outputs=["throttle_brake"])  # 207: just short
    with Trainer(config, VERSION, streamed=False) as trainer:
        fill_before = trainer.fill()
        result = trainer.run(max_batches=1, wait_for_data=False)
        assert result.stopped_because == "data_below_threshold"
        assert result.batches == 0
        assert trainer.fill() == fill_before


def test_a_waiting_trainer_trains_once_added_sets_fill_the_buffers(tmp_path):
    config = make_config(tmp_path)
    create_version(Path(config.app.data_dir))
    waiting, training, stop = threading.Event(), threading.Event(), threading.Event()

    def on_status(status: TrainerStatus) -> None:
        if status.status == "waiting_for_data":
            waiting.set()
        elif status.status == "training":
            training.set()

    with Trainer(config, VERSION, streamed=True, on_status=on_status) as trainer:
        run = threading.Thread(target=lambda: trainer.run(stop=stop))
        run.start()
        try:
            assert waiting.wait(timeout=60)
            assert trainer.batch == 0
            trainer.add_sets([full_set(output) for output in OUTPUTS for _ in range(3)])
            assert training.wait(timeout=60)
        finally:
            stop.set()
            run.join()
        assert trainer.batch >= 1


def test_an_off_stream_trainer_waiting_for_data_picks_up_samples_stored_by_another_process(
    tmp_path,
):
    config = make_config(tmp_path)
    create_version(Path(config.app.data_dir))
    with Trainer(config, VERSION, streamed=False) as trainer:
        assert not trainer.ready()
        results = []
        run = threading.Thread(target=lambda: results.append(trainer.run(max_batches=2)))
        run.start()
        store_sets(config, sets_per_buffer=3)  # a `collect` run beside it
        run.join(timeout=60)
    assert [r.batches for r in results] == [2]


def test_the_mirrored_strategy_trains(tmp_path):
    config = make_config(tmp_path, trainer='strategy = "mirrored"\ncheckpoint_every = 1000')
    create_version(Path(config.app.data_dir))
    store_sets(config)
    with Trainer(config, VERSION, streamed=False, seed=1) as trainer:
        assert isinstance(trainer.strategy, tf.distribute.MirroredStrategy)
        result = trainer.run(max_batches=5)
    assert result.end_batch == 5
    assert result.checkpoint is not None


def test_a_version_that_stacks_frames_is_refused_before_training(tmp_path):
    config = make_config(tmp_path)
    create_version(Path(config.app.data_dir), frames=2)
    with pytest.raises(ModelError, match=r"input\.frames = 2"):
        Trainer(config, VERSION, streamed=False)


def test_two_mirrored_replicas_train_exactly_like_one_device():
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS],
        capture_output=True,
        text=True,
        timeout=600,  # only ends a hang: TensorFlow's import alone takes long on a busy machine
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    replicas, largest_difference = result.stdout.split()
    assert replicas == "2"
    assert float(largest_difference) < 1e-4


# Two replicas need two logical CPUs, which TensorFlow only allows before it starts, so a fresh
# process trains the same batches from the same weights with two replicas and with one device.
TWO_REPLICAS = """
import numpy as np, tensorflow as tf
(cpu,) = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from engine.trainer.train_step import TrainStep
from models.build import build_architecture, compile_model
from models.spec import parse_spec
from tests.test_trainer import LINE, TINY_SPEC, fixed_batch

spec = parse_spec(TINY_SPEC.format(frames=1), line=LINE, source="test")
x, y = fixed_batch()
x, y = x[:8], {name: values[:8, 0] for name, values in y.items()}


def trained(strategy, initial):
    with strategy.scope():
        model = compile_model(build_architecture(spec), spec)
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    step = TrainStep(model, strategy, spec.output_names)
    for _ in range(3):
        step(x, y)
    return step.replicas, start, model.get_weights()


replicas, start, mirrored = trained(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), None)
_, _, single = trained(tf.distribute.get_strategy(), start)
print(replicas, max(float(np.max(np.abs(a - b))) for a, b in zip(mirrored, single)))
"""
