"""The NPC driver that data collectors record: a good driver with deliberate, recovered mistakes.

Example::

    pilot = Autopilot(config.autopilot, seed=7)
    while collecting:
        game.set_controls(pilot.decide(game))
        game.tick()

It keeps to the right-hand lane by pure pursuit of a point ahead on the lane,
and holds a speed profile computed once per track: the lateral-acceleration
limit sets each curve's speed, and a backward pass makes it brake *before*
curves. Two kinds of randomness make its recordings worth training on:

* noise: slowly wandering (Ornstein-Uhlenbeck) offsets on both controls;
* perturbations, every `perturbation_interval_s` on average: a swerve (a
  steering jerk, then the recovery), a drift out of the lane and back, a hard
  brake, or a burst of full throttle. Each watches the car and ends early if
  continuing could take it off the road, so the driving itself stays clean:
  recoveries, hard braking and full-lock steering in the data, zero off-road
  events on the clock.

Everything runs on game time and its own seeded generator: the same seed on
the same game gives the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.core.config import AutopilotConfig
from engine.sim.game import LANE_CENTRE_M, Controls, Game
from engine.sim.physics import (
    AIR_DRAG_PER_M,
    ENGINE_ACCEL_MS2,
    ROLLING_DECEL_MS2,
    TOP_SPEED_MS,
    WHEELBASE_M,
    max_wheel_angle,
)
from engine.sim.track import Track

# Comfortable deceleration the speed profile plans with (the brakes can do 9 m/s^2).
PLANNED_BRAKING_MS2 = 2.5
SPEED_GAIN_PER_MS = 0.3
_STEERING_NOISE_TIME_S = 0.6
_THROTTLE_NOISE_TIME_S = 1.2
# A perturbation ends early once the car is predicted to stray this far from its lane.
_SAFE_LANE_ERROR_M = 1.3
_PREDICTION_S = 0.8


@dataclass
class _Perturbation:
    kind: str
    ends_at: float
    value: float


class Autopilot:
    """Controls for a `Game` from its state: lane keeping, speed profile, noise, mistakes."""

    def __init__(self, config: AutopilotConfig, seed: int = 0):
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._profiles: dict[int, np.ndarray] = {}
        self._last_time: float | None = None
        self._steering_noise = 0.0
        self._throttle_noise = 0.0
        self._perturbation: _Perturbation | None = None
        self._next_perturbation = self._draw_interval(0.0)

    @property
    def making_mistake(self) -> bool:
        """Whether a deliberate mistake (swerve, drift, braking, burst) is under way right now.

        The recovery that follows is driving worth learning; the mistake itself is not, so a
        recording NPC pauses the recorder while this is true (`engine/driver/keyboard_npc.py`).
        """
        return self._perturbation is not None

    def decide(self, game: Game) -> Controls:
        """The controls for the game's current state (advances noise by the game time elapsed)."""
        now = game.time
        elapsed = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        self._last_time = now
        self._advance_noise(elapsed)
        car = game.car
        track = game.track
        s = game.track_s
        offset = game.telemetry().lateral_offset
        lane = LANE_CENTRE_M
        heading_error = _wrap(car.heading - track.heading_at(s))
        predicted_error = offset - lane + car.speed * math.sin(heading_error) * _PREDICTION_S
        self._update_perturbation(now, car.speed, predicted_error)
        perturbation = self._perturbation
        if perturbation is not None and perturbation.kind == "drift":
            lane += perturbation.value
        steering = self._pursue(track, s, car.x, car.y, car.heading, car.speed, lane)
        target_speed = self._target_speed(track, s, car.speed)
        throttle_brake = self._hold_speed(car.speed, target_speed)
        steering += self._steering_noise
        throttle_brake += self._throttle_noise
        if perturbation is not None:
            if perturbation.kind == "swerve":
                steering = perturbation.value
            elif perturbation.kind in ("brake", "throttle"):
                throttle_brake = perturbation.value
        return Controls(_clip(steering), _clip(throttle_brake))

    def _pursue(
        self, track: Track, s: float, x: float, y: float, heading: float, speed: float, lane: float
    ) -> float:
        """Pure pursuit: the steering that arcs the car through a lane point ahead."""
        lookahead = min(30.0, max(6.0, 0.65 * speed + 4.0))
        goal_x, goal_y = track.point_at(s + lookahead, lane)
        dx, dy = goal_x - x, goal_y - y
        ahead = dx * math.cos(heading) + dy * math.sin(heading)
        left = -dx * math.sin(heading) + dy * math.cos(heading)
        curvature = 2.0 * left / max(ahead * ahead + left * left, 1e-6)
        wheel_angle = math.atan(WHEELBASE_M * curvature)
        # The stick is a fraction of the lock available at this speed; + = right.
        return -wheel_angle / max_wheel_angle(speed)

    def _target_speed(self, track: Track, s: float, speed: float) -> float:
        """The slowest planned speed within the next second of driving (reaction margin)."""
        profile = self._profile(track)
        start = track.index_at(s)
        span = max(1, int((speed * 1.0 + 5.0) / track.spacing_m))
        indices = (start + np.arange(span)) % len(profile)
        return float(profile[indices].min())

    def _hold_speed(self, speed: float, target: float) -> float:
        """Throttle/brake for `target`: feed-forward against resistance plus proportional error."""
        resistance = ROLLING_DECEL_MS2 + AIR_DRAG_PER_M * speed * speed
        feed_forward = resistance / (ENGINE_ACCEL_MS2 * max(0.05, 1.0 - speed / TOP_SPEED_MS))
        return feed_forward + SPEED_GAIN_PER_MS * (target - speed)

    def _profile(self, track: Track) -> np.ndarray:
        """Per track sample: the speed to drive there (curve limit, braked for in advance)."""
        key = id(track)
        if key not in self._profiles:
            self._profiles[key] = speed_profile(
                track, self.config.cruise_speed_kmh / 3.6, self.config.lateral_accel_limit
            )
        return self._profiles[key]

    def _advance_noise(self, elapsed: float) -> None:
        if elapsed <= 0.0:
            return
        config = self.config
        self._steering_noise = _ornstein_uhlenbeck(
            self._steering_noise, config.steering_noise, _STEERING_NOISE_TIME_S, elapsed, self._rng
        )
        self._throttle_noise = _ornstein_uhlenbeck(
            self._throttle_noise, config.throttle_noise, _THROTTLE_NOISE_TIME_S, elapsed, self._rng
        )

    def _update_perturbation(self, now: float, speed: float, predicted_error: float) -> None:
        """End the running perturbation when due or unsafe; start the next one when scheduled."""
        current = self._perturbation
        if current is not None:
            unsafe = abs(predicted_error) > _SAFE_LANE_ERROR_M and current.kind == "swerve"
            if now >= current.ends_at or unsafe:
                self._perturbation = None
                self._next_perturbation = self._draw_interval(now)
            return
        if now < self._next_perturbation or speed < 8.0 or abs(predicted_error) > 0.5:
            return
        self._perturbation = self._draw_perturbation(now)

    def _draw_perturbation(self, now: float) -> _Perturbation:
        rng = self._rng
        strength = self.config.perturbation_strength
        sign = 1.0 if rng.random() < 0.5 else -1.0
        kind = str(rng.choice(["swerve", "swerve", "drift", "brake", "throttle"]))
        if kind == "swerve":
            # Strength 0.6 (the default) already reaches full lock now and then.
            amplitude = min(1.0, strength * rng.uniform(1.0, 1.7))
            return _Perturbation(kind, now + rng.uniform(0.25, 0.7), sign * amplitude)
        if kind == "drift":
            # Towards the centre line more often: the right lane has less room to the verge.
            side = 1.0 if rng.random() < 0.7 else -1.0
            return _Perturbation(
                kind, now + rng.uniform(1.5, 3.5), side * strength * rng.uniform(0.6, 1.6)
            )
        if kind == "brake":
            return _Perturbation(
                kind, now + rng.uniform(0.4, 1.4), -min(1.0, strength * rng.uniform(1.0, 1.7))
            )
        return _Perturbation(kind, now + rng.uniform(0.8, 2.0), 1.0)

    def _draw_interval(self, now: float) -> float:
        config = self.config
        if config.perturbation_interval_s <= 0.0 or config.perturbation_strength <= 0.0:
            return math.inf
        return now + float(self._rng.exponential(config.perturbation_interval_s))


def speed_profile(track: Track, cruise_ms: float, lateral_accel: float) -> np.ndarray:
    """Target speed per track sample: curve-limited, then lowered so braking starts in time."""
    curvature = np.abs(track.curvature)
    # The tightest curvature within 10 m either side: no speeding into or out of a curve.
    window = max(1, int(10.0 / track.spacing_m))
    padded = np.concatenate([curvature[-window:], curvature, curvature[:window]])
    widest = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1).max(axis=1)
    profile = np.minimum(cruise_ms, np.sqrt(lateral_accel / np.maximum(widest, 1e-6)))
    step = 2.0 * PLANNED_BRAKING_MS2 * track.spacing_m
    count = len(profile)
    # Two backward sweeps around the loop settle the wrap-around from the start line.
    for _ in range(2):
        for i in range(count - 1, -1, -1):
            following = profile[(i + 1) % count]
            profile[i] = min(profile[i], math.sqrt(following * following + step))
    return profile


def _ornstein_uhlenbeck(value: float, scale: float, time_constant: float, dt: float, rng) -> float:
    """One step of mean-reverting noise whose long-run standard deviation is `scale`."""
    decay = math.exp(-dt / time_constant)
    return value * decay + scale * math.sqrt(1.0 - decay * decay) * float(rng.standard_normal())


def _clip(value: float) -> float:
    return max(-1.0, min(1.0, value))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
