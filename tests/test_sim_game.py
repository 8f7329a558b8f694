"""The game's contract: fixed ticks, safe controls, telemetry, respawn, determinism."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from engine.core.config import SimConfig
from engine.sim.game import LANE_CENTRE_M, Controls, Game
from engine.sim.track import ROAD_HALF_WIDTH_M

CONFIG = SimConfig()


def run(game: Game, controls: Controls, seconds: float) -> None:
    for _ in range(round(seconds * game.config.tick_hz)):
        game.set_controls(controls)
        game.tick()


def test_seed_argument_overrides_the_configured_seed():
    assert CONFIG.seed == 1
    assert Game(CONFIG, seed=2).seed == 2
    assert Game(msgspec.structs.replace(CONFIG, seed=3)).seed == 3
    assert Game(msgspec.structs.replace(CONFIG, seed=3), seed=None).track.seed == 3


def test_same_seed_gives_the_same_track_and_different_seeds_differ():
    assert np.array_equal(Game(CONFIG, seed=3).track.points, Game(CONFIG, seed=3).track.points)
    first, second = Game(CONFIG, seed=3).track, Game(CONFIG, seed=4).track
    assert len(first.points) != len(second.points) or not np.allclose(first.points, second.points)


def test_tick_advances_exactly_one_tick_of_game_time():
    game = Game(msgspec.structs.replace(CONFIG, tick_hz=60.0), seed=1)
    for _ in range(600):
        game.tick()
    assert game.time == 10.0


def test_car_starts_at_rest_in_the_right_lane_on_the_road():
    telemetry = Game(CONFIG, seed=2).telemetry()
    assert telemetry.speed == 0.0 and telemetry.on_road and telemetry.surface == "road"
    assert telemetry.lateral_offset == pytest.approx(LANE_CENTRE_M, abs=0.01)
    assert telemetry.laps == 0 and telemetry.offroad_events == 0 and telemetry.distance_m == 0.0


def test_throttle_drives_the_car_forward_along_the_track():
    game = Game(CONFIG, seed=2)
    run(game, Controls(0.0, 1.0), 3.0)
    telemetry = game.telemetry()
    assert telemetry.speed > 8.0
    assert telemetry.distance_m == pytest.approx(game.track_s, abs=1.0)


def test_steering_right_moves_the_car_to_the_right_of_the_lane():
    game = Game(CONFIG, seed=2)
    run(game, Controls(0.0, 1.0), 2.0)
    heading = game.telemetry().heading
    run(game, Controls(0.6, 0.0), 0.5)
    telemetry = game.telemetry()
    assert telemetry.heading < heading
    assert telemetry.lateral_offset < LANE_CENTRE_M - 0.1


def test_deadman_switch_neutralises_controls_that_are_not_renewed():
    game = Game(CONFIG, seed=1)
    game.set_controls(Controls(0.5, 1.0))
    game.tick()
    assert game.applied_controls == Controls(0.5, 1.0)
    for _ in range(6):  # 200 ms of game time: still within the 250 ms
        game.tick()
    assert game.applied_controls == Controls(0.5, 1.0)
    for _ in range(2):  # past 250 ms
        game.tick()
    assert game.applied_controls == Controls(0.0, 0.0)
    assert game.telemetry().throttle_brake == 0.0


def test_renewed_controls_keep_driving_past_the_deadman_delay():
    game = Game(CONFIG, seed=1)
    run(game, Controls(0.0, 1.0), 2.0)
    assert game.applied_controls == Controls(0.0, 1.0)


def test_out_of_range_and_nan_controls_are_clipped_and_counted():
    game = Game(CONFIG, seed=1)
    game.set_controls(Controls(steering=5.0, throttle_brake=float("nan")))
    game.tick()
    assert game.applied_controls == Controls(steering=1.0, throttle_brake=0.0)
    game.set_controls(Controls(steering=-math.inf, throttle_brake=-1.5))
    game.tick()
    assert game.applied_controls == Controls(steering=-1.0, throttle_brake=-1.0)
    game.set_controls(Controls(steering=0.2, throttle_brake=-0.3))
    game.tick()
    assert game.telemetry().clipped_inputs == 4


def test_non_numeric_controls_never_crash_the_game():
    game = Game(CONFIG, seed=1)
    game.set_controls(Controls(steering="left", throttle_brake=None))  # type: ignore[arg-type]
    game.tick()
    assert game.applied_controls == Controls(0.0, 0.0)
    assert game.telemetry().clipped_inputs == 2


def test_leaving_the_road_counts_one_offroad_event_and_grass_slows_the_car():
    game = Game(CONFIG, seed=2)
    run(game, Controls(0.0, 1.0), 3.0)
    run(game, Controls(1.0, 1.0), 1.5)
    run(game, Controls(0.0, 1.0), 4.0)
    telemetry = game.telemetry()
    assert not telemetry.on_road and telemetry.surface == "grass"
    assert abs(telemetry.lateral_offset) > ROAD_HALF_WIDTH_M
    assert telemetry.offroad_events == 1
    assert telemetry.speed < 10.0


def test_respawn_puts_the_car_at_rest_on_the_road_heading_along_the_track():
    game = Game(CONFIG, seed=2)
    run(game, Controls(1.0, 1.0), 6.0)
    game.respawn(np.random.default_rng(0))
    telemetry = game.telemetry()
    assert telemetry.speed == 0.0 and telemetry.on_road
    assert telemetry.lateral_offset == pytest.approx(LANE_CENTRE_M, abs=0.05)
    track_heading = game.track.heading_at(game.track_s)
    assert abs(math.remainder(telemetry.heading - track_heading, 2 * math.pi)) < 0.05


def test_respawn_points_differ_with_the_generator():
    game = Game(CONFIG, seed=2)
    game.respawn(np.random.default_rng(1))
    first = game.track_s
    game.respawn(np.random.default_rng(2))
    assert game.track_s != first


def test_purpose_points_to_a_goal_point_ahead_on_the_track():
    telemetry = Game(CONFIG, seed=2).telemetry()
    assert 0.0 < telemetry.purpose_distance_m <= 260.0
    assert abs(telemetry.purpose_direction) < math.pi / 2


def test_water_in_the_world_is_water_to_the_car():
    game = Game(CONFIG, seed=1)
    world = game.world
    row, col = np.argwhere(world.fields[..., 2] > 2.0)[0]
    x = world.origin[0] + col * world.resolution_m
    y = world.origin[1] + row * world.resolution_m
    assert world.surface_at(x, y) == "water"


def test_no_ponds_when_the_config_asks_for_none():
    game = Game(msgspec.structs.replace(CONFIG, water_ponds=0), seed=1)
    assert (game.world.fields[..., 2] <= 0).all()


def test_crossing_the_start_line_backwards_and_forwards_again_is_no_lap():
    game = Game(CONFIG, seed=2)
    run(game, Controls(0.0, 0.3), 4.0)
    for _ in range(2):
        # A U-turn at walking pace, then drive across the start line.
        target = math.remainder(game.car.heading + math.pi, 2 * math.pi)
        while abs(math.remainder(game.car.heading - target, 2 * math.pi)) > 0.1:
            speed_control = 0.3 if game.car.speed < 3.0 else -0.3
            run(game, Controls(-1.0, speed_control), 1 / 30)
        run(game, Controls(0.0, 0.4), 6.0)
    telemetry = game.telemetry()
    assert game.track_s < 60.0, "the car should be just past the start line again"
    assert telemetry.laps == 0
