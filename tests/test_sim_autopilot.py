"""The NPC driver laps cleanly while its recordings cover the whole range of controls."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from engine.core.config import AutopilotConfig, SimConfig
from engine.sim.autopilot import Autopilot, speed_profile
from engine.sim.game import Game

pytestmark = pytest.mark.slow

SIM = SimConfig()
PILOT = AutopilotConfig()


def lap(seed: int, config: AutopilotConfig = PILOT, laps: int = 1) -> tuple[Game, np.ndarray]:
    """Drive `laps` laps (no rendering); returns the game and every control pair used."""
    game = Game(SIM, seed=seed)
    pilot = Autopilot(config, seed=seed)
    controls = []
    while game.telemetry().laps < laps and game.time < 300.0 * laps:
        decision = pilot.decide(game)
        controls.append((decision.steering, decision.throttle_brake))
        game.set_controls(decision)
        game.tick()
    return game, np.array(controls)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_autopilot_completes_a_lap_without_leaving_the_road(seed):
    game, _ = lap(seed)
    telemetry = game.telemetry()
    assert telemetry.laps == 1
    assert telemetry.offroad_events == 0
    assert telemetry.distance_m >= game.track.length_m * 0.98


def test_recorded_controls_span_full_steering_and_hard_braking():
    _, controls = lap(1, laps=2)
    steering, throttle_brake = controls[:, 0], controls[:, 1]
    assert steering.min() < -0.6 and steering.max() > 0.6
    assert throttle_brake.min() < -0.8 and throttle_brake.max() == 1.0
    # Mostly gentle driving, like a human's: balancing needs the extremes, not a majority of them.
    assert np.mean(np.abs(steering) < 0.3) > 0.6


def test_without_noise_or_perturbations_the_driving_is_smooth():
    calm = msgspec.structs.replace(
        PILOT, steering_noise=0.0, throttle_noise=0.0, perturbation_interval_s=0.0
    )
    game, controls = lap(2, calm)
    assert game.telemetry().offroad_events == 0
    assert np.abs(controls[:, 0]).max() < 0.8


def test_same_seed_gives_the_same_decisions():
    _, first = lap(3)
    _, second = lap(3)
    assert np.array_equal(first, second)


def test_speed_profile_brakes_before_the_tightest_curve():
    track = Game(SIM, seed=1).track
    cruise, lateral = 80 / 3.6, 4.0
    profile = speed_profile(track, cruise, lateral)
    apex = int(np.argmax(np.abs(track.curvature)))
    assert (
        profile[apex]
        <= math.sqrt(lateral * track.spacing_m / (np.abs(track.curvature[apex]) * track.spacing_m))
        + 1e-6
    )
    approach = profile[(apex - np.arange(1, 40)) % len(profile)]
    # Lower than cruise well before the apex, and rising the further back we look.
    assert approach[10] < cruise
    assert np.all(np.diff(approach) >= -1e-9)


def test_cruise_speed_is_respected():
    slow = msgspec.structs.replace(
        PILOT, cruise_speed_kmh=40.0, perturbation_interval_s=0.0, throttle_noise=0.0
    )
    game = Game(SIM, seed=2)
    pilot = Autopilot(slow, seed=2)
    top = 0.0
    for _ in range(int(30 * game.config.tick_hz)):
        game.set_controls(pilot.decide(game))
        game.tick()
        top = max(top, game.telemetry().speed)
    assert 30 / 3.6 < top < 45 / 3.6
