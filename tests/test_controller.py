"""Predictions become gamepad values past the game's dead zones, and every way out is neutral."""

from __future__ import annotations

import math
import platform

import pytest

from engine.core.config import ControllerConfig
from engine.driver.controller import (
    NEUTRAL_PAD,
    ControllerError,
    GamepadState,
    SimController,
    Translator,
    open_controller,
)


class RecordingGame:
    """The one method SimController calls on the built-in game, recorded."""

    def __init__(self) -> None:
        self.controls: list[object] = []

    def set_controls(self, controls: object) -> None:
        self.controls.append(controls)


@pytest.mark.parametrize(
    ("prediction", "expected_stick"),
    [
        (0.0, 0.0),
        (0.005, 0.0),  # below ignore_below: no input, not a nudge past the dead zone
        (0.05, 0.24),  # 0.2 + 0.8 * 0.05: a small steer still moves the car
        (-0.05, -0.24),
        (0.5, 0.6),
        (1.0, 1.0),
        (-1.0, -1.0),
        (3.0, 1.0),  # clipped
        (-7.5, -1.0),
    ],
)
def test_steering_is_pushed_past_the_dead_zone(prediction, expected_stick):
    translator = Translator(ControllerConfig(steering_dead_zone=0.2))
    assert translator.translate(prediction, 0.0).steering == pytest.approx(expected_stick)


@pytest.mark.parametrize(
    ("prediction", "left", "right"),
    [
        (0.5, 0.0, 0.55),  # 0.1 + 0.9 * 0.5 on the right trigger: accelerate
        (-0.5, 0.55, 0.0),  # brake on the left trigger
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 1.0),
        (-2.0, 1.0, 0.0),
    ],
)
def test_throttle_brake_goes_to_the_right_and_left_triggers(prediction, left, right):
    pad = Translator(ControllerConfig(trigger_dead_zone=0.1)).translate(0.0, prediction)
    assert (pad.left_trigger, pad.right_trigger) == (pytest.approx(left), pytest.approx(right))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_infinite_prediction_gives_neutral(bad):
    translator = Translator(ControllerConfig())
    assert translator.translate(bad, 0.7) == NEUTRAL_PAD
    assert translator.translate(0.3, bad) == NEUTRAL_PAD


def test_smoothing_moves_part_of_the_way_each_step():
    translator = Translator(ControllerConfig(smoothing=0.5, ignore_below=0.0))
    assert translator.translate(1.0, 0.0).steering == pytest.approx(0.5)
    assert translator.translate(1.0, 0.0).steering == pytest.approx(0.75)
    translator.reset()
    assert translator.translate(1.0, 0.0).steering == pytest.approx(0.5)


def test_combined_axis_is_right_minus_left_trigger():
    assert GamepadState(left_trigger=0.25, right_trigger=0.0).throttle_brake == -0.25


def test_sim_controller_goes_neutral_when_an_exception_leaves_the_block():
    game = RecordingGame()
    with pytest.raises(RuntimeError), SimController(game) as pad:
        pad.send(GamepadState(steering=0.8, right_trigger=1.0))
        raise RuntimeError("model crashed")
    last = game.controls[-1]
    assert (last.steering, last.throttle_brake) == (0.0, 0.0)


def test_sim_backend_without_a_game_is_a_clear_error():
    with pytest.raises(ControllerError, match="needs the built-in game"):
        open_controller(ControllerConfig(backend="sim"))


@pytest.mark.skipif(platform.system() != "Linux", reason="the uinput check is Linux's")
def test_vgamepad_without_uinput_says_why_and_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr("engine.driver.controller.UINPUT_PATH", tmp_path / "uinput")
    with pytest.raises(ControllerError) as error:
        open_controller(ControllerConfig(backend="vgamepad"))
    assert "uinput" in str(error.value) and "modprobe uinput" in str(error.value)
