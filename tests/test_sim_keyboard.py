"""Keyboard driving: held keys become smooth controls; arrows and WASD are the same keys.

Real key events through a real X server are in test_sim_window.py.
"""

from __future__ import annotations

import math

import pygame
import pytest

from engine.sim import keyboard
from engine.sim.keyboard import QUIT_KEYS, RESPAWN_KEYS, KeyboardDriver, SdlKeys


class FakeKeys:
    """Stands in for SDL's key state."""

    def __init__(self, *held: str):
        self.keys = set(held)

    def held(self) -> set[str]:
        return set(self.keys)


class FakePressed:
    """What `pygame.key.get_pressed()` returns, indexed by SDL key code."""

    def __init__(self, *codes: int):
        self.codes = set(codes)

    def __getitem__(self, code: int) -> bool:
        return code in self.codes


def held_with(monkeypatch, *codes: int) -> set[str]:
    monkeypatch.setattr(keyboard.pygame.key, "get_pressed", lambda: FakePressed(*codes))
    return SdlKeys().held()


def test_held_keys_steer_and_accelerate_at_once():
    driver = KeyboardDriver(FakeKeys("right", "up"))
    driver.controls(now=0.0)
    controls = driver.controls(now=1.0)
    assert controls.steering == pytest.approx(1.0, abs=0.01) and controls.throttle_brake == 1.0


def test_steering_eases_in_instead_of_jumping():
    driver = KeyboardDriver(FakeKeys("left"))
    driver.controls(now=0.0)
    eased = -(1 - math.exp(-0.1 / keyboard.STEERING_TIME_CONSTANT_S))
    assert driver.controls(now=0.1).steering == pytest.approx(eased)


def test_a_key_held_a_fraction_of_the_time_steers_about_that_fraction():
    # A keyboard driver's duty cycle: one game tick (30 Hz) in three, every 0.1 s.
    keys = FakeKeys()
    driver = KeyboardDriver(keys)
    steering = []
    for tick in range(300):
        keys.keys = {"right"} if tick % 3 == 0 else set()
        steering.append(driver.controls(now=tick / 30).steering)
    assert sum(steering[150:]) / 150 == pytest.approx(1 / 3, abs=0.05)


def test_releasing_the_keys_centres_the_wheel_and_lifts_the_throttle():
    keys = FakeKeys("left", "down")
    driver = KeyboardDriver(keys)
    driver.controls(now=0.0)
    assert driver.controls(now=1.0).throttle_brake == -1.0
    keys.keys.clear()
    controls = driver.controls(now=1.5)
    assert controls.steering == pytest.approx(0.0, abs=0.05) and controls.throttle_brake == 0.0


def test_a_held_key_drives_until_the_moment_it_is_released():
    keys = FakeKeys("up")
    driver = KeyboardDriver(keys)
    assert all(driver.controls(now=step * 0.5).throttle_brake == 1.0 for step in range(10))
    keys.keys.clear()
    assert driver.controls(now=5.01).throttle_brake == 0.0


def test_wasd_and_arrows_are_the_same_keys(monkeypatch):
    arrows = [pygame.K_LEFT, pygame.K_RIGHT, pygame.K_UP, pygame.K_DOWN]
    letters = [pygame.K_a, pygame.K_d, pygame.K_w, pygame.K_s]
    for arrow, letter, direction in zip(
        arrows, letters, ["left", "right", "up", "down"], strict=True
    ):
        assert held_with(monkeypatch, arrow) == held_with(monkeypatch, letter) == {direction}


def test_several_keys_are_held_at_once(monkeypatch):
    assert held_with(monkeypatch, pygame.K_w, pygame.K_RIGHT) == {"up", "right"}


def test_other_keys_are_ignored(monkeypatch):
    assert held_with(monkeypatch, pygame.K_x, pygame.K_SPACE) == set()


def test_q_and_esc_quit_and_r_respawns():
    assert {pygame.K_q, pygame.K_ESCAPE} <= QUIT_KEYS and pygame.K_r not in QUIT_KEYS
    assert pygame.K_r in RESPAWN_KEYS and not RESPAWN_KEYS & QUIT_KEYS
