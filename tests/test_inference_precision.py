"""Reduced precision on OpenVINO ([driver] precision = "bf16" | "int8"): calibrated and checked
on recorded frames, it drives only while it steers like f32 on held-back frames."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from engine.core.config import ControllerConfig, DriverConfig, UnstuckConfig, load_config
from engine.core.errors import ConfigError, ModelError
from engine.core.wire import Alert
from engine.data.frames import encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.data.storage import SampleStorage
from engine.driver import precision
from engine.driver.controller import Translator
from engine.driver.driver import Driver, DriverParts
from engine.driver.engines import HEAD_TOLERANCE
from engine.driver.inference import OnePassModel, load_version
from engine.driver.precision import (
    FrameSplit,
    PrecisionRefused,
    SteeringTolerance,
    cpu_supports_bf16,
    recorded_split,
)
from engine.driver.unstuck import AlertOnly, StuckWatch
from engine.sim.game import Game
from models.build import build_architecture
from models.checkpoints import save_checkpoint
from models.registry import version_dir
from models.spec import load_spec
from tests.driver_helpers import NoPad, create_version, save_constant_checkpoint, small_sim
from tests.test_inference_engines import (
    VERSION,
    GameRateFrames,
    SteppedClock,
    drive_until_converted,
    watch_conversions,
)

pytestmark = pytest.mark.tf

SPEC = load_spec("model_0000_demo")
SHAPE = (SPEC.input.height, SPEC.input.width, 3)
# Recorded frames: 24 calibrate int8, the newest 8 are held back for the check.
RECORDED = 32


def game_frames(count: int, seed: int = 5) -> list[np.ndarray]:
    """Hood frames of the built-in game along the track, each from another place on it."""
    game = Game(small_sim(), seed=seed)
    frames = []
    for index in range(count):
        game.place(s=20.0 + 15.0 * index, heading_error=0.2 * np.sin(index))
        game.tick()
        frames.append(game.render_hood())
    return frames


def record(samples_db: Path, frames: list[np.ndarray]) -> None:
    """Store `frames` in a samples.db as a collector does (JPEG at the game's size)."""
    samples = []
    for index, frame in enumerate(frames):
        samples.append(
            Sample(
                frame=encode_frame(frame, quality=90),
                width=frame.shape[1],
                height=frame.shape[0],
                outputs={"steering": 0.0, "throttle_brake": 0.5},
                speed=10.0,
                time=float(index),
                source="test",
                episode=0,
                purpose_direction=None,
                purpose_distance_m=None,
            )
        )
    with SampleStorage(samples_db, capacity=1000) as storage:
        storage.insert_set(SampleSet(output="steering", samples=tuple(samples)))


@pytest.fixture(scope="module")
def demo_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_architecture(SPEC)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> FrameSplit:
    samples_db = tmp_path_factory.mktemp("samples") / "samples.db"
    record(samples_db, game_frames(RECORDED))
    return recorded_split(samples_db, SHAPE)


def reduced(model: keras.Model, precision: str, split: FrameSplit, **changes) -> OnePassModel:
    return OnePassModel(
        model,
        SPEC.output_names,
        (SPEC.convcam,),
        engine="openvino",
        precision=precision,
        frames=lambda: split,
        **changes,
    )


def test_a_precision_outside_the_accepted_ones_is_refused_naming_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[driver]\nprecision = "fp16"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert "'fp16'" in text and "'f32'" in text and "'bf16'" in text and "'int8'" in text
    with pytest.raises(ConfigError, match=r"OpenVINO's.*'onnxruntime'"):
        DriverConfig(engine="onnxruntime", precision="int8")
    assert DriverConfig().precision == "f32"


def test_recorded_frames_split_into_disjoint_calibration_and_held_back(tmp_path, split):
    assert split.held_back.shape == (RECORDED // 4, *SHAPE)
    assert split.calibration.shape == (RECORDED - RECORDED // 4, *SHAPE)
    # Each stored frame is known by the game frame it is closest to (JPEG changed it a little):
    # the newest quarter is held back, the older frames calibrate, none is in both.
    shown = [
        resize_frame(frame, (SHAPE[1], SHAPE[0])).astype(np.float32)
        for frame in game_frames(RECORDED)
    ]

    def which(frame: np.ndarray) -> int:
        return int(np.argmin([np.abs(frame - candidate).mean() for candidate in shown]))

    held = [which(frame) for frame in split.held_back]
    calibration = [which(frame) for frame in split.calibration]
    assert held == list(range(RECORDED - 1, RECORDED - 1 - RECORDED // 4, -1))
    assert calibration == list(range(RECORDED - 1 - RECORDED // 4, -1, -1))
    few = tmp_path / "few.db"
    record(few, game_frames(8))
    with pytest.raises(PrecisionRefused, match="8 recorded frames are too few"):
        recorded_split(few, SHAPE)
    with pytest.raises(PrecisionRefused, match="does not exist"):
        recorded_split(tmp_path / "none.db", SHAPE)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16 (AVX-512 BF16, AMX)")
def test_bf16_drives_when_it_steers_like_f32_on_held_back_frames(demo_model, split):
    model = reduced(demo_model, "bf16", split)
    assert model.engine == "openvino CPU bf16"
    assert model.precision_note is None
    assert model.agreement is not None and model.agreement.frames == len(split.held_back)
    mean, top = model.agreement.steering
    assert mean <= model.precision_tolerance.mean and top <= model.precision_tolerance.max


def test_int8_calibrated_on_recorded_frames_drives_when_it_steers_like_f32(demo_model, split):
    model = reduced(demo_model, "int8", split)
    assert model.engine == "openvino CPU int8"
    assert model.precision_note is None
    mean, top = model.agreement.steering
    assert mean <= model.precision_tolerance.mean and top <= model.precision_tolerance.max
    prediction = model.predict(split.held_back[0])
    assert set(prediction.outputs) == set(SPEC.output_names)


def test_bf16_on_a_cpu_without_it_is_refused_and_f32_drives(demo_model, split, monkeypatch):
    # Our own capability probe answers "no" here, as OpenVINO's would on a CPU without
    # AVX-512 BF16 or AMX: the refusal names what this CPU accepts instead.
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    model = reduced(demo_model, "bf16", split)
    assert model.engine == "openvino CPU"  # f32
    note = model.precision_note
    assert note is not None and "'bf16' not taken" in note and "has no bf16" in note
    assert '"int8"' in note


def test_int8_with_two_in_flight_pipelines_the_reduced_model(demo_model, split):
    model = reduced(demo_model, "int8", split, in_flight=2, intra_threads=2)
    assert model.engine == "openvino CPU int8, 2 in flight"
    assert model._engine.stream is not None  # the loop's call is the two-stream pipeline
    first, second = split.held_back[0], split.held_back[1]
    assert model.predict(first).outputs == model.predict(second).outputs  # filling: frame 1 again


def test_a_reduced_model_that_steers_otherwise_is_refused_and_f32_drives(demo_model, split):
    # A tolerance int8 cannot meet: the quantized model's steering differs from f32's.
    strict = SteeringTolerance(mean=0.0, max=0.0)
    model = reduced(demo_model, "int8", split, precision_tolerance=strict)
    assert model.engine == "openvino CPU"  # f32
    assert model.agreement is None
    note = model.precision_note
    assert note is not None and "'int8' not taken" in note and "steering" in note
    reference = OnePassModel(demo_model, SPEC.output_names, (SPEC.convcam,))
    for frame in split.held_back[:3]:
        want, have = reference.predict(frame), model.predict(frame)
        for name, value in want.outputs.items():
            assert have.outputs[name] == pytest.approx(value, abs=HEAD_TOLERANCE)


class NoFrames:
    """A capture asked for nothing: a drive of 0 s ends before its first frame."""

    frames_captured = 0
    frames_dropped = 0


class NoWeights:
    """Weights nobody reloads in a drive of 0 s."""

    version = "model_0000_demo_v1"
    batch = 0


def test_the_driver_alerts_when_its_model_drives_at_f32_instead(demo_model, split):
    model = reduced(demo_model, "int8", split, precision_tolerance=SteeringTolerance(0.0, 0.0))
    sent: list[object] = []
    parts = DriverParts(
        capture=NoFrames(),  # type: ignore[arg-type]
        model=model,
        translator=Translator(ControllerConfig()),
        controller=NoPad(),  # type: ignore[arg-type]
        watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
        unstuck=AlertOnly(),
        weights=NoWeights(),  # type: ignore[arg-type]
    )
    driver = Driver(parts, DriverConfig(frames_hz=0.0), sink=sent.append)
    driver.run(seconds=0.0)
    alerts = [message for message in sent if isinstance(message, Alert)]
    assert [alert.text for alert in alerts] == [model.precision_note]


def test_reduced_precision_on_another_engine_drives_f32_and_says_why(demo_model, split):
    model = OnePassModel(
        demo_model, SPEC.output_names, (SPEC.convcam,), precision="bf16", frames=lambda: split
    )
    assert model.engine == "tensorflow CPU"
    assert "is OpenVINO's" in (model.precision_note or "")
    with pytest.raises(ModelError, match="'fp16' is unknown; accepted: f32, bf16, int8"):
        OnePassModel(demo_model, SPEC.output_names, (SPEC.convcam,), precision="fp16")


# -- new weights: quantized by the conversion child, gated again ----------------------------


def reduced_driver(data_dir: Path, split: FrameSplit) -> tuple[Driver, SteppedClock, list]:
    """The demo version (its checkpoint predicts steering 0.1) driven on OpenVINO int8."""
    loaded = load_version(data_dir, VERSION)
    model = OnePassModel(
        loaded.model,
        SPEC.output_names,
        (SPEC.convcam,),
        engine="openvino",
        precision="int8",
        frames=lambda: split,
    )
    image = split.held_back[0]
    parts = DriverParts(
        capture=GameRateFrames(image),
        model=model,
        translator=Translator(ControllerConfig()),
        controller=NoPad(),  # type: ignore[arg-type]
        watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
        unstuck=AlertOnly(),
        weights=loaded,
    )
    clock, sent = SteppedClock(), []
    config = DriverConfig(reload_interval_s=60.0, status_hz=1.0, frames_hz=0.0)
    return Driver(parts, config, sink=sent.append, clock=clock), clock, sent


@pytest.fixture
def data_dir(tmp_path) -> Path:
    save_constant_checkpoint(tmp_path, create_version(tmp_path), batch=100, steering=0.1)
    return tmp_path


def test_new_weights_are_quantized_in_the_child_and_drive_at_int8(data_dir, split):
    driver, clock, sent = reduced_driver(data_dir, split)
    assert driver.parts.model.engine == "openvino CPU int8"
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    path = save_constant_checkpoint(data_dir, VERSION, batch=200, steering=0.7)
    driver.offer_weights(VERSION, 200, path)
    drive_until_converted(driver, clock, watch_conversions(driver))
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    status = driver.status()
    assert status.predictions["steering"] == pytest.approx(0.7, abs=0.01)
    assert (status.batch, status.engine) == (200, "openvino CPU int8")
    assert not [message for message in sent if isinstance(message, Alert)]


def test_new_weights_whose_int8_steers_otherwise_drive_at_f32_with_an_alert(data_dir, split):
    driver, clock, sent = reduced_driver(data_dir, split)
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    # Random weights: their int8 model differs from f32 by ~1e-3, which no tolerance of 0 takes.
    driver.parts.model.precision_tolerance = SteeringTolerance(mean=0.0, max=0.0)
    keras.utils.set_random_seed(9)
    saved = save_checkpoint(build_architecture(SPEC), version_dir(data_dir, VERSION), 200, keep=3)
    driver.offer_weights(VERSION, 200, saved.path)
    drive_until_converted(driver, clock, watch_conversions(driver))
    frame = driver.parts.capture.next_frame(after=-1, timeout=1.0)
    driver.step(frame)
    status = driver.status()
    assert (status.batch, status.engine) == (200, "openvino CPU")
    reference = OnePassModel(driver.parts.weights.model, SPEC.output_names, (SPEC.convcam,))
    expected = reference.predict(frame.model_input).outputs["steering"]
    assert status.predictions["steering"] == pytest.approx(expected, abs=HEAD_TOLERANCE)
    alerts = [message.text for message in sent if isinstance(message, Alert)]
    assert len(alerts) == 1 and "precision 'int8' not taken" in alerts[0]
