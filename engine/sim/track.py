"""Procedural closed race tracks: straights joined by circular curves, from a seed.

Example::

    track = generate_track(seed=7)
    track.length_m              # about 1.5-2.5 km
    s, offset = track.locate(x, y)

A track is built like a real circuit: a random star-shaped polygon whose
corners are rounded off by arcs of random radius (so curves vary in radius,
and the polygon's concave corners turn the other way), lightly smoothed so the
curvature ramps in instead of jumping. The centre line is then resampled at
about 1 m; arc length `s` runs from the start line (the middle of the longest
straight) in the direction of travel, and offsets are positive to the LEFT of
the centre line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LANE_WIDTH_M = 3.5
# Paved half width: one lane plus a 1 m shoulder outside the edge line.
ROAD_HALF_WIDTH_M = LANE_WIDTH_M + 1.0
# Tight enough to need braking from cruise speed, loose enough to drive.
MIN_CURVE_RADIUS_M = 30.0
MAX_CURVE_RADIUS_M = 180.0
SAMPLE_SPACING_M = 1.0
# Two parts of the track must keep this much centre-to-centre distance, so
# roads, verges and roadside objects never overlap.
SELF_CLEARANCE_M = 45.0
_SMOOTHING_SIGMA_M = 6.0
_MAX_ATTEMPTS = 500


@dataclass(frozen=True, eq=False)
class Track:
    """A closed centre line sampled every `spacing_m`, with its direction and curvature.

    `points[i]` lies at arc length `i * spacing_m`; `curvature` is signed
    (1/m, positive = the track turns left).
    """

    seed: int
    points: np.ndarray
    tangents: np.ndarray
    curvature: np.ndarray
    spacing_m: float

    @property
    def length_m(self) -> float:
        """Length of one lap along the centre line."""
        return len(self.points) * self.spacing_m

    def index_at(self, s: float) -> int:
        """The sample index nearest to arc length `s` (any value; it wraps)."""
        return round(s / self.spacing_m) % len(self.points)

    def point_at(self, s: float, offset: float = 0.0) -> tuple[float, float]:
        """World position at arc length `s` (wraps) and lateral `offset` (+ = left)."""
        count = len(self.points)
        position = (s / self.spacing_m) % count
        i = int(position)
        frac = position - i
        j = (i + 1) % count
        x = self.points[i, 0] * (1 - frac) + self.points[j, 0] * frac
        y = self.points[i, 1] * (1 - frac) + self.points[j, 1] * frac
        tx, ty = self.tangents[i]
        return float(x - ty * offset), float(y + tx * offset)

    def heading_at(self, s: float) -> float:
        """Direction of travel (radians, counter-clockwise from +x) at arc length `s`."""
        tx, ty = self.tangents[self.index_at(s)]
        return math.atan2(ty, tx)

    def locate(self, x: float, y: float) -> tuple[float, float]:
        """Arc length `s` and signed lateral offset (+ = left) of the nearest centre-line point."""
        deltas = self.points - (x, y)
        nearest = int(np.argmin(np.einsum("ij,ij->i", deltas, deltas)))
        best = (math.inf, 0.0, 0.0)
        count = len(self.points)
        for start in ((nearest - 1) % count, nearest):
            end = (start + 1) % count
            ax, ay = self.points[start]
            bx, by = self.points[end]
            sx, sy = bx - ax, by - ay
            t = min(1.0, max(0.0, ((x - ax) * sx + (y - ay) * sy) / (sx * sx + sy * sy)))
            fx, fy = ax + t * sx, ay + t * sy
            distance = math.hypot(x - fx, y - fy)
            if distance < best[0]:
                side = sx * (y - fy) - sy * (x - fx)
                offset = math.copysign(distance, side) if side else 0.0
                best = (distance, (start + t) * self.spacing_m, offset)
        return best[1] % self.length_m, best[2]


def generate_track(seed: int) -> Track:
    """Build the track of `seed`; the same seed always gives the same track."""
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_ATTEMPTS):
        outline = _rounded_polygon(rng)
        if outline is None:
            continue
        points = _smooth_closed(_resample_closed(outline, SAMPLE_SPACING_M), _SMOOTHING_SIGMA_M)
        points = _resample_closed(points, SAMPLE_SPACING_M)
        if rng.random() < 0.5:
            # Half the tracks run clockwise so left and right curves are equally common.
            points = points[::-1].copy()
        curvature = _curvature(points)
        if np.max(np.abs(curvature)) > 1.0 / (MIN_CURVE_RADIUS_M * 0.95):
            continue
        if not _turns_both_ways(curvature) or not _keeps_clear_of_itself(points):
            continue
        points = np.roll(points, -_start_index(curvature), axis=0)
        return _make_track(seed, points)
    raise RuntimeError(f"no drivable track found for seed {seed} in {_MAX_ATTEMPTS} attempts")


def _make_track(seed: int, points: np.ndarray) -> Track:
    spacing = float(np.mean(np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)))
    ahead = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    tangents = ahead / np.linalg.norm(ahead, axis=1, keepdims=True)
    for array in (points, tangents):
        array.flags.writeable = False
    curvature = _curvature(points)
    curvature.flags.writeable = False
    return Track(seed, points, tangents, curvature, spacing)


def _rounded_polygon(rng: np.random.Generator) -> np.ndarray | None:
    """A dense closed outline: random star polygon with arcs for corners, or None if too tight."""
    corners = int(rng.integers(6, 11))
    size = rng.uniform(230.0, 330.0)
    angles = (np.arange(corners) + rng.uniform(-0.3, 0.3, corners)) * (2 * np.pi / corners)
    radii = size * rng.uniform(0.4, 1.0, corners)
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    pieces = []
    for i in range(corners):
        before, corner, after = vertices[i - 1], vertices[i], vertices[(i + 1) % corners]
        incoming = _unit(corner - before)
        outgoing = _unit(after - corner)
        turn = math.atan2(
            incoming[0] * outgoing[1] - incoming[1] * outgoing[0], float(incoming @ outgoing)
        )
        room = 0.45 * min(np.linalg.norm(corner - before), np.linalg.norm(after - corner))
        radius = rng.uniform(MIN_CURVE_RADIUS_M, MAX_CURVE_RADIUS_M)
        half_turn = abs(turn) / 2
        if half_turn < 1e-3:
            pieces.append(corner[None, :])
            continue
        radius = min(radius, room / math.tan(half_turn))
        if radius < MIN_CURVE_RADIUS_M:
            return None
        pieces.append(_arc(corner, incoming, turn, radius))
    return np.concatenate(pieces)


def _arc(corner: np.ndarray, incoming: np.ndarray, turn: float, radius: float) -> np.ndarray:
    """Points of the arc of `radius` tangent to both edges meeting at `corner`."""
    start = corner - incoming * radius * math.tan(abs(turn) / 2)
    left = np.array([-incoming[1], incoming[0]])
    centre = start + left * radius * math.copysign(1.0, turn)
    start_angle = math.atan2(start[1] - centre[1], start[0] - centre[0])
    steps = max(2, int(abs(turn) * radius / 0.5))
    sweep = start_angle + np.linspace(0.0, turn, steps)
    return centre + radius * np.stack([np.cos(sweep), np.sin(sweep)], axis=1)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _resample_closed(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points evenly spaced (close to `spacing`) along the closed polyline."""
    closed = np.vstack([points, points[:1]])
    steps = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-9])
    closed = closed[keep]
    cumulative = np.concatenate([[0.0], np.cumsum(steps[steps > 1e-9])])
    count = max(8, round(cumulative[-1] / spacing))
    targets = np.arange(count) * (cumulative[-1] / count)
    return np.stack(
        [
            np.interp(targets, cumulative, closed[:, 0]),
            np.interp(targets, cumulative, closed[:, 1]),
        ],
        axis=1,
    )


def _smooth_closed(points: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian smoothing: curvature ramps in like a road's transition curve."""
    half = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([points[-half:], points, points[:half]])
    return np.stack(
        [np.convolve(padded[:, axis], kernel, mode="valid") for axis in range(2)], axis=1
    )


def _curvature(points: np.ndarray) -> np.ndarray:
    """Signed curvature (1/m, + = left) from the turn between neighbouring segments."""
    forward = np.roll(points, -1, axis=0) - points
    backward = points - np.roll(points, 1, axis=0)
    cross = backward[:, 0] * forward[:, 1] - backward[:, 1] * forward[:, 0]
    dot = np.einsum("ij,ij->i", backward, forward)
    lengths = 0.5 * (np.linalg.norm(forward, axis=1) + np.linalg.norm(backward, axis=1))
    return np.arctan2(cross, dot) / lengths


def _turns_both_ways(curvature: np.ndarray) -> bool:
    """At least one real curve (not just a wiggle) bends against the lap's direction."""
    lap_sign = np.sign(curvature.sum())
    against = curvature * -lap_sign > 1.0 / (2 * MAX_CURVE_RADIUS_M)
    return bool(against.sum() * SAMPLE_SPACING_M > 25.0)


def _keeps_clear_of_itself(points: np.ndarray) -> bool:
    """No two parts of the loop (far apart along it) come close to each other."""
    step = 4
    coarse = points[::step]
    count = len(coarse)
    distances = np.linalg.norm(coarse[:, None, :] - coarse[None, :, :], axis=2)
    index = np.arange(count)
    along = np.abs(index[:, None] - index[None, :])
    along = np.minimum(along, count - along) * step * SAMPLE_SPACING_M
    # Within ~1.5 clearances along the track, closeness is just the road itself.
    far_along = along > SELF_CLEARANCE_M * 1.6
    return bool(np.all(distances[far_along] >= SELF_CLEARANCE_M))


def _start_index(curvature: np.ndarray) -> int:
    """Middle of the longest (nearly) straight stretch: where the start line goes."""
    straight = np.abs(curvature) < 1.0 / 1000.0
    count = len(straight)
    if straight.all() or not straight.any():
        return 0
    # Rotate so the array starts on a curve, then find the longest run of straight samples.
    first_curve = int(np.argmin(straight))
    rolled = np.roll(straight, -first_curve)
    best_start, best_length, run_start = 0, 0, None
    for i, is_straight in enumerate(np.append(rolled, False)):
        if is_straight and run_start is None:
            run_start = i
        elif not is_straight and run_start is not None:
            if i - run_start > best_length:
                best_start, best_length = run_start, i - run_start
            run_start = None
    return (first_curve + best_start + best_length // 2) % count
