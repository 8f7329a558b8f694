"""Car physics: a kinematic bicycle model with engine, brakes, friction and grip per surface.

Example::

    state = CarState(x=0.0, y=0.0, heading=0.0)
    state = step(state, steering=0.2, throttle_brake=1.0, surface="road", dt=1 / 30)

Sign conventions (the same as a gamepad): `steering` +1 is full right, which
turns the car clockwise (its heading, counter-clockwise from +x, decreases);
`throttle_brake` +1 is full throttle and -1 full brake. The car does not
reverse: braking holds it at standstill.

A kinematic bicycle would corner at any speed with full lock; real tyres do
not. The steering lock therefore shrinks with speed so the sharpest turn at
full stick stays within the surface's grip. A stick value thus means "this
fraction of the grip", which keeps full-range steering meaningful at every
speed, the way games soften the stick at speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

WHEELBASE_M = 2.7
MAX_WHEEL_ANGLE_RAD = 0.6
# Normalised stick units per second the front wheels can travel.
STEERING_RATE_PER_S = 5.0
ENGINE_ACCEL_MS2 = 4.5
TOP_SPEED_MS = 46.0
BRAKE_DECEL_MS2 = 9.0
ROLLING_DECEL_MS2 = 0.15
AIR_DRAG_PER_M = 0.0004


@dataclass(frozen=True)
class SurfaceGrip:
    """How a surface treats the car: lateral grip, extra drag, how much the engine still pushes."""

    lateral_grip_ms2: float
    rolling_decel_ms2: float
    drag_per_s: float
    engine_factor: float
    brake_factor: float


SURFACES: dict[str, SurfaceGrip] = {
    "road": SurfaceGrip(8.5, 0.0, 0.0, 1.0, 1.0),
    # Grass: slow and slippery; full throttle tops out near 28 km/h.
    "grass": SurfaceGrip(4.0, 1.0, 0.35, 1.0, 0.6),
    # Water: the engine drowns and the car stops within a second or two: stuck until respawned.
    "water": SurfaceGrip(1.0, 3.0, 2.5, 0.0, 0.3),
}


@dataclass(frozen=True)
class CarState:
    """Where the car is and what it is doing; `steering` is the wheels' current stick position."""

    x: float
    y: float
    heading: float
    speed: float = 0.0
    steering: float = 0.0


def step(
    state: CarState, steering: float, throttle_brake: float, surface: str, dt: float
) -> CarState:
    """Advance the car by `dt` seconds with inputs already clipped to [-1, 1]."""
    grip = SURFACES[surface]
    wheels = _toward(state.steering, steering, STEERING_RATE_PER_S * dt)
    speed = _new_speed(state.speed, throttle_brake, grip, dt)
    mean_speed = 0.5 * (state.speed + speed)
    wheel_angle = -wheels * max_wheel_angle(mean_speed, grip.lateral_grip_ms2)
    yaw_rate = mean_speed * math.tan(wheel_angle) / WHEELBASE_M
    mid_heading = state.heading + 0.5 * yaw_rate * dt
    heading = _wrap(state.heading + yaw_rate * dt)
    return replace(
        state,
        x=state.x + mean_speed * math.cos(mid_heading) * dt,
        y=state.y + mean_speed * math.sin(mid_heading) * dt,
        heading=heading,
        speed=speed,
        steering=wheels,
    )


def max_wheel_angle(
    speed: float, lateral_grip_ms2: float = SURFACES["road"].lateral_grip_ms2
) -> float:
    """The front-wheel lock at `speed`: full lock when slow, less when grip would run out."""
    if speed < 1e-3:
        return MAX_WHEEL_ANGLE_RAD
    return min(MAX_WHEEL_ANGLE_RAD, math.atan(WHEELBASE_M * lateral_grip_ms2 / (speed * speed)))


def _new_speed(speed: float, throttle_brake: float, grip: SurfaceGrip, dt: float) -> float:
    throttle = max(0.0, throttle_brake)
    brake = max(0.0, -throttle_brake)
    engine = throttle * grip.engine_factor * ENGINE_ACCEL_MS2 * max(0.0, 1.0 - speed / TOP_SPEED_MS)
    resistance = (
        ROLLING_DECEL_MS2
        + grip.rolling_decel_ms2
        + AIR_DRAG_PER_M * speed * speed
        + grip.drag_per_s * speed
        + brake * grip.brake_factor * BRAKE_DECEL_MS2
    )
    if speed <= 0.0 and engine <= resistance:
        return 0.0
    # Resistance only ever slows the car to a standstill, never backwards.
    return max(0.0, speed + (engine - resistance) * dt)


def _toward(current: float, target: float, max_change: float) -> float:
    return current + max(-max_change, min(max_change, target - current))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
