"""Sky, clouds and far hills: a 360-degree panorama that slides as the camera turns.

Example::

    sky = SkyPanorama(camera, seed=7)
    sky.render(frame, yaw)       # fills rows 0..camera.ground_top

The panorama is one pixel per `1/focal` radian, as wide as a full turn, and
stored twice side by side so any view is a plain slice (no wrap-around copy).
Turning left (yaw increases) slides the scenery to the right, as it should.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.sim.camera import Camera
from engine.sim.ground import HAZE_RGB

SKY_TOP_RGB = (70, 128, 200)
MOUNTAIN_RGB = (112, 130, 160)
HILL_RGB = (72, 110, 70)


class SkyPanorama:
    """Everything above the horizon for one camera, precomputed per world seed."""

    def __init__(self, camera: Camera, seed: int):
        self.camera = camera
        self.rows = camera.ground_top
        self.width = max(camera.spec.width, round(2 * math.pi * camera.focal))
        strip = _paint(camera, self.rows, self.width, np.random.default_rng([seed, 2]))
        self._strip = np.ascontiguousarray(
            np.concatenate([strip, strip[:, : camera.spec.width]], axis=1)
        )

    def render(self, frame: np.ndarray, yaw: float) -> None:
        """Copy the part of the panorama the camera sees at `yaw` into the top of `frame`."""
        if self.rows == 0:
            return
        start = round(-yaw * self.camera.focal) % self.width
        frame[: self.rows] = self._strip[:, start : start + self.camera.spec.width]


def _paint(camera: Camera, rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Sky gradient, soft clouds, a mountain range and nearer wooded hills."""
    if rows == 0:
        return np.zeros((0, width, 3), np.uint8)
    row = np.arange(rows, dtype=np.float64)[:, None]
    # Elevation above the horizon, in radians, of each panorama row.
    elevation = np.arctan((camera.cy - row) / camera.focal) - camera.pitch
    height_share = np.clip(elevation / math.radians(35), 0.0, 1.0) ** 0.6
    sky = _mix(HAZE_RGB, SKY_TOP_RGB, height_share[..., None])
    image = np.broadcast_to(sky, (rows, width, 3)).astype(np.float64).copy()
    _clouds(image, elevation, rng)
    azimuth = np.arange(width) * (2 * math.pi / width)
    for colour, top_deg, haze, roughness in (
        (MOUNTAIN_RGB, 4.0, 0.45, 5),
        (HILL_RGB, 1.8, 0.2, 14),
    ):
        ridge = math.radians(top_deg) * _ridge(azimuth, rng, roughness)
        inside = elevation <= ridge[None, :]
        # Lower parts sink into the haze of the far ground.
        depth = np.clip(elevation / np.maximum(ridge[None, :], 1e-6), 0.0, 1.0)
        shade = _mix(HAZE_RGB, colour, (1 - haze) * (0.55 + 0.45 * depth[..., None]))
        image = np.where(inside[..., None], shade, image)
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8)


def _ridge(azimuth: np.ndarray, rng: np.random.Generator, roughness: int) -> np.ndarray:
    """A periodic skyline between 0.25 and 1.0 of its peak height."""
    height = np.zeros_like(azimuth)
    for frequency in range(1, roughness + 1):
        height += (
            rng.uniform(0.3, 1.0)
            / frequency**0.9
            * np.sin(frequency * azimuth + rng.uniform(0, 2 * math.pi))
        )
    height = (height - height.min()) / max(height.max() - height.min(), 1e-9)
    return 0.25 + 0.75 * height


def _clouds(image: np.ndarray, elevation: np.ndarray, rng: np.random.Generator) -> None:
    """Soft white puffs drawn in place, thinning towards the horizon."""
    rows, width = image.shape[:2]
    layer = np.zeros((rows, width), np.float32)
    for _ in range(int(width / 90)):
        x = rng.uniform(0, width)
        y = rng.uniform(0.05, 0.6) * rows
        size = rng.uniform(0.04, 0.12) * rows * 3
        for _ in range(5):
            centre = (int(x + rng.normal(0, size)), int(y + rng.normal(0, size * 0.2)))
            axes = (int(size * rng.uniform(0.6, 1.4)), int(size * rng.uniform(0.25, 0.45)))
            for shift in (-width, 0, width):
                cv2.ellipse(layer, (centre[0] + shift, centre[1]), axes, 0, 0, 360, 1.0, -1)
    layer = cv2.GaussianBlur(layer, (0, 0), max(1.0, rows / 40))
    fade = np.clip(elevation / math.radians(6), 0.0, 1.0)
    amount = (0.8 * np.clip(layer, 0, 1) * fade)[..., None]
    image += (np.array([250, 250, 252], float) - image) * amount


def _mix(base, top, amount):
    base = np.asarray(base, dtype=float)
    return base + (np.asarray(top, dtype=float) - base) * amount
