"""The world of one seed: its track, ground rasters, water ponds and roadside scenery.

Example::

    world = build_world(seed=7, water_ponds=3)
    world.surface_at(x, y)       # "road", "grass" or "water"

The renderers never rasterise the road per frame. They sample `fields`, a
float raster covering the whole map at `resolution_m` with three channels
(and a padding one):
the signed lateral offset from the nearest centre line (+ = left), the arc
length `s` there, and the signed distance to water (+ = inside a pond). All
three are smooth, so bilinear sampling gives crisp road edges, lane markings
and shore lines at any zoom. Worlds are cached: a seed is built once per
process and its arrays are read-only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.sim.scenery import FieldSampler, Scenery, place_scenery
from engine.sim.track import ROAD_HALF_WIDTH_M, Track, generate_track

RASTER_RESOLUTION_M = 0.5
RASTER_MARGIN_M = 120.0
# Offset and water distance reported beyond the raster: plain grass.
FAR_OFFSET_M = 1000.0
NO_WATER_M = -1000.0

Surface = str  # "road" | "grass" | "water"


@dataclass(frozen=True, eq=False)
class World:
    """A seed's track and everything around it."""

    seed: int
    track: Track
    fields: np.ndarray
    origin: tuple[float, float]
    resolution_m: float
    scenery: Scenery

    def surface_at(self, x: float, y: float) -> Surface:
        """What the ground is at a point: "water" inside a pond, else "road" or "grass"."""
        offset, water = self.sample(x, y)
        if water > 0.0:
            return "water"
        return "road" if abs(offset) <= ROAD_HALF_WIDTH_M else "grass"

    def sample(self, x: float, y: float) -> tuple[float, float]:
        """Bilinear (offset, water distance) at a point; plain far grass off the map."""
        col = (x - self.origin[0]) / self.resolution_m
        row = (y - self.origin[1]) / self.resolution_m
        rows, cols = self.fields.shape[:2]
        if not (0.0 <= col < cols - 1 and 0.0 <= row < rows - 1):
            return FAR_OFFSET_M, NO_WATER_M
        c, r = int(col), int(row)
        fc, fr = col - c, row - r
        patch = self.fields[r : r + 2, c : c + 2]
        top = patch[0, 0] * (1 - fc) + patch[0, 1] * fc
        bottom = patch[1, 0] * (1 - fc) + patch[1, 1] * fc
        value = top * (1 - fr) + bottom * fr
        return float(value[0]), float(value[2])


@functools.lru_cache(maxsize=6)
def build_world(seed: int, water_ponds: int) -> World:
    """Generate the world of `seed` with `water_ponds` ponds (cached per process)."""
    track = generate_track(seed)
    rng = np.random.default_rng([seed, 1])
    low = track.points.min(axis=0) - RASTER_MARGIN_M
    high = track.points.max(axis=0) + RASTER_MARGIN_M
    shape = tuple(int(v) for v in np.ceil((high - low) / RASTER_RESOLUTION_M)[::-1] + 1)
    origin = (float(low[0]), float(low[1]))
    offset, arc = _track_fields(track, origin, RASTER_RESOLUTION_M, shape)
    water = _water_field(track, offset, origin, RASTER_RESOLUTION_M, water_ponds, rng)
    # The fourth channel is padding: OpenCV remaps 4-channel float images with SIMD, 3-channel not.
    padding = np.zeros_like(offset)
    fields = np.ascontiguousarray(np.dstack([offset, arc, water, padding]).astype(np.float32))
    fields.flags.writeable = False
    scenery = place_scenery(track, FieldSampler(fields, origin, RASTER_RESOLUTION_M), rng)
    return World(seed, track, fields, origin, RASTER_RESOLUTION_M, scenery)


def _track_fields(
    track: Track, origin: tuple[float, float], resolution: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Signed offset and arc length of every raster pixel, from its nearest centre-line segment.

    A distance transform with labels finds, per pixel, the nearest drawn
    segment; the exact projection onto it (and its predecessor) then gives
    offsets accurate to floating point, not to the raster.
    """
    points = track.points
    count = len(points)
    segments = np.zeros(shape, np.int32)
    pixels = np.rint((points - origin) / resolution * 16).astype(np.int32)
    for i in range(count):
        start, end = pixels[i], pixels[(i + 1) % count]
        cv2.line(segments, tuple(start), tuple(end), i + 1, 1, cv2.LINE_8, 4)
    _, labels = cv2.distanceTransformWithLabels(
        (segments == 0).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    line_pixels = segments.ravel()[np.flatnonzero(segments.ravel())] - 1
    nearest = line_pixels[labels - 1]
    rows, cols = np.indices(shape, dtype=np.float32)
    px = origin[0] + cols * resolution
    py = origin[1] + rows * resolution
    best_distance = np.full(shape, np.inf, np.float32)
    offset = np.zeros(shape, np.float32)
    arc = np.zeros(shape, np.float32)
    for shift in (-2, -1, 0, 1):
        start = (nearest + shift) % count
        ax, ay = points[start, 0].astype(np.float32), points[start, 1].astype(np.float32)
        end = (start + 1) % count
        sx = points[end, 0].astype(np.float32) - ax
        sy = points[end, 1].astype(np.float32) - ay
        t = np.clip(((px - ax) * sx + (py - ay) * sy) / (sx * sx + sy * sy), 0.0, 1.0)
        dx = px - (ax + t * sx)
        dy = py - (ay + t * sy)
        distance = np.sqrt(dx * dx + dy * dy)
        side = np.sign(sx * dy - sy * dx)
        closer = distance < best_distance
        best_distance = np.where(closer, distance, best_distance)
        offset = np.where(closer, distance * side, offset)
        arc = np.where(closer, (start + t) * track.spacing_m, arc)
    return offset, np.mod(arc, track.length_m)


def _water_field(
    track: Track,
    offset: np.ndarray,
    origin: tuple[float, float],
    resolution: float,
    ponds: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Signed distance (m, + inside) to ponds placed off the road, mostly outside curves."""
    mask = np.zeros(offset.shape, np.uint8)
    placed = 0
    for _ in range(ponds * 40):
        if placed == ponds:
            break
        pond = np.zeros_like(mask)
        s = rng.uniform(0.0, track.length_m)
        curvature = track.curvature[track.index_at(s)]
        # A car that runs wide in a curve leaves on the outside: that is where water waits.
        if abs(curvature) > 1.0 / 250.0:
            side = -math.copysign(1.0, curvature)
        else:
            side = rng.choice([-1.0, 1.0])
        radius = rng.uniform(8.0, 16.0)
        distance = ROAD_HALF_WIDTH_M + rng.uniform(6.0, 12.0) + radius
        cx, cy = track.point_at(s, side * distance)
        heading = track.heading_at(s)
        for lobe in range(3):
            along = rng.uniform(-1.2, 1.2) * radius if lobe else 0.0
            lx = cx + math.cos(heading) * along
            ly = cy + math.sin(heading) * along
            centre = (
                int((lx - origin[0]) / resolution * 16),
                int((ly - origin[1]) / resolution * 16),
            )
            axes = (
                int(radius * rng.uniform(0.7, 1.4) / resolution * 16),
                int(radius * rng.uniform(0.5, 0.9) / resolution * 16),
            )
            angle = math.degrees(heading) + rng.uniform(-30, 30)
            cv2.ellipse(pond, centre, axes, angle, 0, 360, 1, -1, cv2.LINE_8, 4)
        inside = pond.astype(bool)
        if not inside.any() or np.abs(offset[inside]).min() < ROAD_HALF_WIDTH_M + 5.0:
            continue
        mask |= pond
        placed += 1
    if not mask.any():
        return np.full(offset.shape, NO_WATER_M, np.float32)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
    signed = (inside - outside) * resolution
    return cv2.GaussianBlur(signed, (0, 0), 1.5)
