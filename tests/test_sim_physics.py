"""Car physics: the controls do what a driver expects, and the ground matters."""

from __future__ import annotations

import math

import pytest

from engine.sim.physics import CarState, step

DT = 1 / 30


def drive(
    state: CarState, steering: float, throttle_brake: float, surface: str, seconds: float
) -> CarState:
    for _ in range(round(seconds / DT)):
        state = step(state, steering, throttle_brake, surface, DT)
    return state


def test_throttle_accelerates_from_standstill():
    state = drive(CarState(0.0, 0.0, 0.0), 0.0, 1.0, "road", 3.0)
    assert 8.0 < state.speed < 15.0
    assert state.x > 10.0 and abs(state.y) < 1e-9


def test_speed_tops_out_below_the_top_speed():
    state = drive(CarState(0.0, 0.0, 0.0, speed=40.0), 0.0, 1.0, "road", 30.0)
    assert 38.0 < state.speed < 46.0


def test_full_brake_stops_the_car_within_a_realistic_distance():
    start = CarState(0.0, 0.0, 0.0, speed=25.0)
    state = drive(start, 0.0, -1.0, "road", 4.0)
    assert state.speed == 0.0
    # 25 m/s at ~9 m/s^2 needs about 35 m.
    assert 25.0 < state.x < 45.0


def test_braking_never_rolls_the_car_backwards():
    state = drive(CarState(0.0, 0.0, 0.0, speed=2.0), 0.0, -1.0, "road", 3.0)
    assert state.speed == 0.0 and state.x > 0.0


def test_coasting_slows_the_car_down():
    state = drive(CarState(0.0, 0.0, 0.0, speed=20.0), 0.0, 0.0, "road", 5.0)
    assert 15.0 < state.speed < 20.0


@pytest.mark.parametrize(("steering", "turns"), [(1.0, "right"), (-1.0, "left")])
def test_steering_turns_the_way_a_gamepad_stick_points(steering, turns):
    # Heading 0 points along +x; a right turn curves towards -y.
    state = drive(CarState(0.0, 0.0, 0.0, speed=10.0), steering, 0.3, "road", 1.0)
    if turns == "right":
        assert state.heading < -0.3 and state.y < -1.0
    else:
        assert state.heading > 0.3 and state.y > 1.0


def test_steering_reaches_the_wheels_gradually():
    state = step(CarState(0.0, 0.0, 0.0, speed=10.0), 1.0, 0.0, "road", DT)
    assert 0.0 < state.steering < 1.0


def test_full_lock_at_speed_stays_within_grip():
    speed = 30.0
    state = drive(CarState(0.0, 0.0, 0.0, speed=speed), 1.0, 0.2, "road", 1.0)
    before = state.heading
    state = step(state, 1.0, 0.2, "road", DT)
    lateral_accel = abs(state.heading - before) / DT * state.speed
    assert lateral_accel < 9.0


def test_grass_slows_the_car_to_a_crawl_even_at_full_throttle():
    state = drive(CarState(0.0, 0.0, 0.0, speed=25.0), 0.0, 1.0, "grass", 10.0)
    assert state.speed < 10.0


def test_water_stops_the_car_and_the_engine_cannot_move_it_again():
    state = drive(CarState(0.0, 0.0, 0.0, speed=20.0), 0.0, 0.0, "water", 3.0)
    assert state.speed == 0.0
    stuck = drive(state, 0.0, 1.0, "water", 3.0)
    assert stuck.speed == 0.0 and stuck.x == state.x


def test_heading_stays_within_plus_minus_pi():
    state = drive(CarState(0.0, 0.0, 3.0, speed=8.0), -1.0, 0.3, "road", 10.0)
    assert -math.pi <= state.heading <= math.pi
