"""The built-in driving game: one car on a procedural track, stepped in fixed game-time ticks.

Example::

    game = Game(config.sim, seed=7)
    game.set_controls(Controls(steering=0.1, throttle_brake=0.5))
    game.tick()                     # exactly 1/tick_hz seconds of game time
    frame = game.render_hood()      # RGB uint8 (hood_height, hood_width, 3): the model's input
    telemetry = game.telemetry()
    game.place(s=120.0, offset=0.5, heading_error=0.2)   # at rest, off the lane, angled

Controls follow a gamepad: `steering` +1 is full right, `throttle_brake` +1
full throttle and -1 full brake. A value outside [-1, 1] is clipped and NaN
is read as 0 (neutral); each such value is counted in
`Telemetry.clipped_inputs`. A dead-man switch sets both to neutral when no
`set_controls` came for `deadman_ms` of game time, so a driver that dies
cannot leave the throttle pinned.

Everything is deterministic: the same seed and the same inputs give the same
track, the same states and the same frames. Rendering never changes state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.core.config import SimConfig
from engine.core.errors import UsageError
from engine.sim.physics import CarState, step
from engine.sim.track import LANE_WIDTH_M, ROAD_HALF_WIDTH_M
from engine.sim.views import ChaseView, HoodView
from engine.sim.world import World, build_world

# Where a car starts and respawns: the middle of the right-hand lane.
LANE_CENTRE_M = -LANE_WIDTH_M / 2
# The largest heading error `Game.place` takes, either way: beyond it the car faces backwards.
MAX_HEADING_ERROR_RAD = math.pi / 2
# Goal points of the "purpose" signal sit every this many metres along the track.
CHECKPOINT_SPACING_M = 250.0
# How quickly the chase camera follows the car's heading (seconds).
_CHASE_LAG_S = 0.35


@dataclass(frozen=True)
class Controls:
    """What a driver (player, model or autopilot) asks of the car: both in [-1, 1]."""

    steering: float = 0.0
    throttle_brake: float = 0.0


NEUTRAL = Controls()


@dataclass(frozen=True)
class Telemetry:
    """The car's state as collectors, drivers and overlays see it.

    Angles are radians counter-clockwise; `lateral_offset` is metres from the
    centre line, + = left of it; `purpose_direction` is the bearing of the
    next goal point relative to the heading (+ = to the left), the "purpose"
    input of the reference's collectors. `steering` and `throttle_brake` are
    the controls the last tick applied (after clipping and the dead-man switch).
    """

    time: float
    x: float
    y: float
    heading: float
    speed: float
    lateral_offset: float
    on_road: bool
    surface: str
    distance_m: float
    laps: int
    offroad_events: int
    purpose_direction: float
    purpose_distance_m: float
    clipped_inputs: int
    steering: float
    throttle_brake: float


class Game:
    """One car, one track, fixed ticks; views are built on first use."""

    def __init__(self, config: SimConfig, seed: int | None = None):
        self.config = config
        self.seed = config.seed if seed is None else seed
        self.world: World = build_world(self.seed, config.water_ponds)
        self.track = self.world.track
        self.dt = 1.0 / config.tick_hz
        self._deadman_s = config.deadman_ms / 1000.0
        self._ticks = 0
        self._hood: HoodView | None = None
        self._chase: ChaseView | None = None
        self._controls = NEUTRAL
        self._controls_time = -math.inf
        self._applied = NEUTRAL
        self._clipped_inputs = 0
        self._distance_m = 0.0
        self._laps = 0
        self._offroad_events = 0
        self._line_debt = 0
        self._place(0.0)

    @property
    def time(self) -> float:
        """Game seconds since the start (ticks x 1/tick_hz, free of float drift)."""
        return self._ticks * self.dt

    @property
    def car(self) -> CarState:
        """The car's current physical state."""
        return self._car

    @property
    def applied_controls(self) -> Controls:
        """The controls the last tick really used (after clipping and the dead-man switch)."""
        return self._applied

    def set_controls(self, controls: Controls) -> None:
        """Ask for new controls; bad values are clipped (NaN -> 0) and counted, never raised."""
        self._controls = Controls(
            self._clean(controls.steering), self._clean(controls.throttle_brake)
        )
        self._controls_time = self.time

    def tick(self) -> None:
        """Advance exactly one tick (1/tick_hz seconds) of game time."""
        fresh = self.time - self._controls_time <= self._deadman_s + 1e-9
        self._applied = self._controls if fresh else NEUTRAL
        before_s = self._s
        self._car = step(
            self._car, self._applied.steering, self._applied.throttle_brake, self._surface, self.dt
        )
        self._ticks += 1
        self._distance_m += self._car.speed * self.dt
        was_on_road = self._on_road
        self._locate()
        if was_on_road and not self._on_road:
            self._offroad_events += 1
        self._count_start_line(before_s)
        error = (self._car.heading - self._chase_yaw + math.pi) % (2 * math.pi) - math.pi
        self._chase_yaw += error * (1.0 - math.exp(-self.dt / _CHASE_LAG_S))

    def respawn(self, rng: np.random.Generator) -> None:
        """Put the car at a random point of the right-hand lane, along the track, at rest."""
        self._place(float(rng.uniform(0.0, self.track.length_m)))

    def place(self, s: float, offset: float = LANE_CENTRE_M, heading_error: float = 0.0) -> None:
        """Put the car at rest at arc length `s` (wraps), maybe off the lane and angled.

        `offset` is metres left of the centre line (+ = left, like telemetry's), and
        `heading_error` radians the car is turned from the track's direction (+ = to the left).
        A respawn is `place(s)`: the right-hand lane's centre, straight along the track.
        `eval --hard` starts and respawns the car off that line, offset and angled, the way
        a real game's respawn or a spin leaves it. Raises `UsageError` for a place off the
        road (|offset| above `ROAD_HALF_WIDTH_M`) or an angle beyond `MAX_HEADING_ERROR_RAD`
        either way (a car facing backwards would drive the wrong way round).
        """
        _check_placement(s, offset, heading_error)
        self._place(s, offset, heading_error)

    def telemetry(self) -> Telemetry:
        """A snapshot of the car's state, lap count and driving record."""
        car = self._car
        goal_direction, goal_distance = self._purpose()
        return Telemetry(
            time=self.time,
            x=car.x,
            y=car.y,
            heading=car.heading,
            speed=car.speed,
            lateral_offset=self._offset,
            on_road=self._on_road,
            surface=self._surface,
            distance_m=self._distance_m,
            laps=self._laps,
            offroad_events=self._offroad_events,
            purpose_direction=goal_direction,
            purpose_distance_m=goal_distance,
            clipped_inputs=self._clipped_inputs,
            steering=self._applied.steering,
            throttle_brake=self._applied.throttle_brake,
        )

    def render_hood(self) -> np.ndarray:
        """The hood camera frame: RGB uint8 (hood_height, hood_width, 3), the model's input."""
        if self._hood is None:
            self._hood = HoodView(self.world, self.config.hood_width, self.config.hood_height)
        return self._hood.render(self._car)

    def render_chase(self) -> np.ndarray:
        """The third-person frame: RGB uint8 (chase_height, chase_width, 3), for the stream."""
        if self._chase is None:
            self._chase = ChaseView(self.world, self.config.chase_width, self.config.chase_height)
        braking = self._applied.throttle_brake < -0.05 and self._car.speed > 0.1
        return self._chase.render(self._car, self._chase_yaw, braking, self._laps)

    @property
    def track_s(self) -> float:
        """Arc length along the track of the car's nearest centre-line point."""
        return self._s

    def _clean(self, value: float) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._clipped_inputs += 1
            return 0.0
        if math.isnan(number):
            self._clipped_inputs += 1
            return 0.0
        if number < -1.0 or number > 1.0:
            self._clipped_inputs += 1
            return max(-1.0, min(1.0, number))
        return number

    def _place(self, s: float, offset: float = LANE_CENTRE_M, heading_error: float = 0.0) -> None:
        x, y = self.track.point_at(s, offset)
        heading = self.track.heading_at(s)
        if heading_error:
            # Only an angled place is wrapped, so a respawn's heading stays bit for bit the same.
            heading = (heading + heading_error + math.pi) % (2 * math.pi) - math.pi
        self._car = CarState(x=x, y=y, heading=heading)
        self._chase_yaw = heading
        self._locate()
        self._on_road = True

    def _locate(self) -> None:
        car = self._car
        self._s, self._offset = self.track.locate(car.x, car.y)
        _, water = self.world.sample(car.x, car.y)
        if water > 0.0:
            self._surface = "water"
        else:
            self._surface = "road" if abs(self._offset) <= ROAD_HALF_WIDTH_M else "grass"
        self._on_road = self._surface == "road"

    def _count_start_line(self, before_s: float) -> None:
        """Count a lap per forward crossing of the start line, net of any backward ones."""
        if abs(self._offset) > ROAD_HALF_WIDTH_M * 3:
            return
        length = self.track.length_m
        if before_s > 0.75 * length and self._s < 0.25 * length:
            if self._line_debt > 0:
                self._line_debt -= 1
            else:
                self._laps += 1
        elif before_s < 0.25 * length and self._s > 0.75 * length:
            self._line_debt += 1

    def _purpose(self) -> tuple[float, float]:
        length = self.track.length_m
        goal_s = (math.floor(self._s / CHECKPOINT_SPACING_M) + 1) * CHECKPOINT_SPACING_M
        if goal_s >= length - CHECKPOINT_SPACING_M / 3:
            goal_s = length
        gx, gy = self.track.point_at(goal_s % length)
        car = self._car
        bearing = math.atan2(gy - car.y, gx - car.x) - car.heading
        return (bearing + math.pi) % (2 * math.pi) - math.pi, math.hypot(gx - car.x, gy - car.y)


def _check_placement(s: float, offset: float, heading_error: float) -> None:
    """Refuse a place `Game.place` cannot put a car: not finite, off the road, or backwards."""
    for name, value in (("s", s), ("offset", offset), ("heading_error", heading_error)):
        if not math.isfinite(value):
            raise UsageError(
                f"car placement: {name} = {value!r} is not accepted; accepted: a finite number"
            )
    if abs(offset) > ROAD_HALF_WIDTH_M:
        raise UsageError(
            f"car placement: offset = {offset:g} m is off the road; accepted: "
            f"-{ROAD_HALF_WIDTH_M:g} to {ROAD_HALF_WIDTH_M:g} m from the centre line (+ = left)"
        )
    if abs(heading_error) > MAX_HEADING_ERROR_RAD:
        raise UsageError(
            f"car placement: heading_error = {heading_error:g} rad is not accepted; accepted: "
            f"-{MAX_HEADING_ERROR_RAD:.4f} to {MAX_HEADING_ERROR_RAD:.4f} rad (+ = to the left)"
        )
