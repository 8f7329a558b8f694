"""Pinhole cameras over a flat ground: the geometry shared by the hood and chase views.

Example::

    camera = Camera(CameraSpec(width=480, height=270, hfov_deg=75, height_m=1.25, pitch_deg=5))
    camera.ground_forward        # metres ahead of the camera that each ground row shows
    u, v, depth = camera.project(forward, right, up)

Frame conventions: `forward` and `right` are metres in the camera's yaw frame
(level, not pitched), `up` is metres above the ground. Every ground pixel's
`forward`/`right` is computed once here; a frame only rotates and shifts them
into the world ("mode 7").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraSpec:
    """Image size, field of view and mounting of one camera."""

    width: int
    height: int
    hfov_deg: float
    height_m: float
    pitch_deg: float
    # How far the ground is drawn; beyond it everything is haze.
    far_m: float = 300.0


class Camera:
    """Projection both ways: pixels to ground points (precomputed) and 3D points to pixels."""

    def __init__(self, spec: CameraSpec):
        self.spec = spec
        self.focal = (spec.width / 2) / math.tan(math.radians(spec.hfov_deg) / 2)
        self.cx = (spec.width - 1) / 2
        self.cy = (spec.height - 1) / 2
        self.pitch = math.radians(spec.pitch_deg)
        self.horizon = self.cy - self.focal * math.tan(self.pitch)
        # The first row whose centre looks below the horizon, and everything from there down.
        self.ground_top = max(0, min(spec.height, math.floor(self.horizon) + 1))
        rows = np.arange(self.ground_top, spec.height, dtype=np.float64)
        cols = np.arange(spec.width, dtype=np.float64)
        forward, right_per_col = self._ground_rays(rows)
        self.ground_forward = forward
        right = right_per_col[:, None] * ((cols - self.cx) / self.focal)[None, :]
        self.ground_right = right
        depth = forward * math.cos(self.pitch) + spec.height_m * math.sin(self.pitch)
        # Metres of ground one pixel covers across (lateral) and along (depth) the view.
        self.footprint_across = depth / self.focal
        below = self._ground_rays(rows + 1.0)[0]
        self.footprint_along = np.abs(forward - below)

    def _ground_rays(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward distance per row, and the per-row factor turning a column's slope into metres.

        Rows at the horizon are held at four times the far limit: fully hazed anyway.
        """
        ray_down = (rows - self.cy) / self.focal
        level_forward = math.cos(self.pitch) - ray_down * math.sin(self.pitch)
        level_down = ray_down * math.cos(self.pitch) + math.sin(self.pitch)
        reach = np.where(
            level_down > 1e-9, self.spec.height_m / np.maximum(level_down, 1e-9), np.inf
        )
        forward = np.minimum(reach * level_forward, self.spec.far_m * 4)
        right_scale = np.minimum(reach, self.spec.far_m * 4)
        return forward, right_scale

    def project(
        self, forward: np.ndarray, right: np.ndarray, up: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel column, row and optical depth of points in the camera's yaw frame."""
        down = self.spec.height_m - up
        sin_p, cos_p = math.sin(self.pitch), math.cos(self.pitch)
        depth = down * sin_p + forward * cos_p
        safe = np.where(depth > 1e-6, depth, 1e-6)
        u = self.cx + self.focal * right / safe
        v = self.cy + self.focal * (down * cos_p - forward * sin_p) / safe
        return u, v, depth


def to_camera_frame(
    x: np.ndarray, y: np.ndarray, camera_x: float, camera_y: float, yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    """World points to (forward, right) metres of a camera at (camera_x, camera_y) facing `yaw`."""
    dx = x - camera_x
    dy = y - camera_y
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    return dx * cos_y + dy * sin_y, dx * sin_y - dy * cos_y
