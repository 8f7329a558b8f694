"""Inference engines: the one pass on OpenVINO and ONNX Runtime agrees with TensorFlow, "auto"
picks one, new weights are converted while the car drives, a disagreeing conversion is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import keras
import msgspec
import numpy as np
import pytest

from engine.core.config import (
    ControllerConfig,
    DriverConfig,
    UnstuckConfig,
    default_config,
    load_config,
)
from engine.core.errors import ConfigError
from engine.core.wire import Alert, DriverStatus
from engine.data.frames import resize_frame
from engine.driver.capture import Frame
from engine.driver.console import player_table
from engine.driver.controller import Translator
from engine.driver.driver import Driver, DriverParts
from engine.driver.engines import (
    CONVCAM_TOLERANCE,
    HEAD_TOLERANCE,
    Tolerance,
    check_parity,
    driver_config_with_engine,
    export_engine_model,
    installed_engines,
    load_engine_model,
    ort_providers,
    ort_session_options,
    resolve_engine,
)
from engine.driver.inference import OnePassModel, load_version, one_pass_model
from engine.driver.unstuck import AlertOnly, StuckWatch
from engine.sim.game import Game
from models.build import build_architecture
from models.spec import load_spec
from tests.driver_helpers import NoPad, create_version, save_constant_checkpoint, small_sim

pytestmark = pytest.mark.tf

# The extras' engines: the test extra installs both, so CI runs every test here.
CONVERTED = ("openvino", "onnxruntime")
VERSION = "model_0000_demo_v1"


def random_frames(shape: tuple[int, ...], count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(count)]


def game_frame(shape: tuple[int, ...]) -> np.ndarray:
    """A hood frame of the built-in game at the model's input size."""
    game = Game(small_sim(), seed=11)
    for _ in range(30):
        game.tick()
    height, width = shape[:2]
    return resize_frame(game.render_hood(), (width, height)).astype(np.float32)


def assert_agree(reference: OnePassModel, other: OnePassModel, frame: np.ndarray) -> None:
    expected, got = reference.predict(frame), other.predict(frame)
    for name, value in expected.outputs.items():
        assert got.outputs[name] == pytest.approx(value, abs=HEAD_TOLERANCE)
    for want, have in zip(expected.activations, got.activations, strict=True):
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(want - have).max()) / scale <= CONVCAM_TOLERANCE


@pytest.fixture(scope="module")
def demo_model() -> keras.Model:
    spec = load_spec("model_0000_demo")
    keras.utils.set_random_seed(3)
    return build_architecture(spec)


@pytest.mark.parametrize("engine", CONVERTED)
def test_each_engine_gives_tensorflows_heads_and_convcam(demo_model, engine):
    spec = load_spec("model_0000_demo")
    layers = ("conv3", spec.convcam)  # two Convcam layers from the same pass
    reference = OnePassModel(demo_model, spec.output_names, layers)
    converted = OnePassModel(demo_model, spec.output_names, layers, engine=engine)
    assert converted.engine.startswith(f"{engine} ")
    for frame in [*random_frames(reference.input_shape), game_frame(reference.input_shape)]:
        assert_agree(reference, converted, frame)


# ONNX Runtime's Xception (tf2onnx: 17-20 s alone, 90 s beside a test run) is in bench/driver.py.
@pytest.mark.parametrize("engine", ["openvino"])
def test_xception_agrees_with_tensorflow_on_a_small_input(engine):
    spec = load_spec("model_0003_xception")
    spec = msgspec.structs.replace(
        spec, input=msgspec.structs.replace(spec.input, height=72, width=96)
    )
    keras.utils.set_random_seed(4)
    model = build_architecture(spec)
    reference = OnePassModel(model, spec.output_names, (spec.convcam,))
    converted = OnePassModel(model, spec.output_names, (spec.convcam,), engine=engine)
    assert_agree(reference, converted, game_frame(reference.input_shape))


def test_two_in_flight_each_prediction_is_of_the_frame_before(demo_model, tmp_path):
    spec = load_spec("model_0000_demo")
    layers = (spec.convcam,)
    reference = OnePassModel(demo_model, spec.output_names, layers)
    pipelined = OnePassModel(
        demo_model, spec.output_names, layers, engine="openvino", intra_threads=2, in_flight=2
    )
    assert pipelined.engine == "openvino CPU, 2 in flight"  # the Player Console's engine row
    frames = random_frames(reference.input_shape, count=4)
    got = [pipelined.predict(frame) for frame in frames]
    # The first frame waits for itself; the second gives it again while the pipeline fills;
    # from then on each call returns the frame given one call earlier.
    for prediction, source in zip(got, [0, 0, 1, 2], strict=True):
        want = reference.predict(frames[source])
        for name, value in want.outputs.items():
            assert prediction.outputs[name] == pytest.approx(value, abs=HEAD_TOLERANCE)
    # Every check (parity, the precision gate) still gets its own frame's outputs.
    heads = len(spec.output_names)
    own = pipelined._engine.run(frames[3][np.newaxis])
    check_parity(reference._reference(frames[3][np.newaxis]), own, heads, Tolerance())
    # A converted checkpoint (a reload) pipelines too.
    path = export_engine_model("openvino", reference._forward, frames[0][np.newaxis], tmp_path)
    loaded = load_engine_model(
        "openvino", path, frames[0][np.newaxis], intra_threads=2, inter_threads=1, in_flight=2
    )
    assert loaded.stream is not None


@pytest.mark.parametrize(
    ("driver", "named"),
    [
        ('engine = "onnxruntime"\npredictions_in_flight = 2', "onnxruntime"),
        ("predictions_in_flight = 3", "3"),
    ],
)
def test_predictions_in_flight_other_than_openvinos_one_or_two_is_refused(tmp_path, driver, named):
    path = tmp_path / "config.toml"
    path.write_text(f"[driver]\n{driver}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "predictions_in_flight" in str(error.value) and named in str(error.value)


def test_eval_and_convcam_predict_each_frame_itself_whatever_is_in_flight():
    config = default_config()
    config = msgspec.structs.replace(
        config, driver=msgspec.structs.replace(config.driver, predictions_in_flight=2)
    )
    for engine in (None, "openvino"):
        assert driver_config_with_engine(config, engine).predictions_in_flight == 1


def test_auto_takes_the_fastest_installed_engine_on_a_cpu():
    assert set(CONVERTED) <= set(installed_engines())
    assert resolve_engine("auto") == "openvino"  # 31 ms against ORT's 62 (issue 18)
    assert resolve_engine("onnxruntime") == "onnxruntime"


def test_without_the_extras_auto_is_tensorflow_and_a_named_engine_is_refused():
    # A fresh interpreter in which the extras' packages cannot be imported, as after a
    # default install (the import system refuses them; nothing of theirs is replaced).
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("openvino", "onnxruntime"):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NotInstalled())
        from engine.driver.engines import EngineUnavailable, installed_engines, resolve_engine

        print(installed_engines(), resolve_engine("auto"))
        try:
            resolve_engine("openvino")
        except EngineUnavailable as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "('tensorflow',) tensorflow"
    assert "'openvino' is not installed" in lines[1]
    assert "pip install 'charles-stream[openvino]'" in lines[1]


def test_an_unknown_engine_in_config_is_refused_with_the_choices(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[driver]\nengine = "tensorrt"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert "tensorrt" in text and "openvino" in text and "onnxruntime" in text


def test_onnxruntime_providers_put_a_gpu_first_and_always_keep_the_cpu():
    # What DirectML and CUDA share with the CPU provider: the order and the session options.
    # Neither GPU provider can run here; their selection path is the same code.
    assert ort_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert ort_providers(["DmlExecutionProvider", "CPUExecutionProvider"]) == [
        "DmlExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert ort_providers(["CPUExecutionProvider", "CUDAExecutionProvider"])[0] == (
        "CUDAExecutionProvider"
    )
    cpu = ort_session_options(["CPUExecutionProvider"], 2, 1)
    assert (cpu.intra_op_num_threads, cpu.inter_op_num_threads, cpu.enable_mem_pattern) == (
        2,
        1,
        True,
    )
    directml = ort_session_options(["DmlExecutionProvider", "CPUExecutionProvider"], 0, 0)
    assert directml.enable_mem_pattern is False
    assert str(directml.execution_mode).endswith("ORT_SEQUENTIAL")


def test_the_driver_config_picks_the_engine_and_its_threads(demo_model):
    spec = load_spec("model_0000_demo")
    config = DriverConfig(engine="onnxruntime", intra_op_threads=1, inter_op_threads=1)
    model = one_pass_model(config, demo_model, spec.output_names, (spec.convcam,))
    assert model.engine == "onnxruntime CPU"


# -- new weights: converted beside the running model, swapped only when they agree ----------


class GameRateFrames:
    """A capture delivering one frame every 1/60 s, as the built-in game's does."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.index = 0
        self.frames_captured = 0
        self.frames_dropped = 0
        self.fps = 60.0
        self._tick = threading.Event()  # never set: its wait is the frame clock

    def next_frame(self, after: int, timeout: float) -> Frame:
        self._tick.wait(1 / self.fps)
        self.index += 1
        self.frames_captured += 1
        return Frame(self.index, 0.0, self.image, self.image, None)


class SteppedClock:
    """The driver's clock, moved on by the test (the reload interval is minutes long)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingSink:
    def __init__(self) -> None:
        self.messages: list[object] = []

    def __call__(self, message: object) -> None:
        self.messages.append(message)


def openvino_driver(data_dir: Path) -> tuple[Driver, SteppedClock, RecordingSink]:
    """The demo version (its checkpoint predicts steering 0.1) driven on OpenVINO."""
    loaded = load_version(data_dir, VERSION)
    spec = loaded.spec
    model = OnePassModel(loaded.model, spec.output_names, (spec.convcam,), engine="openvino")
    image = game_frame((spec.input.height, spec.input.width, 3)).astype(np.uint8)
    parts = DriverParts(
        capture=GameRateFrames(image),
        model=model,
        translator=Translator(ControllerConfig()),
        controller=NoPad(),
        watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
        unstuck=AlertOnly(),
        weights=loaded,
    )
    clock, sink = SteppedClock(), RecordingSink()
    config = DriverConfig(reload_interval_s=60.0, status_hz=1.0, frames_hz=0.0)
    return Driver(parts, config, sink=sink, clock=clock), clock, sink


@pytest.fixture
def data_dir(tmp_path) -> Path:
    save_constant_checkpoint(tmp_path, create_version(tmp_path), batch=100, steering=0.1)
    return tmp_path


def drive_until_converted(driver: Driver, clock: SteppedClock, done: threading.Event) -> list:
    """Step the loop (the reload interval passed) until `done`; the steering of each step."""
    clock.now += 120.0
    steering = []
    started = time.monotonic()
    # A step every 20 ms, as a game's frames pace the loop: a loop spinning flat out would take
    # the CPU from the niced conversion child on a busy machine. The bound only catches a hang.
    while not done.wait(0.02):
        driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
        steering.append(driver.status().predictions["steering"])
        assert time.monotonic() - started < 1800, "the conversion never ended"
    return steering


def watch_conversions(driver: Driver) -> threading.Event:
    """Set once the driver's next background conversion has ended, whichever way."""
    done = threading.Event()
    converted = driver._converted

    def and_signal(outcome) -> None:
        converted(outcome)
        done.set()

    driver._converted = and_signal
    return done


def test_new_weights_are_converted_while_the_car_keeps_predicting(data_dir):
    driver, clock, _ = openvino_driver(data_dir)
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    path = save_constant_checkpoint(data_dir, VERSION, batch=200, steering=0.7)
    driver.offer_weights(VERSION, 200, path)
    done = watch_conversions(driver)
    steering = drive_until_converted(driver, clock, done)
    # The loop never waited for the conversion: it predicted with the old weights meanwhile.
    assert len(steering) >= 2 and steering[0] == pytest.approx(0.1, abs=1e-6)
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    status = driver.status()
    assert status.predictions["steering"] == pytest.approx(0.7, abs=1e-6)
    assert (status.batch, driver.reloads, status.engine) == (200, 1, "openvino CPU")


def test_a_conversion_that_disagrees_with_tensorflow_is_refused(data_dir):
    driver, clock, sink = openvino_driver(data_dir)
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    # No tolerance at all: the engine's own rounding (~1e-7 on the Convcam) is a disagreement.
    driver.parts.model.tolerance = Tolerance(heads=0.0, convcam=0.0)
    path = save_constant_checkpoint(data_dir, VERSION, batch=200, steering=0.7)
    driver.offer_weights(VERSION, 200, path)
    done = watch_conversions(driver)
    drive_until_converted(driver, clock, done)
    driver.step(driver.parts.capture.next_frame(after=-1, timeout=1.0))
    status = driver.status()
    assert status.predictions["steering"] == pytest.approx(0.1, abs=1e-6)
    assert (status.batch, driver.reloads) == (100, 0)
    # TensorFlow holds the old weights again: Grad-CAM and the next check see the driven model.
    weights = driver.parts.weights
    assert float(weights.model.get_layer("steering").get_weights()[1][0]) == pytest.approx(0.1)
    alerts = [m for m in sink.messages if isinstance(m, Alert)]
    assert len(alerts) == 1 and "refused, driving on with batch 100" in alerts[0].text
    assert "EngineMismatch" in alerts[0].text


def test_eval_scores_the_same_on_every_engine(tmp_path, capsys):
    from engine.cli import main

    version = create_version(tmp_path)
    save_constant_checkpoint(tmp_path, version, batch=5, throttle_brake=0.4)
    args = ["eval", "--model", version, "--data", str(tmp_path), "--seeds", "7", "--seconds", "2"]
    config = ["--config", str(Path(__file__).resolve().parents[1] / "config.toml"), "--json"]
    reports = {}
    for engine in ("tensorflow", *CONVERTED):
        assert main([*args, *config, "--engine", engine]) == 0
        reports[engine] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reports["openvino"]["engine"] == "openvino CPU"
    # The untrained copy's random weights steer from the frames: the episodes must match.
    for engine in CONVERTED:
        for policy in ("model", "untrained"):
            assert reports[engine][policy] == reports["tensorflow"][policy], (engine, policy)


def test_gradcam_stays_on_tensorflow_whatever_the_engine(data_dir):
    from engine.driver.driver import model_parts

    config = msgspec.structs.replace(
        default_config(), driver=DriverConfig(engine="openvino", gradcam_hz=2.0)
    )
    parts = model_parts(config, load_version(data_dir, VERSION))
    assert parts.model.engine == "openvino CPU"
    frame = game_frame(parts.model.input_shape)
    heat = parts.gradcam.heat_map(frame)  # gradients: TensorFlow's tape, beside the engine
    assert heat.shape == parts.model.predict(frame).activations[0].shape[:2]
    assert 0.0 <= float(heat.min()) <= float(heat.max()) <= 1.0


def test_the_player_console_names_the_engine():
    table = player_table(DriverStatus(version=VERSION, engine="openvino CPU"))
    rows = dict(zip(table.columns[0]._cells, table.columns[1]._cells, strict=True))
    assert rows["engine"] == "openvino CPU"
