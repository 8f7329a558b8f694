"""Flat-shaded polygon models (buildings, the player's car) and how to draw them.

Example::

    house = building_mesh(width=12, depth=9, height=6, style=2)
    draw_mesh(frame, camera, house, pose=(x, y, yaw), camera_pose=(cx, cy, cyaw), fog=0.1)

Models are small lists of convex faces in local metres (x forward, y left,
z up). Drawing culls faces that look away from the camera and fills the rest
in list order, so each model lists its faces back-to-front for a viewer
outside it (walls, then details such as windows on top of them).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.sim.camera import Camera, to_camera_frame
from engine.sim.ground import HAZE_RGB

# Sunlight comes from this (unit) direction; faces turned to it are brighter.
_SUN = np.array([-0.45, 0.55, 0.70]) / np.linalg.norm([-0.45, 0.55, 0.70])
_NEAR_DEPTH_M = 0.3


@dataclass(frozen=True, eq=False)
class Mesh:
    """Vertices (N, 3) and convex faces: vertex indices counter-clockwise seen from outside."""

    vertices: np.ndarray
    faces: tuple[tuple[int, ...], ...]
    colours: np.ndarray
    # Faces from this index on are small details, drawn only when the model is near.
    detail_from: int

    @classmethod
    def build(cls, vertices, faces, detail_from: int | None = None) -> Mesh:
        """A mesh from vertex tuples and (indices, colour) faces."""
        return cls(
            vertices=np.array(vertices, float),
            faces=tuple(tuple(indices) for indices, _ in faces),
            colours=np.array([colour for _, colour in faces], float),
            detail_from=len(faces) if detail_from is None else detail_from,
        )

    @functools.cached_property
    def first_vertex(self) -> np.ndarray:
        """Index of each face's first vertex (a point on its plane)."""
        return np.array([indices[0] for indices in self.faces], np.int64)

    @functools.cached_property
    def normals(self) -> np.ndarray:
        """(faces, 3) unit outward normals in local coordinates."""
        corners = self.vertices[np.array([indices[:3] for indices in self.faces], np.int64)]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        return normals / np.linalg.norm(normals, axis=1, keepdims=True)

    @functools.cached_property
    def polygons(self) -> tuple[np.ndarray, ...]:
        """Each face's vertex indices as an array, ready for fancy indexing."""
        return tuple(np.array(indices, np.int64) for indices in self.faces)


def draw_mesh(
    frame: np.ndarray,
    camera: Camera,
    mesh: Mesh,
    pose: tuple[float, float, float],
    camera_pose: tuple[float, float, float],
    fog: float,
    detailed: bool = True,
) -> None:
    """Project and fill the faces of `mesh` placed at `pose` (x, y, yaw) that face the camera."""
    x, y, yaw = pose
    camera_x, camera_y, camera_yaw = camera_pose
    # Everything below is in the camera's yaw frame: forward, left, up.
    turn = yaw - camera_yaw
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    (origin_forward,), (origin_right,) = to_camera_frame(
        np.array([x]), np.array([y]), camera_x, camera_y, camera_yaw
    )
    local = mesh.vertices
    forward = origin_forward + local[:, 0] * cos_t - local[:, 1] * sin_t
    left = -origin_right + local[:, 0] * sin_t + local[:, 1] * cos_t
    up = local[:, 2]
    u, v, depth = camera.project(forward, -left, up)
    if depth.min() < _NEAR_DEPTH_M:
        return
    count = len(mesh.faces) if detailed else mesh.detail_from
    normals = mesh.normals[:count]
    first = mesh.first_vertex[:count]
    normal_forward = normals[:, 0] * cos_t - normals[:, 1] * sin_t
    normal_left = normals[:, 0] * sin_t + normals[:, 1] * cos_t
    facing = (
        normal_forward * forward[first]
        + normal_left * left[first]
        + normals[:, 2] * (up[first] - camera.spec.height_m)
    ) < 0.0
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    sunlit = (
        (normals[:, 0] * cos_y - normals[:, 1] * sin_y) * _SUN[0]
        + (normals[:, 0] * sin_y + normals[:, 1] * cos_y) * _SUN[1]
        + normals[:, 2] * _SUN[2]
    )
    shaded = mesh.colours[:count] * (0.62 + 0.38 * np.clip(sunlit, 0.0, None))[:, None]
    shaded += (np.array(HAZE_RGB, float) - shaded) * fog
    colours = np.rint(shaded).astype(np.int64).tolist()
    pixels = np.empty((len(u), 2), np.int32)
    pixels[:, 0] = np.rint(u * 16)
    pixels[:, 1] = np.rint(v * 16)
    polygons = mesh.polygons
    for index in np.flatnonzero(facing).tolist():
        cv2.fillConvexPoly(frame, pixels[polygons[index]], colours[index], cv2.LINE_AA, 4)


_WALLS = ((236, 226, 204), (196, 92, 70), (214, 214, 220), (170, 150, 120), (232, 206, 150))
_ROOFS = ((150, 60, 48), (80, 80, 88), (120, 70, 50), (96, 100, 108), (140, 84, 60))


def building_mesh(width: float, depth: float, height: float, style: int) -> Mesh:
    """A house or barn: box walls, a gabled roof along its width, windows and a door."""
    wall = _WALLS[style % len(_WALLS)]
    roof = _ROOFS[style % len(_ROOFS)]
    hw, hd = width / 2, depth / 2
    eaves = height * 0.7
    vertices = [
        (-hw, -hd, 0),
        (hw, -hd, 0),
        (hw, hd, 0),
        (-hw, hd, 0),
        (-hw, -hd, eaves),
        (hw, -hd, eaves),
        (hw, hd, eaves),
        (-hw, hd, eaves),
        (-hw, 0, height),
        (hw, 0, height),
    ]
    faces: list[tuple[tuple[int, ...], tuple[int, int, int]]] = [
        ((0, 1, 5, 4), wall),
        ((1, 2, 6, 5), wall),
        ((2, 3, 7, 6), wall),
        ((3, 0, 4, 7), wall),
        ((5, 6, 9), wall),
        ((7, 4, 8), wall),
        ((4, 5, 9, 8), roof),
        ((6, 7, 8, 9), roof),
    ]
    detail_from = len(faces)
    glass = (60, 78, 96)
    floors = max(1, int(eaves // 3.0))
    # Windows on both long walls (y = -hd faces -y, y = +hd faces +y), a door on the -y side.
    for side, sign in ((0, -1.0), (1, 1.0)):
        columns = max(1, int(width // 3.5))
        for floor in range(floors):
            for column in range(columns):
                along = -hw + (column + 0.5) * width / columns
                if side == 0 and floor == 0 and column == columns // 2:
                    faces.append(
                        _wall_quad(
                            vertices, along, sign * (hd + 0.02), 0.0, 2.1, 0.6, sign, (90, 60, 40)
                        )
                    )
                    continue
                bottom = floor * 3.0 + 1.0
                faces.append(
                    _wall_quad(
                        vertices, along, sign * (hd + 0.02), bottom, bottom + 1.2, 0.55, sign, glass
                    )
                )
    return Mesh.build(vertices, faces, detail_from)


def _wall_quad(vertices, along, y, bottom, top, half_width, facing, colour):
    """Append a rectangle on a wall at y (facing -y or +y) and return it as a face."""
    start = len(vertices)
    left, right = (
        (along + half_width, along - half_width)
        if facing > 0
        else (along - half_width, along + half_width)
    )
    vertices.extend([(left, y, bottom), (right, y, bottom), (right, y, top), (left, y, top)])
    return ((start, start + 1, start + 2, start + 3), colour)


CAR_LENGTH_M = 4.4
CAR_WIDTH_M = 1.85


def car_mesh(body: tuple[int, int, int], steer_angle: float, brake_lights: bool) -> Mesh:
    """The player's car seen from outside: wheels, body, cabin with glass, lights."""
    faces: list[tuple[tuple[int, ...], tuple[int, int, int]]] = []
    vertices: list[tuple[float, float, float]] = []
    tyre = (26, 26, 28)
    for fx, angle in ((1.35, steer_angle), (-1.35, 0.0)):
        for side in (-1.0, 1.0):
            _box(vertices, faces, (fx, side * 0.78, 0.33), (0.68, 0.28, 0.66), angle, tyre)
    _box(vertices, faces, (0.0, 0.0, 0.62), (CAR_LENGTH_M, CAR_WIDTH_M, 0.62), 0.0, body)
    cabin_start = len(vertices)
    low, high = 0.93, 1.42
    vertices.extend(
        [
            (0.75, -0.82, low),
            (0.75, 0.82, low),
            (-1.55, 0.82, low),
            (-1.55, -0.82, low),
            (0.05, -0.7, high),
            (0.05, 0.7, high),
            (-1.2, 0.7, high),
            (-1.2, -0.7, high),
        ]
    )
    glass = (54, 66, 82)
    c = cabin_start
    faces.extend(
        [
            ((c + 0, c + 1, c + 5, c + 4), glass),
            ((c + 1, c + 2, c + 6, c + 5), glass),
            ((c + 2, c + 3, c + 7, c + 6), glass),
            ((c + 3, c + 0, c + 4, c + 7), glass),
            ((c + 4, c + 5, c + 6, c + 7), body),
        ]
    )
    light = (255, 40, 30) if brake_lights else (150, 20, 20)
    for side in (-1.0, 1.0):
        start = len(vertices)
        x = -CAR_LENGTH_M / 2 - 0.01
        y0, y1 = side * 0.55, side * 0.85
        left, right = (y1, y0) if side > 0 else (y0, y1)
        vertices.extend([(x, left, 0.68), (x, right, 0.68), (x, right, 0.86), (x, left, 0.86)])
        faces.append(((start, start + 1, start + 2, start + 3), light))
    return Mesh.build(vertices, faces)


def _box(vertices, faces, centre, size, yaw, colour) -> None:
    """Append a box (centre, (length, width, height)) turned by `yaw` around its centre."""
    cx, cy, cz = centre
    length, width, height = size
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    start = len(vertices)
    for z in (cz - height / 2, cz + height / 2):
        for lx, ly in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            px, py = lx * length / 2, ly * width / 2
            vertices.append((cx + px * cos_y - py * sin_y, cy + px * sin_y + py * cos_y, z))
    s = start
    faces.extend(
        [
            ((s + 0, s + 1, s + 5, s + 4), colour),
            ((s + 1, s + 2, s + 6, s + 5), colour),
            ((s + 2, s + 3, s + 7, s + 6), colour),
            ((s + 3, s + 0, s + 4, s + 7), colour),
            ((s + 4, s + 5, s + 6, s + 7), colour),
        ]
    )
