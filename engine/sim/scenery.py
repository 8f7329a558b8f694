"""Roadside objects: what gives the hood camera (and a CNN) something to see.

Upright objects (trees, posts, poles, signs, rocks, the start gantry) are
drawn as billboards; buildings are boxes. Placement follows the road like a
real one does: reflector posts at a fixed rhythm, chevron signs on the outside
of tight curves, utility poles along one side, forests and open fields that
alternate, and a few hamlets of buildings. Nothing is placed on a road, in
water, or on a verge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from engine.sim.track import ROAD_HALF_WIDTH_M, Track


class Kind(IntEnum):
    """Billboard kinds; `sprites.py` draws one picture (or several variants) per kind."""

    PINE = 0
    OAK = 1
    BUSH = 2
    POST = 3
    POLE = 4
    CHEVRON_LEFT = 5
    CHEVRON_RIGHT = 6
    ROCK = 7
    GANTRY = 8


@dataclass(frozen=True, eq=False)
class Billboards:
    """Upright objects, one row per object: position, kind, variant, height (m)."""

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    variant: np.ndarray
    height_m: np.ndarray


@dataclass(frozen=True, eq=False)
class Buildings:
    """Box-shaped buildings: centre, yaw (rad), width along the road, depth, height, colour."""

    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    width_m: np.ndarray
    depth_m: np.ndarray
    height_m: np.ndarray
    colour: np.ndarray


@dataclass(frozen=True, eq=False)
class Scenery:
    """Everything placed beside the track."""

    billboards: Billboards
    buildings: Buildings


# Distances from the centre line / road edge, in metres.
_POST_OFFSET_M = ROAD_HALF_WIDTH_M + 0.9
_TREE_CLEARANCE_M = 4.0
# Curves tighter than this radius get chevron signs.
_CHEVRON_RADIUS_M = 110.0


def place_scenery(
    track: Track,
    field_at: FieldSampler,
    rng: np.random.Generator,
) -> Scenery:
    """Place every roadside object of `track`; `field_at` tells where the road and water are."""
    placer = _Placer(track, field_at, rng)
    placer.start_gantry()
    placer.reflector_posts()
    placer.chevrons()
    placer.utility_poles()
    placer.vegetation()
    placer.hamlets()
    return placer.result()


class FieldSampler:
    """Nearest-pixel lookup of the world rasters, so placement can ask "road or water here?"."""

    def __init__(self, fields: np.ndarray, origin: tuple[float, float], resolution_m: float):
        self._fields = fields
        self._origin = origin
        self._resolution = resolution_m

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(|offset from the nearest road centre|, water signed distance) at each point."""
        rows, cols = self._fields.shape[:2]
        col = np.clip(np.rint((x - self._origin[0]) / self._resolution), 0, cols - 1).astype(int)
        row = np.clip(np.rint((y - self._origin[1]) / self._resolution), 0, rows - 1).astype(int)
        return np.abs(self._fields[row, col, 0]), self._fields[row, col, 2]


class _Placer:
    """Accumulates objects, refusing any that would sit on a road or in water."""

    def __init__(self, track: Track, field_at: FieldSampler, rng: np.random.Generator):
        self.track = track
        self.field_at = field_at
        self.rng = rng
        self.rows: list[tuple[float, float, int, int, float]] = []
        self.boxes: list[tuple[float, float, float, float, float, float, int]] = []

    def add(self, s: float, offset: float, kind: Kind, height: float, variant: int = 0) -> None:
        x, y = self.track.point_at(s, offset)
        clearance = 0.5 if kind in (Kind.POST, Kind.CHEVRON_LEFT, Kind.CHEVRON_RIGHT) else 2.0
        # The gantry alone stands over the road, on purpose.
        if kind is Kind.GANTRY or self._free(x, y, clearance):
            self.rows.append((x, y, int(kind), variant, height))

    def _free(self, x: float, y: float, clearance: float) -> bool:
        road_distance, water = self.field_at(np.array([x]), np.array([y]))
        return bool(road_distance[0] >= ROAD_HALF_WIDTH_M + clearance and water[0] < -2.0)

    def start_gantry(self) -> None:
        self.add(0.0, 0.0, Kind.GANTRY, 6.5)

    def reflector_posts(self) -> None:
        # Both sides every 50 m, staggered: a steady rhythm that shows speed and the road edge.
        for s in np.arange(10.0, self.track.length_m - 5.0, 25.0):
            side = 1.0 if int(s // 25.0) % 2 else -1.0
            self.add(float(s), side * _POST_OFFSET_M, Kind.POST, 1.0)

    def chevrons(self) -> None:
        # Warning arrows on the outside of tight curves, pointing the way the road turns.
        track = self.track
        curvature = track.curvature
        tight = np.abs(curvature) > 1.0 / _CHEVRON_RADIUS_M
        index = 0
        count = len(curvature)
        while index < count:
            if not tight[index]:
                index += 1
                continue
            end = index
            while end < count and tight[end]:
                end += 1
            turns_left = curvature[(index + end) // 2] > 0
            kind = Kind.CHEVRON_LEFT if turns_left else Kind.CHEVRON_RIGHT
            outside = -1.0 if turns_left else 1.0
            span = (end - index) * track.spacing_m
            for s in np.linspace(
                index * track.spacing_m, end * track.spacing_m, max(2, int(span // 14))
            ):
                self.add(float(s), outside * (ROAD_HALF_WIDTH_M + 1.6), kind, 1.9)
            index = end

    def utility_poles(self) -> None:
        length = self.track.length_m
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        for s in np.arange(5.0, length - 20.0, 45.0):
            self.add(float(s), side * (ROAD_HALF_WIDTH_M + 4.5), Kind.POLE, 9.0)

    def vegetation(self) -> None:
        """Forests and open fields that alternate along the road, on both sides."""
        length = self.track.length_m
        rng = self.rng
        waves = [
            (rng.uniform(1, 4) * 2 * math.pi / length, rng.uniform(0, 2 * math.pi))
            for _ in range(3)
        ]
        for s in np.arange(0.0, length, 3.0):
            forest = 0.5 + sum(math.sin(k * s + phase) for k, phase in waves) / 4.0
            for side in (-1.0, 1.0):
                if rng.random() < 0.04 + 0.55 * max(0.0, forest):
                    offset = (
                        ROAD_HALF_WIDTH_M + _TREE_CLEARANCE_M + min(rng.exponential(14.0), 70.0)
                    )
                    kind = Kind.PINE if rng.random() < 0.35 + 0.5 * forest else Kind.OAK
                    height = rng.uniform(7.0, 14.0) if kind is Kind.PINE else rng.uniform(5.0, 9.0)
                    self.add(float(s), side * offset, kind, height, int(rng.integers(0, 3)))
                if rng.random() < 0.05:
                    offset = ROAD_HALF_WIDTH_M + rng.uniform(2.5, 12.0)
                    self.add(
                        float(s),
                        side * offset,
                        Kind.BUSH,
                        rng.uniform(0.8, 1.8),
                        int(rng.integers(0, 3)),
                    )
                if rng.random() < 0.015:
                    offset = ROAD_HALF_WIDTH_M + rng.uniform(3.0, 20.0)
                    self.add(
                        float(s),
                        side * offset,
                        Kind.ROCK,
                        rng.uniform(0.6, 1.6),
                        int(rng.integers(0, 3)),
                    )

    def hamlets(self) -> None:
        """Two or three clusters of houses and barns set back from the road."""
        length = self.track.length_m
        rng = self.rng
        for _ in range(int(rng.integers(2, 4))):
            start = rng.uniform(0, length)
            for s in np.arange(start, start + rng.uniform(120, 220), 22.0):
                for side in (-1.0, 1.0):
                    if rng.random() < 0.55:
                        self._building(float(s % length) + rng.uniform(-4, 4), side)

    def _building(self, s: float, side: float) -> None:
        rng = self.rng
        width = rng.uniform(8.0, 16.0)
        depth = rng.uniform(7.0, 12.0)
        offset = side * (ROAD_HALF_WIDTH_M + rng.uniform(9.0, 20.0) + depth / 2)
        x, y = self.track.point_at(s, offset)
        yaw = self.track.heading_at(s)
        corners_x, corners_y = _box_corners(x, y, yaw, width + 4.0, depth + 4.0)
        road_distance, water = self.field_at(np.append(corners_x, x), np.append(corners_y, y))
        if np.any(road_distance < ROAD_HALF_WIDTH_M + 5.0) or np.any(water > -3.0):
            return
        for bx, by, *_ in self.boxes:
            if math.hypot(bx - x, by - y) < 18.0:
                return
        # Trees must not stand inside a house.
        self.rows = [row for row in self.rows if math.hypot(row[0] - x, row[1] - y) > 11.0]
        height = rng.uniform(4.0, 10.0)
        self.boxes.append((x, y, yaw, width, depth, height, int(rng.integers(0, 5))))

    def result(self) -> Scenery:
        rows = self.rows
        billboards = Billboards(
            x=np.array([r[0] for r in rows], np.float32),
            y=np.array([r[1] for r in rows], np.float32),
            kind=np.array([r[2] for r in rows], np.int16),
            variant=np.array([r[3] for r in rows], np.int16),
            height_m=np.array([r[4] for r in rows], np.float32),
        )
        columns = list(zip(*self.boxes, strict=True)) if self.boxes else [()] * 7
        buildings = Buildings(
            *(np.array(column, np.float32) for column in columns[:6]),
            colour=np.array(columns[6], np.int16),
        )
        return Scenery(billboards, buildings)


def _box_corners(x: float, y: float, yaw: float, width: float, depth: float):
    along = np.array([math.cos(yaw), math.sin(yaw)]) * width / 2
    across = np.array([-math.sin(yaw), math.cos(yaw)]) * depth / 2
    corners = np.array([along + across, along - across, -along - across, -along + across])
    return corners[:, 0] + x, corners[:, 1] + y
