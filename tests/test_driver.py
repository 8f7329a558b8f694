"""The driver loop: the model steers the game, reports the Player Console, reloads at unstucks."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine.core.config import ControllerConfig, DriverConfig, UnstuckConfig
from engine.core.errors import ModelError
from engine.core.wire import DRIVER_STAGES, Alert, DriverStatus, Frames
from engine.data.frames import decode_frame
from engine.driver.capture import Capture, SimSource
from engine.driver.controller import SimController, Translator
from engine.driver.driver import Driver, DriverParts, FrameStack, ModelParts, throttle_brake_reader
from engine.driver.inference import LoadedModel, OnePassModel, load_version
from engine.driver.unstuck import Respawn, StuckWatch
from engine.sim.game import Game
from tests.driver_helpers import (
    constant_model,
    create_version,
    demo_spec,
    save_constant_checkpoint,
    set_constant_outputs,
    small_sim,
)

pytestmark = pytest.mark.tf

FAST_REPORTS = DriverConfig(status_hz=20.0, frames_hz=20.0)
VERSION = "model_0000_demo_v1"


class Recorder:
    """A sink that keeps every message the driver sends."""

    def __init__(self) -> None:
        self.messages: list[object] = []

    def __call__(self, message: object) -> None:
        self.messages.append(message)

    def of(self, kind: type) -> list:
        return [message for message in self.messages if isinstance(message, kind)]


@pytest.fixture(scope="module")
def version_data(tmp_path_factory) -> Path:
    """A data directory holding the demo line's v1 with a checkpoint at batch 100."""
    data_dir = tmp_path_factory.mktemp("driver")
    save_constant_checkpoint(data_dir, create_version(data_dir), batch=100)
    return data_dir


@pytest.fixture
def data_dir(version_data, tmp_path) -> Path:
    """A private copy, for tests that add checkpoints."""
    return Path(shutil.copytree(version_data, tmp_path / "data"))


def build_driver(
    data_dir: Path,
    *,
    sink=None,
    unstuck: UnstuckConfig | None = None,
    config: DriverConfig = FAST_REPORTS,
    **outputs: float,
) -> tuple[Driver, SimSource]:
    """A driver with real parts on a small built-in game, its model predicting `outputs`."""
    loaded = load_version(data_dir, VERSION)
    set_constant_outputs(loaded.model, loaded.spec.output_names, **outputs)
    source = SimSource(Game(small_sim(), seed=5), chase_hz=10.0)
    capture = Capture(source, size=(128, 72), max_fps=60.0)
    parts = DriverParts(
        capture=capture,
        model=OnePassModel(loaded.model, loaded.spec.output_names, ("convcam",)),
        translator=Translator(ControllerConfig()),
        controller=SimController(source.game),
        watch=StuckWatch(unstuck or UnstuckConfig()),
        unstuck=Respawn(source),
        weights=loaded,
        chase=source.latest_chase,
    )
    return Driver(parts, config, sink=sink), source


def frames_flowing(driver: Driver) -> Driver:
    """The driver once its capture delivers frames (the game builds its views first)."""
    capture = driver.parts.capture
    first = capture.next_frame(after=-1, timeout=30.0)
    assert first is not None and capture.next_frame(after=first.index, timeout=30.0) is not None
    return driver


def next_tick_controls(game: Game):
    """What the game applies from now on: one more tick takes the controls it was last given."""
    game.tick()
    return game.applied_controls


def test_the_models_predictions_drive_the_game(version_data):
    driver, _ = build_driver(version_data, steering=0.4, throttle_brake=0.8)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=1.0)
    assert (summary.last_pad.steering, summary.last_pad.right_trigger) == (
        pytest.approx(0.4),
        pytest.approx(0.8),
    )
    assert summary.distance_m > 0.2 and summary.predictions >= 10


def test_the_pad_is_neutral_when_run_ends(version_data):
    driver, source = build_driver(version_data, steering=0.4, throttle_brake=0.8)
    with driver.parts.capture:
        frames_flowing(driver)
        driver.run(seconds=0.5)
    controls = next_tick_controls(source.game)
    assert (controls.steering, controls.throttle_brake) == (0.0, 0.0)


def test_the_pad_is_neutral_after_an_exception_in_the_loop(version_data):
    statuses = []

    def failing_sink(message):
        if isinstance(message, DriverStatus):
            statuses.append(message)
            if len(statuses) == 3:
                raise RuntimeError("the hub connection broke")

    driver, source = build_driver(
        version_data, sink=failing_sink, steering=-0.5, throttle_brake=1.0
    )
    with driver.parts.capture, pytest.raises(RuntimeError, match="hub connection broke"):
        driver.run(seconds=10.0)
    assert statuses[-1].pad["right_trigger"] == pytest.approx(1.0)
    controls = next_tick_controls(source.game)
    assert (controls.steering, controls.throttle_brake) == (0.0, 0.0)


def test_the_status_carries_the_player_console_numbers(version_data):
    sink = Recorder()
    driver, _ = build_driver(version_data, sink=sink, steering=0.1, throttle_brake=0.5)
    with driver.parts.capture:
        frames_flowing(driver)
        driver.run(seconds=1.5)
    status = sink.of(DriverStatus)[-1]
    assert (status.version, status.batch) == (VERSION, 100)
    assert status.predictions == {
        "steering": pytest.approx(0.1),
        "throttle_brake": pytest.approx(0.5),
    }
    assert status.pad["right_trigger"] == pytest.approx(0.5)
    assert status.fps > 10 and status.pps > 10
    assert status.distance_m > 0


def test_every_stage_the_loop_ran_is_in_the_status_with_its_p50_and_p95(version_data):
    sink = Recorder()
    driver, _ = build_driver(version_data, sink=sink, steering=0.1, throttle_brake=0.5)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=1.5)
    statuses = sink.of(DriverStatus)
    assert len(statuses) >= 3
    # The first status is built inside the first turn's report stage, before it ends.
    assert tuple(statuses[0].stages) == DRIVER_STAGES[:-1]
    for status in statuses[1:]:
        assert tuple(status.stages) == DRIVER_STAGES
    assert tuple(summary.stages) == DRIVER_STAGES
    predict = summary.stages["predict"]
    assert 0 < predict.p50_ms <= predict.p95_ms
    assert predict.turns == min(summary.predictions, driver.stage_times.window)
    assert summary.stages["capture_wait"].turns == predict.turns


def test_overlay_frames_carry_hood_convcam_and_chase_images(version_data):
    sink = Recorder()
    driver, _ = build_driver(version_data, sink=sink, throttle_brake=0.5)
    with driver.parts.capture:
        frames_flowing(driver)
        driver.run(seconds=1.0)
    frames = sink.of(Frames)[-1]
    assert decode_frame(frames.hood).shape == (108, 192, 3)
    # 64 kernels of 9x16 shaped for the overlay's 16:9 Convcam tile: 8 rows of 8 tiles with
    # 1-pixel gaps, 135x79 (1.71 wide for 1.78).
    assert decode_frame(frames.convcam).shape == (8 * 10 - 1, 8 * 17 - 1, 3)
    assert decode_frame(frames.chase).shape == (90, 160, 3)


def test_a_car_that_does_not_move_is_respawned_and_alerted(version_data):
    sink = Recorder()
    unstuck = UnstuckConfig(window_s=0.5, min_distance_m=1.0)
    driver, source = build_driver(version_data, sink=sink, unstuck=unstuck, throttle_brake=-1.0)
    with driver.parts.capture:
        frames_flowing(driver)
        start = source.game.telemetry()
        summary = driver.run(seconds=1.2)
        after = source.game.telemetry()
    assert summary.unstucks >= 1
    assert np.hypot(after.x - start.x, after.y - start.y) > 5.0, "the car should be elsewhere"
    alert = sink.of(Alert)[0]
    assert alert.kind == "unstuck" and "respawn" in alert.text


def test_offered_weights_wait_while_the_car_keeps_driving(data_dir):
    driver, _ = build_driver(data_dir, throttle_brake=1.0)
    path = save_constant_checkpoint(data_dir, VERSION, batch=200, throttle_brake=-1.0)
    driver.offer_weights(VERSION, 200, path)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=1.0)
    assert (summary.unstucks, summary.reloads, summary.batch) == (0, 0, 100)
    assert summary.last_pad.right_trigger == pytest.approx(1.0)


def test_offered_weights_are_applied_at_an_unstuck(data_dir):
    stuck_soon = UnstuckConfig(window_s=0.4, min_distance_m=1.0)
    sink = Recorder()
    driver, _ = build_driver(data_dir, sink=sink, unstuck=stuck_soon, throttle_brake=-1.0)
    path = save_constant_checkpoint(data_dir, VERSION, batch=200, throttle_brake=0.7)
    driver.offer_weights(VERSION, 200, path)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=1.5)
    assert summary.unstucks >= 1 and summary.reloads == 1
    assert summary.batch == 200
    assert summary.last_pad.right_trigger == pytest.approx(0.7)
    assert sink.of(DriverStatus)[-1].batch == 200


def test_offered_weights_are_applied_after_the_reload_interval(data_dir):
    config = msgspec.structs.replace(FAST_REPORTS, reload_interval_s=0.3)
    driver, _ = build_driver(data_dir, config=config, throttle_brake=0.5)
    path = save_constant_checkpoint(data_dir, VERSION, batch=300, throttle_brake=0.9)
    with driver.parts.capture:
        frames_flowing(driver)
        driver.offer_weights(VERSION, 300, path)
        summary = driver.run(seconds=1.0)
    assert (summary.unstucks, summary.reloads, summary.batch) == (0, 1, 300)


def test_weights_of_another_version_are_not_loaded(data_dir):
    config = msgspec.structs.replace(FAST_REPORTS, reload_interval_s=0.1)
    driver, _ = build_driver(data_dir, config=config, throttle_brake=0.5)
    path = save_constant_checkpoint(data_dir, VERSION, batch=300)
    driver.offer_weights("model_0000_demo_v2", 300, path)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=0.5)
    assert (summary.reloads, summary.batch) == (0, 100)


def test_a_switched_model_drives_from_the_next_frame_at_its_own_input_size(version_data, tmp_path):
    driver, _ = build_driver(version_data, steering=0.4, throttle_brake=0.5)
    spec = demo_spec()
    smaller_input = msgspec.structs.replace(spec.input, width=96, height=54)
    smaller = msgspec.structs.replace(spec, input=smaller_input)
    model = constant_model(smaller, steering=-0.6, throttle_brake=0.5)
    other = LoadedModel("other_line_v1", smaller, model, tmp_path, batch=0)
    driver.switch_model(ModelParts(OnePassModel(model, smaller.output_names, ("convcam",)), other))
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=0.5)
    assert summary.version == "other_line_v1" and summary.predictions > 0
    assert summary.last_pad.steering == pytest.approx(-0.6)


def test_weights_offered_for_the_switched_to_version_are_applied(data_dir):
    config = msgspec.structs.replace(FAST_REPORTS, reload_interval_s=0.3)
    driver, _ = build_driver(data_dir, config=config)
    spec = demo_spec()
    v2 = "model_0000_demo_v2"
    path = save_constant_checkpoint(data_dir, v2, batch=300, throttle_brake=0.9)
    other = LoadedModel(v2, spec, constant_model(spec), path.parent, batch=0)
    driver.switch_model(
        ModelParts(OnePassModel(other.model, spec.output_names, ("convcam",)), other)
    )
    driver.offer_weights(v2, 300, path)
    with driver.parts.capture:
        frames_flowing(driver)
        summary = driver.run(seconds=1.0)
    assert (summary.version, summary.reloads, summary.batch) == (v2, 1, 300)
    assert summary.last_pad.right_trigger == pytest.approx(0.9)


def test_frame_stack_puts_the_newest_frame_first_and_repeats_the_oldest_at_the_start():
    stack = FrameStack(frames=3)
    first = np.full((2, 2, 3), 1, np.uint8)
    second = np.full((2, 2, 3), 2, np.uint8)
    assert stack(first)[0, 0].tolist() == [1] * 9
    assert stack(second)[0, 0].tolist() == [2, 2, 2, 1, 1, 1, 1, 1, 1]
    stack.reset()
    assert stack(second)[0, 0].tolist() == [2] * 9


def test_separate_acceleration_and_braking_heads_make_one_axis():
    read = throttle_brake_reader(("steering", "acceleration", "braking"))
    assert read({"steering": 0.0, "acceleration": 0.25, "braking": 0.75}) == pytest.approx(-0.5)


def test_a_model_without_steering_cannot_drive():
    with pytest.raises(ModelError, match="driving needs 'steering'"):
        throttle_brake_reader(("throttle_brake",))
