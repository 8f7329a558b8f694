"""Keyboard driving: held keys become smooth controls, even from press-only key events."""

from __future__ import annotations

import pytest

from engine.sim.keyboard import KeyboardDriver

LEFT_ARROW, UP_ARROW = 65361, 65362


class FakeKeys:
    """Stands in for the X11/Windows key-state reader."""

    def __init__(self, *held: str):
        self.keys = set(held)

    def held(self) -> set[str]:
        return set(self.keys)


def test_held_keys_steer_and_accelerate_at_once():
    driver = KeyboardDriver(FakeKeys("right", "up"))
    driver.controls(now=0.0)
    controls = driver.controls(now=1.0)
    assert controls.steering == 1.0 and controls.throttle_brake == 1.0


def test_steering_ramps_in_instead_of_jumping():
    driver = KeyboardDriver(FakeKeys("left"))
    driver.controls(now=0.0)
    assert driver.controls(now=0.1).steering == pytest.approx(-0.3)


def test_releasing_the_keys_centres_the_wheel_and_lifts_the_throttle():
    keys = FakeKeys("left", "down")
    driver = KeyboardDriver(keys)
    driver.controls(now=0.0)
    assert driver.controls(now=1.0).throttle_brake == -1.0
    keys.keys.clear()
    controls = driver.controls(now=1.5)
    assert controls.steering == 0.0 and controls.throttle_brake == 0.0


def test_a_single_press_holds_through_the_auto_repeat_delay():
    driver = KeyboardDriver()
    driver.press(UP_ARROW, now=0.0)
    assert driver.controls(now=0.5).throttle_brake == 1.0
    assert driver.controls(now=1.0).throttle_brake == 0.0


def test_repeated_presses_stop_soon_after_the_last_one():
    driver = KeyboardDriver()
    for step in range(10):
        driver.press(ord("w"), now=step * 0.04)
    assert driver.controls(now=0.4).throttle_brake == 1.0
    assert driver.controls(now=0.6).throttle_brake == 0.0


def test_wasd_and_arrows_are_the_same_keys():
    arrows, letters = KeyboardDriver(), KeyboardDriver()
    arrows.press(LEFT_ARROW, now=0.0)
    letters.press(ord("a"), now=0.0)
    arrows.controls(now=0.0)
    letters.controls(now=0.0)
    assert arrows.controls(now=0.2) == letters.controls(now=0.2)
    assert arrows.controls(now=0.3).steering < 0.0


def test_other_keys_are_ignored():
    driver = KeyboardDriver()
    driver.press(-1, now=0.0)
    driver.press(ord("x"), now=0.0)
    controls = driver.controls(now=0.1)
    assert controls.steering == 0.0 and controls.throttle_brake == 0.0
