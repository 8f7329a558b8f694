"""The ground under a camera: road, markings, verge, grass and water, in two remaps.

Example::

    ground = GroundRenderer(camera, world)
    ground.render(frame, camera_x, camera_y, yaw)   # fills frame rows camera.ground_top..

The road's look depends only on two numbers per ground point: the lateral
offset from the centre line and the arc length (modulo the marking period).
So the renderer (1) samples the world's offset/arc/water rasters at every
ground pixel (one `cv2.remap`), then (2) looks the colour up in a small
"cross-section" texture indexed by (offset, arc phase) (a second remap).

Each group of screen rows of similar distance gets its own copy of the
cross-section, pre-filtered for that distance (crisp lines near, no shimmer
far) and pre-blended with the distance haze: mip-mapping and fog for free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.sim.camera import Camera
from engine.sim.track import LANE_WIDTH_M, ROAD_HALF_WIDTH_M
from engine.sim.world import FAR_OFFSET_M, NO_WATER_M, World

HAZE_RGB = (196, 210, 224)
# Lateral extent the cross-section texture covers; grass beyond looks the same.
_HALF_SPAN_M = 6.5
# Markings and ground bands repeat every PERIOD metres along the road.
PERIOD_M = 18.0
_DASH_M = 3.0
_DASH_PERIOD_M = 9.0
_EDGE_LINE_M = (LANE_WIDTH_M - 0.05, LANE_WIDTH_M + 0.1)
_CENTRE_LINE_HALF_M = 0.075
_VERGE_M = ROAD_HALF_WIDTH_M + 0.8
_MIN_TEXEL_ACROSS_M = 0.02
_MIN_TEXEL_ALONG_M = 0.05
# A level holds screen rows whose footprint differs by at most this factor.
_LEVEL_RATIO = 1.3
_LEVEL_FOG_STEP = 0.03
_WATER_COLUMNS = 4

ASPHALT = ((84, 86, 92), (92, 94, 101))
GRASS = ((80, 140, 52), (94, 158, 62))
VERGE = (146, 136, 110)
EDGE_LINE = (236, 236, 228)
CENTRE_LINE = (242, 196, 58)
WATER = ((46, 92, 140), (58, 108, 156))


def fog_amount(distance_m: np.ndarray | float, far_m: float) -> np.ndarray | float:
    """How much haze hides a point `distance_m` away (0 = clear, 1 = gone at `far_m`)."""
    ratio = np.clip(np.asarray(distance_m, dtype=np.float64) / far_m, 0.0, 1.0)
    return np.where(ratio >= 1.0, 1.0, 1.0 - np.exp(-4.0 * ratio**2.2))


class GroundRenderer:
    """Draws the ground part of one camera's frames over one world."""

    def __init__(self, camera: Camera, world: World):
        self.camera = camera
        self.world = world
        rows = len(camera.ground_forward)
        width = camera.spec.width
        self._forward = np.ascontiguousarray(
            np.broadcast_to(
                np.minimum(camera.ground_forward, camera.spec.far_m)[:, None], (rows, width)
            ),
            dtype=np.float32,
        )
        self._right = np.ascontiguousarray(camera.ground_right, dtype=np.float32)
        self._right *= (self._forward / np.maximum(camera.ground_forward[:, None], 1e-6)).astype(
            np.float32
        )
        levels = _plan_levels(camera)
        self.atlas, placement = _build_atlas(levels)
        self._texels = np.empty((rows, width, 4), np.uint8)
        self._col_scale = placement.col_scale[:, None]
        self._row_scale = placement.row_scale[:, None]
        self._row_base = placement.row_base[:, None]
        self._water_col = placement.water_col[:, None]
        self._border = (FAR_OFFSET_M, 0.0, NO_WATER_M, 0.0)

    def render(self, frame: np.ndarray, camera_x: float, camera_y: float, yaw: float) -> None:
        """Fill the ground rows of `frame` (RGB uint8) as seen from the given camera pose."""
        world = self.world
        inv = 1.0 / world.resolution_m
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        map_x = cv2.addWeighted(
            self._forward, cos_y * inv, self._right, sin_y * inv, (camera_x - world.origin[0]) * inv
        )
        map_y = cv2.addWeighted(
            self._forward,
            sin_y * inv,
            self._right,
            -cos_y * inv,
            (camera_y - world.origin[1]) * inv,
        )
        sampled = cv2.remap(
            world.fields,
            map_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self._border,
        )
        offset, arc, water, _ = cv2.split(sampled)
        np.clip(offset, -_HALF_SPAN_M, _HALF_SPAN_M, out=offset)
        offset += _HALF_SPAN_M
        offset *= self._col_scale
        # arc mod PERIOD (arc >= 0); np.fmod is several times slower than floor.
        periods = arc * (1.0 / PERIOD_M)
        np.floor(periods, out=periods)
        periods *= PERIOD_M
        arc -= periods
        arc *= self._row_scale
        arc += self._row_base
        np.copyto(offset, self._water_col, where=water > 0.0)
        cv2.remap(
            self.atlas,
            offset,
            arc,
            cv2.INTER_LINEAR,
            dst=self._texels,
            borderMode=cv2.BORDER_REPLICATE,
        )
        cv2.cvtColor(self._texels, cv2.COLOR_RGBA2RGB, dst=frame[self.camera.ground_top :])


@dataclass(frozen=True)
class _Level:
    """Screen rows [first, last) drawn from one pre-filtered, pre-fogged texture."""

    first: int
    last: int
    texel_across: float
    texel_along: float
    blur_across: float
    blur_along: float
    fog: float


@dataclass(frozen=True)
class _Placement:
    """Per ground row: how to turn (offset, phase) into atlas coordinates."""

    col_scale: np.ndarray
    row_scale: np.ndarray
    row_base: np.ndarray
    water_col: np.ndarray


def _plan_levels(camera: Camera) -> list[_Level]:
    """Group ground rows (far to near) into levels of similar footprint and haze."""
    far = camera.spec.far_m
    forward = camera.ground_forward
    across = camera.footprint_across
    along = camera.footprint_along
    fog = fog_amount(forward, far)
    levels: list[_Level] = []
    first = 0
    count = len(forward)
    while first < count:
        last = first + 1
        while (
            last < count
            and across[first] <= across[last] * _LEVEL_RATIO
            and along[first] <= along[last] * _LEVEL_RATIO
            and abs(fog[first] - fog[last]) <= _LEVEL_FOG_STEP
        ):
            last += 1
        # Row `first` is the farthest (coarsest) of the level: filter for it.
        blur_across = float(across[first])
        blur_along = float(min(along[first], PERIOD_M))
        levels.append(
            _Level(
                first=first,
                last=last,
                texel_across=max(_MIN_TEXEL_ACROSS_M, float(across[last - 1]) * 0.75),
                texel_along=max(
                    _MIN_TEXEL_ALONG_M, min(float(along[last - 1]) * 0.75, PERIOD_M / 4)
                ),
                blur_across=blur_across,
                blur_along=blur_along,
                fog=float(np.mean(fog[first:last])),
            )
        )
        first = last
    return levels


def _build_atlas(levels: list[_Level]) -> tuple[np.ndarray, _Placement]:
    """Stack every level's cross-section texture into one image, with its lookup constants.

    Near levels often need the very same texture (finest texels, no blur, no
    haze); those share one block of the atlas, which keeps it small and cache-friendly.
    """
    blocks: dict[tuple, tuple[int, int, int]] = {}
    pieces: list[np.ndarray] = []
    rows = levels[-1].last
    col_scale = np.zeros(rows, np.float32)
    row_scale = np.zeros(rows, np.float32)
    row_base = np.zeros(rows, np.float32)
    water_col = np.zeros(rows, np.float32)
    base = 0
    for level in levels:
        key = _texture_key(level)
        if key not in blocks:
            texture = _cross_section(level)
            tex_rows, tex_cols = texture.shape[:2]
            water = _water_strip(np.arange(tex_rows) * PERIOD_M / (tex_rows - 1), level.fog)
            block = np.concatenate(
                [
                    texture,
                    np.repeat(texture[:, -1:], 2, axis=1),
                    np.repeat(water[:, None, :], _WATER_COLUMNS, axis=1),
                ],
                axis=1,
            )
            pieces.append(block)
            blocks[key] = (base, tex_rows, tex_cols)
            base += tex_rows
        block_base, tex_rows, tex_cols = blocks[key]
        span = slice(level.first, level.last)
        col_scale[span] = (tex_cols - 1) / (2 * _HALF_SPAN_M)
        # The last texture row repeats the first so bilinear sampling wraps cleanly.
        row_scale[span] = (tex_rows - 1) / PERIOD_M
        row_base[span] = block_base
        water_col[span] = tex_cols + 2 + _WATER_COLUMNS / 2
    width = max(piece.shape[1] for piece in pieces)
    # RGBA although alpha is unused: OpenCV remaps 4-channel images twice as fast as 3-channel.
    atlas = np.zeros((base, width, 4), np.uint8)
    top = 0
    for piece in pieces:
        atlas[top : top + piece.shape[0], : piece.shape[1], :3] = piece
        top += piece.shape[0]
    return atlas, _Placement(col_scale, row_scale, row_base, water_col)


def _texture_key(level: _Level) -> tuple:
    """Levels with equal keys get identical textures."""
    return (
        level.texel_across,
        level.texel_along,
        max(level.blur_across, level.texel_across),
        max(level.blur_along, level.texel_along),
        round(level.fog, 3),
    )


def _cross_section(level: _Level) -> np.ndarray:
    """The road's look across (columns) and along one period (rows), box-filtered and fogged."""
    cols = max(8, math.ceil(2 * _HALF_SPAN_M / level.texel_across) + 1)
    rows = max(4, math.ceil(PERIOD_M / level.texel_along))
    across = np.linspace(-_HALF_SPAN_M, _HALF_SPAN_M, cols)[None, :]
    along = (np.arange(rows) * PERIOD_M / rows)[:, None]
    width_across = max(level.blur_across, level.texel_across)
    width_along = max(level.blur_along, level.texel_along)

    def lateral(low: float, high: float) -> np.ndarray:
        return _coverage(across, width_across, low, high)

    def periodic(low: float, high: float, period: float) -> np.ndarray:
        total = np.zeros_like(along)
        for k in range(-1, int(PERIOD_M / period) + 1):
            total += _coverage(along, width_along, low + k * period, high + k * period)
        return np.clip(total, 0.0, 1.0)

    light_band = periodic(0.0, PERIOD_M / 2, PERIOD_M)
    colour = _mix(np.array(GRASS[0], float), np.array(GRASS[1], float), light_band[..., None])
    colour = np.broadcast_to(colour, (rows, cols, 3)).copy()
    colour = _mix(colour, VERGE, lateral(-_VERGE_M, _VERGE_M)[..., None])
    asphalt = _mix(np.array(ASPHALT[0], float), np.array(ASPHALT[1], float), light_band[..., None])
    colour = _mix(colour, asphalt, lateral(-ROAD_HALF_WIDTH_M, ROAD_HALF_WIDTH_M)[..., None])
    edges = lateral(*_EDGE_LINE_M) + lateral(-_EDGE_LINE_M[1], -_EDGE_LINE_M[0])
    colour = _mix(colour, EDGE_LINE, edges[..., None])
    dashes = lateral(-_CENTRE_LINE_HALF_M, _CENTRE_LINE_HALF_M) * periodic(
        0.0, _DASH_M, _DASH_PERIOD_M
    )
    colour = _mix(colour, CENTRE_LINE, dashes[..., None])
    colour = _mix(colour, HAZE_RGB, level.fog)
    texture = np.rint(colour).astype(np.uint8)
    return np.concatenate([texture, texture[:1]], axis=0)


def _water_strip(phase: np.ndarray, fog: float) -> np.ndarray:
    """Water colour along one period: gentle ripples, hazed like the ground around it."""
    ripple = 0.5 + 0.5 * np.sin(phase * (2 * math.pi / PERIOD_M) * 6)
    colour = _mix(np.array(WATER[0], float), np.array(WATER[1], float), ripple[:, None])
    return np.rint(_mix(colour, HAZE_RGB, fog)).astype(np.uint8)


def _coverage(position: np.ndarray, width: float, low: float, high: float) -> np.ndarray:
    """Fraction of a box filter of `width` centred at `position` that lies in [low, high]."""
    half = width / 2
    covered = np.minimum(position + half, high) - np.maximum(position - half, low)
    return np.clip(covered / width, 0.0, 1.0)


def _mix(base, top, amount):
    base = np.asarray(base, dtype=float)
    return base + (np.asarray(top, dtype=float) - base) * amount
