"""Billboard pictures (trees, posts, signs...) and a cache of them scaled and hazed.

Example::

    bank = SpriteBank()
    height = int(quantise_heights(np.array([55.0]))[0])
    bank.blit(frame, Kind.PINE, variant=1, height=height, fog_step=3, left=200, top=150)

Pictures are painted once with OpenCV primitives at a base height, then
resized per distance. Sizes are quantised (3% steps) and haze to 1/16 so a
moving camera keeps hitting the cache instead of resizing every frame.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable

import cv2
import numpy as np

from engine.sim.ground import HAZE_RGB
from engine.sim.scenery import Kind

_BASE_HEIGHT = 256
# The scaled copies a bank keeps (least recently used go first).
_CACHE_BYTES = 64 * 1024 * 1024
FOG_STEPS = 16
VARIANTS = 3

# Width / height of each picture; the world width follows from the object's height.
ASPECT: dict[Kind, float] = {
    Kind.PINE: 0.5,
    Kind.OAK: 0.85,
    Kind.BUSH: 1.5,
    Kind.POST: 0.14,
    Kind.POLE: 0.2,
    Kind.CHEVRON_LEFT: 0.42,
    Kind.CHEVRON_RIGHT: 0.42,
    Kind.ROCK: 1.5,
    Kind.GANTRY: 1.8,
}


class SpriteBank:
    """Painted pictures per (kind, variant) and their scaled, hazed copies."""

    def __init__(self) -> None:
        self._scaled: OrderedDict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = (
            OrderedDict()
        )
        self._cached_bytes = 0

    def blit(
        self,
        frame: np.ndarray,
        kind: int,
        variant: int,
        height: int,
        fog_step: int,
        left: int,
        top: int,
    ) -> None:
        """Paint a picture of quantised `height` and haze `fog_step`, top-left at (left, top)."""
        rgb, mask = self._scaled_picture(kind, variant % VARIANTS, height, fog_step)
        width = rgb.shape[1]
        frame_h, frame_w = frame.shape[:2]
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, frame_w), min(top + height, frame_h)
        if x0 >= x1 or y0 >= y1:
            return
        source = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        # cv2.copyTo costs ~2 us whatever the size; numpy's masked copy wins only when tiny.
        if height <= 8:
            np.copyto(frame[y0:y1, x0:x1], rgb[source], where=mask[source][..., None].astype(bool))
        else:
            cv2.copyTo(rgb[source], mask[source], frame[y0:y1, x0:x1])

    def _scaled_picture(
        self, kind: int, variant: int, height: int, fog_step: int
    ) -> tuple[np.ndarray, np.ndarray]:
        key = (kind, variant, height, fog_step)
        cached = self._scaled.get(key)
        if cached is not None:
            self._scaled.move_to_end(key)
            return cached
        if fog_step:
            # Hazed copies derive from the clear one: a miss costs one colour pass, not a resize.
            rgb, mask = self._scaled_picture(kind, variant, height, 0)
            fog = fog_step / FOG_STEPS
            blend = np.hstack([np.eye(3) * (1.0 - fog), np.array(HAZE_RGB)[:, None] * fog])
            entry = (cv2.transform(rgb, blend), mask)
        else:
            entry = _resized(Kind(kind), variant, height)
        self._scaled[key] = entry
        self._cached_bytes += entry[0].nbytes + entry[1].nbytes
        while self._cached_bytes > _CACHE_BYTES and len(self._scaled) > 1:
            _, (old_rgb, old_mask) = self._scaled.popitem(last=False)
            self._cached_bytes -= old_rgb.nbytes + old_mask.nbytes
        return entry


def quantise_heights(height_px: np.ndarray) -> np.ndarray:
    """Picture heights the cache keeps: whole pixels up to 32, then 3% steps."""
    steps = np.round(np.log(np.maximum(height_px, 32.0) / 32.0) / math.log(1.03))
    geometric = np.rint(32.0 * 1.03**steps)
    return np.where(height_px < 32, np.maximum(1, np.rint(height_px)), geometric).astype(np.int64)


def _resized(kind: Kind, variant: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture at `height` px (and its 0/1 mask), from the nearest larger mip level."""
    width = max(1, round(height * ASPECT[kind]))
    levels = _mip_levels(kind, variant)
    rgb, coverage = levels[0]
    for level_rgb, level_coverage in levels:
        if level_rgb.shape[0] >= height:
            rgb, coverage = level_rgb, level_coverage
    # Each level halves the last, so a linear resize never shrinks by more than 2x (no aliasing).
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(coverage, (width, height), interpolation=cv2.INTER_LINEAR) > 127
    return small, mask.astype(np.uint8)


@functools.cache
def _mip_levels(kind: Kind, variant: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The painted picture at its base height, then halved down to about 8 px."""
    rgb, coverage = _paint(kind, variant)
    levels = [(rgb, coverage)]
    while levels[-1][0].shape[0] >= 16:
        rgb, coverage = levels[-1]
        size = (max(1, rgb.shape[1] // 2), rgb.shape[0] // 2)
        levels.append(
            (
                cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                cv2.resize(coverage, size, interpolation=cv2.INTER_AREA),
            )
        )
    for level in levels:
        for array in level:
            array.flags.writeable = False
    return tuple(levels)


def _paint(kind: Kind, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """One picture (RGB and coverage, both uint8) painted at twice the base size, then halved."""
    scale = 2
    height = _BASE_HEIGHT * scale
    width = max(2, round(height * ASPECT[kind]))
    rgb = np.zeros((height, width, 3), np.uint8)
    alpha = np.zeros((height, width), np.uint8)
    rng = np.random.default_rng([int(kind), variant])
    _PAINTERS[kind](rgb, alpha, rng, variant)
    size = (width // scale, _BASE_HEIGHT)
    return (
        cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha * 255, size, interpolation=cv2.INTER_AREA),
    )


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def _fill_poly(rgb, alpha, points, colour) -> None:
    polygon = np.array(points, np.int32)
    cv2.fillPoly(rgb, [polygon], colour, cv2.LINE_AA)
    cv2.fillPoly(alpha, [polygon], 1)


def _fill_ellipse(rgb, alpha, centre, axes, colour) -> None:
    centre = (int(centre[0]), int(centre[1]))
    axes = (max(1, int(axes[0])), max(1, int(axes[1])))
    cv2.ellipse(rgb, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    cv2.ellipse(alpha, centre, axes, 0, 0, 360, 1, -1)


def _pine(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    green = ((38, 84, 46), (30, 72, 40), (46, 96, 52))[variant]
    _fill_poly(
        rgb,
        alpha,
        [(w * 0.45, h), (w * 0.55, h), (w * 0.55, h * 0.8), (w * 0.45, h * 0.8)],
        (92, 64, 40),
    )
    for layer in range(4):
        top = h * (0.02 + layer * 0.17)
        bottom = h * (0.42 + layer * 0.15)
        half = w * (0.22 + layer * 0.09)
        _fill_poly(
            rgb,
            alpha,
            [(w / 2, top), (w / 2 + half, bottom), (w / 2 - half, bottom)],
            _shade(green, 0.85 + 0.1 * layer),
        )
        _fill_poly(
            rgb,
            alpha,
            [(w / 2, top), (w / 2 + half, bottom), (w / 2 + half * 0.15, bottom)],
            _shade(green, 0.7),
        )


def _oak(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    green = ((70, 120, 48), (86, 130, 50), (60, 108, 56))[variant]
    _fill_poly(
        rgb,
        alpha,
        [(w * 0.44, h), (w * 0.56, h), (w * 0.53, h * 0.45), (w * 0.47, h * 0.45)],
        (96, 70, 44),
    )
    for _ in range(9):
        cx = w * rng.uniform(0.3, 0.7)
        cy = h * rng.uniform(0.2, 0.5)
        radius = w * rng.uniform(0.18, 0.28)
        _fill_ellipse(
            rgb, alpha, (cx, cy), (radius, radius * 0.9), _shade(green, rng.uniform(0.8, 1.15))
        )
    for _ in range(5):
        cx = w * rng.uniform(0.35, 0.6)
        cy = h * rng.uniform(0.15, 0.35)
        _fill_ellipse(rgb, alpha, (cx, cy), (w * 0.1, w * 0.08), _shade(green, 1.25))


def _bush(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    green = ((64, 112, 44), (78, 120, 40), (56, 100, 50))[variant]
    for _ in range(8):
        cx = w * rng.uniform(0.25, 0.75)
        cy = h * rng.uniform(0.5, 0.7)
        _fill_ellipse(
            rgb, alpha, (cx, cy), (w * 0.2, h * 0.3), _shade(green, rng.uniform(0.8, 1.2))
        )
    _fill_poly(
        rgb,
        alpha,
        [(w * 0.1, h), (w * 0.9, h), (w * 0.8, h * 0.7), (w * 0.2, h * 0.7)],
        _shade(green, 0.75),
    )


def _post(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    _fill_poly(rgb, alpha, [(0, h), (w, h), (w, 0), (0, 0)], (236, 236, 232))
    rgb[int(h * 0.08) : int(h * 0.2)] = (30, 30, 30)
    rgb[int(h * 0.1) : int(h * 0.18), int(w * 0.25) : int(w * 0.75)] = (255, 120, 20)


def _pole(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    _fill_poly(
        rgb, alpha, [(w * 0.4, h), (w * 0.6, h), (w * 0.57, 0), (w * 0.43, 0)], (104, 80, 58)
    )
    _fill_poly(
        rgb, alpha, [(0, h * 0.06), (w, h * 0.06), (w, h * 0.08), (0, h * 0.08)], (90, 70, 50)
    )
    for x in (0.05, 0.95):
        _fill_ellipse(rgb, alpha, (w * x, h * 0.055), (w * 0.05, h * 0.012), (220, 220, 210))


def _chevron(pointing_left: bool):
    def paint(rgb, alpha, rng, variant) -> None:
        h, w = alpha.shape
        _fill_poly(
            rgb,
            alpha,
            [(w * 0.45, h), (w * 0.55, h), (w * 0.55, h * 0.4), (w * 0.45, h * 0.4)],
            (150, 150, 150),
        )
        _fill_poly(rgb, alpha, [(0, h * 0.45), (w, h * 0.45), (w, 0), (0, 0)], (250, 206, 30))
        tip, back = (0.18, 0.72) if pointing_left else (0.82, 0.28)
        arrow = [
            (w * back, h * 0.05),
            (w * (back + (0.18 if pointing_left else -0.18)), h * 0.05),
            (w * (tip + (0.18 if pointing_left else -0.18)), h * 0.225),
            (w * (back + (0.18 if pointing_left else -0.18)), h * 0.4),
            (w * back, h * 0.4),
            (w * tip, h * 0.225),
        ]
        cv2.fillPoly(rgb, [np.array(arrow, np.int32)], (20, 20, 20), cv2.LINE_AA)

    return paint


def _rock(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    grey = ((128, 126, 120), (140, 134, 124), (112, 112, 110))[variant]
    angles = np.sort(rng.uniform(math.pi, 2 * math.pi, 7))
    points = (
        [(w * 0.02, h)]
        + [(w * (0.5 + 0.48 * math.cos(a)), h * (1.0 + 0.95 * math.sin(a))) for a in angles]
        + [(w * 0.98, h)]
    )
    _fill_poly(rgb, alpha, points, grey)
    _fill_poly(rgb, alpha, [*points[: len(points) // 2 + 1], (w * 0.5, h)], _shade(grey, 1.15))


def _gantry(rgb, alpha, rng, variant) -> None:
    h, w = alpha.shape
    for x in (0.02, 0.94):
        _fill_poly(
            rgb,
            alpha,
            [(w * x, h), (w * (x + 0.04), h), (w * (x + 0.04), 0), (w * x, 0)],
            (170, 170, 176),
        )
    top, bottom = int(h * 0.04), int(h * 0.3)
    _fill_poly(rgb, alpha, [(0, bottom), (w, bottom), (w, top), (0, top)], (250, 250, 250))
    square = max(2, (bottom - top) // 4)
    for row in range(4):
        for col in range(0, w // square):
            if (row + col) % 2:
                y = top + row * square
                rgb[y : y + square, col * square : (col + 1) * square] = (20, 20, 20)
    label_top = bottom + int(h * 0.02)
    _fill_poly(
        rgb,
        alpha,
        [
            (w * 0.3, label_top + h * 0.12),
            (w * 0.7, label_top + h * 0.12),
            (w * 0.7, label_top),
            (w * 0.3, label_top),
        ],
        (200, 30, 30),
    )
    cv2.putText(
        rgb,
        "START",
        (int(w * 0.33), int(label_top + h * 0.1)),
        cv2.FONT_HERSHEY_DUPLEX,
        h / 260,
        (255, 255, 255),
        max(1, h // 120),
        cv2.LINE_AA,
    )


_PAINTERS: dict[Kind, Callable[[np.ndarray, np.ndarray, np.random.Generator, int], None]] = {
    Kind.PINE: _pine,
    Kind.OAK: _oak,
    Kind.BUSH: _bush,
    Kind.POST: _post,
    Kind.POLE: _pole,
    Kind.CHEVRON_LEFT: _chevron(pointing_left=True),
    Kind.CHEVRON_RIGHT: _chevron(pointing_left=False),
    Kind.ROCK: _rock,
    Kind.GANTRY: _gantry,
}
