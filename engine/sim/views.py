"""The two cameras of the game: the hood view (the model's input) and the chase view (the stream's).

Example::

    hood = HoodView(world, width=480, height=270)
    frame = hood.render(car_state)                        # RGB uint8 (270, 480, 3)
    chase = ChaseView(world, width=1280, height=720)
    frame = chase.render(car_state, camera_yaw, braking=False, laps=1)

Both draw the same scene - sky and hills, the ground, then billboards and
buildings far to near - from a different mount. The hood view adds the car's
bonnet at the bottom; the chase view adds the car itself, its shadow and a
small speed/lap read-out with a track map for viewers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from engine.sim.camera import Camera, CameraSpec, to_camera_frame
from engine.sim.ground import GroundRenderer, fog_amount
from engine.sim.meshes import CAR_LENGTH_M, CAR_WIDTH_M, building_mesh, car_mesh, draw_mesh
from engine.sim.physics import TOP_SPEED_MS, CarState, max_wheel_angle
from engine.sim.scenery import Kind
from engine.sim.sky import SkyPanorama
from engine.sim.sprites import ASPECT, FOG_STEPS, SpriteBank, quantise_heights
from engine.sim.world import World

# Camera mounts, relative to the car's centre.
HOOD_FORWARD_M = 0.9
CHASE_BEHIND_M = 9.5
CAR_BODY_RGB = (200, 32, 40)
# The hood view's speed bar on the bonnet: height and distance from the bottom, as fractions of
# the frame (the bottom rows stay bonnet-red).
SPEEDOMETER_HEIGHT = 0.04
SPEEDOMETER_MARGIN = 0.035
SPEEDOMETER_FILLED_RGB = (240, 240, 240)
SPEEDOMETER_EMPTY_RGB = (20, 20, 20)
_BUILDING_DETAIL_M = 90.0
# Smaller chase frames get no speed/lap read-out or map: they would cover the view.
_HUD_MIN_HEIGHT = 180


class SceneView:
    """Sky, ground and roadside objects of one world through one camera."""

    def __init__(self, world: World, spec: CameraSpec):
        self.world = world
        self.camera = Camera(spec)
        self.ground = GroundRenderer(self.camera, world)
        self.sky = SkyPanorama(self.camera, world.seed)
        self.sprites = SpriteBank()
        self._aspect = np.array([ASPECT[kind] for kind in Kind])
        buildings = world.scenery.buildings
        self._buildings = [
            building_mesh(float(w), float(d), float(h), int(c))
            for w, d, h, c in zip(
                buildings.width_m,
                buildings.depth_m,
                buildings.height_m,
                buildings.colour,
                strict=True,
            )
        ]

    def render_scene(
        self,
        camera_x: float,
        camera_y: float,
        yaw: float,
        extra: tuple[float, Callable[[np.ndarray], None]] | None = None,
    ) -> np.ndarray:
        """A new frame of the scene; `extra` is one more (depth, draw(frame)) to sort in."""
        spec = self.camera.spec
        frame = np.empty((spec.height, spec.width, 3), np.uint8)
        self.sky.render(frame, yaw)
        self.ground.render(frame, camera_x, camera_y, yaw)
        boards = self._visible_billboards(camera_x, camera_y, yaw)
        houses = self._visible_buildings(camera_x, camera_y, yaw)
        depths = [boards[0], houses[0]]
        if extra is not None:
            depths.append(np.array([extra[0]]))
        order = np.argsort(-np.concatenate(depths), kind="stable").tolist()
        board_count, house_count = len(boards[0]), len(houses[0])
        sprites = self.sprites
        camera_pose = (camera_x, camera_y, yaw)
        for item in order:
            if item < board_count:
                sprites.blit(frame, *boards[1][item])
            elif item < board_count + house_count:
                self._draw_building(frame, houses[1][item - board_count], camera_pose)
            elif extra is not None:
                extra[1](frame)
        return frame

    def _visible_billboards(
        self, camera_x: float, camera_y: float, yaw: float
    ) -> tuple[np.ndarray, list]:
        """Depths and blit arguments (kind, variant, height, fog, left, top) of what is in view."""
        board = self.world.scenery.billboards
        forward, right = to_camera_frame(board.x, board.y, camera_x, camera_y, yaw)
        camera = self.camera
        far = camera.spec.far_m
        half_view = camera.spec.width / 2 / camera.focal
        ahead = (
            (forward > 1.0)
            & (forward < far)
            & (np.abs(right) < forward * half_view + board.height_m * 2)
        )
        candidates = np.flatnonzero(ahead)
        f = forward[candidates]
        r = right[candidates]
        u, bottom, depth = camera.project(f, r, np.zeros_like(f))
        _, top, _ = camera.project(f, r, board.height_m[candidates])
        pixels = bottom - top
        fog_step = np.rint(fog_amount(f, far) * FOG_STEPS).astype(np.int64)
        keep = (
            (pixels >= 1.5)
            & (pixels < camera.spec.height * 3)
            & (depth > 0.5)
            & (fog_step < FOG_STEPS)
        )
        candidates, u, bottom, depth, pixels, fog_step = (
            a[keep] for a in (candidates, u, bottom, depth, pixels, fog_step)
        )
        kinds = board.kind[candidates]
        heights = quantise_heights(pixels)
        widths = np.maximum(1, np.rint(heights * self._aspect[kinds]))
        left = np.rint(u - widths / 2).astype(np.int64)
        top = np.rint(bottom).astype(np.int64) - heights
        inside = (left < camera.spec.width) & (left + widths > 0) & (top < camera.spec.height)
        arguments = np.stack(
            [kinds, board.variant[candidates], heights, fog_step, left, top], axis=1
        )[inside].tolist()
        return depth[inside], arguments

    def _visible_buildings(
        self, camera_x: float, camera_y: float, yaw: float
    ) -> tuple[np.ndarray, list]:
        """Depths and (index, fog, detailed) of the buildings in view."""
        buildings = self.world.scenery.buildings
        forward, right = to_camera_frame(buildings.x, buildings.y, camera_x, camera_y, yaw)
        far = self.camera.spec.far_m
        half_view = self.camera.spec.width / 2 / self.camera.focal
        reach = np.maximum(buildings.width_m, buildings.depth_m)
        # Nearly hazed-out houses are skipped: a dozen polygons each for a few faint pixels.
        visible = np.flatnonzero(
            (forward > -reach)
            & (fog_amount(forward, far) < 0.95)
            & (np.abs(right) < forward * half_view + reach)
        )
        distance = np.hypot(forward[visible], right[visible])
        fog = fog_amount(forward[visible], far)
        details = distance < _BUILDING_DETAIL_M
        return distance, list(zip(visible.tolist(), fog.tolist(), details.tolist(), strict=True))

    def _draw_building(self, frame: np.ndarray, item: tuple[int, float, bool], camera_pose) -> None:
        index, fog, detailed = item
        buildings = self.world.scenery.buildings
        pose = (float(buildings.x[index]), float(buildings.y[index]), float(buildings.yaw[index]))
        draw_mesh(frame, self.camera, self._buildings[index], pose, camera_pose, fog, detailed)


class HoodView(SceneView):
    """What a camera on the bonnet sees: the model's input."""

    def __init__(self, world: World, width: int, height: int):
        super().__init__(world, hood_camera(width, height))
        bonnet, mask = _bonnet(width, height)
        # Only the rows the bonnet covers are copied each frame.
        self._bonnet_top = int(np.flatnonzero(mask.any(axis=(1, 2)))[0])
        self._bonnet = np.ascontiguousarray(bonnet[self._bonnet_top :])
        self._bonnet_mask = np.ascontiguousarray(mask[self._bonnet_top :])

    def render(self, car: CarState) -> np.ndarray:
        """A new RGB frame from the hood of `car`."""
        x = car.x + HOOD_FORWARD_M * math.cos(car.heading)
        y = car.y + HOOD_FORWARD_M * math.sin(car.heading)
        frame = self.render_scene(x, y, car.heading)
        np.copyto(frame[self._bonnet_top :], self._bonnet, where=self._bonnet_mask)
        self._speedometer(frame, car.speed)
        return frame

    def _speedometer(self, frame: np.ndarray, speed: float) -> None:
        """A speed bar on the bonnet, like a game's HUD: one frame then tells how fast the car goes.

        Without it a single frame looks the same at rest and at 80 km/h, and a model
        cannot learn when to accelerate or brake.
        """
        height, width = frame.shape[:2]
        bar_h = max(2, round(SPEEDOMETER_HEIGHT * height))
        bottom = height - max(1, round(SPEEDOMETER_MARGIN * height))
        left, right = round(0.2 * width), round(0.8 * width)
        filled = left + round(min(1.0, max(0.0, speed) / TOP_SPEED_MS) * (right - left))
        frame[bottom - bar_h : bottom, left:right] = SPEEDOMETER_EMPTY_RGB
        frame[bottom - bar_h : bottom, left:filled] = SPEEDOMETER_FILLED_RGB


class ChaseView(SceneView):
    """A camera behind and above the car, turning a little later than it: the stream's main view."""

    def __init__(self, world: World, width: int, height: int):
        super().__init__(world, chase_camera(width, height))
        self._map, self._map_mask, self._map_transform = _track_map(world, max(16, height // 4))

    def render(self, car: CarState, camera_yaw: float, braking: bool, laps: int) -> np.ndarray:
        """A new RGB frame from behind `car`, the camera looking along `camera_yaw`."""
        camera_x = car.x - CHASE_BEHIND_M * math.cos(camera_yaw)
        camera_y = car.y - CHASE_BEHIND_M * math.sin(camera_yaw)
        camera_pose = (camera_x, camera_y, camera_yaw)
        forward, _ = to_camera_frame(np.array([car.x]), np.array([car.y]), *camera_pose)
        wheel = -car.steering * max_wheel_angle(car.speed)
        model = car_mesh(CAR_BODY_RGB, wheel, braking)

        def draw_car(frame: np.ndarray) -> None:
            self._shadow(frame, car, camera_pose)
            draw_mesh(frame, self.camera, model, (car.x, car.y, car.heading), camera_pose, 0.0)

        frame = self.render_scene(camera_x, camera_y, camera_yaw, (float(forward[0]), draw_car))
        if frame.shape[0] >= _HUD_MIN_HEIGHT:
            self._hud(frame, car, laps)
        return frame

    def _shadow(self, frame: np.ndarray, car: CarState, camera_pose) -> None:
        half_l, half_w = CAR_LENGTH_M / 2 + 0.2, CAR_WIDTH_M / 2 + 0.15
        cos_h, sin_h = math.cos(car.heading), math.sin(car.heading)
        corners = np.array(
            [(half_l, half_w), (half_l, -half_w), (-half_l, -half_w), (-half_l, half_w)]
        )
        xs = car.x + corners[:, 0] * cos_h - corners[:, 1] * sin_h
        ys = car.y + corners[:, 0] * sin_h + corners[:, 1] * cos_h
        forward, right = to_camera_frame(xs, ys, *camera_pose)
        u, v, depth = self.camera.project(forward, right, np.zeros(4))
        if depth.min() <= 0.3:
            return
        polygon = np.stack([u, v], axis=1)
        x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
        x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(
            mask, np.rint((polygon - (x0, y0)) * 16).astype(np.int32), 255, cv2.LINE_AA, 4
        )
        region = frame[y0:y1, x0:x1]
        darkness = (mask.astype(np.float32) * (0.45 / 255))[..., None]
        region[:] = (region * (1.0 - darkness)).astype(np.uint8)

    def _hud(self, frame: np.ndarray, car: CarState, laps: int) -> None:
        height = frame.shape[0]
        scale = height / 720
        margin = int(16 * scale)
        text = f"{car.speed * 3.6:3.0f} km/h   LAP {laps + 1}"
        origin = (margin + int(10 * scale), margin + int(34 * scale))
        size, _ = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_DUPLEX, 0.9 * scale, max(1, int(2 * scale))
        )
        box = frame[margin : margin + int(50 * scale), margin : margin + size[0] + int(20 * scale)]
        box[:] = (box * 0.45).astype(np.uint8)
        cv2.putText(
            frame,
            text,
            origin,
            cv2.FONT_HERSHEY_DUPLEX,
            0.9 * scale,
            (255, 255, 255),
            max(1, int(2 * scale)),
            cv2.LINE_AA,
        )
        side = self._map.shape[0]
        left = frame.shape[1] - side - margin
        target = frame[margin : margin + side, left : left + side]
        target[:] = np.where(self._map_mask, self._map, (target * 0.55).astype(np.uint8))
        scale_m, origin_x, origin_y = self._map_transform
        dot = (
            int(left + (car.x - origin_x) * scale_m),
            int(margin + side - 1 - (car.y - origin_y) * scale_m),
        )
        cv2.circle(frame, dot, max(3, side // 28), (255, 220, 40), -1, cv2.LINE_AA)


def hood_camera(width: int, height: int) -> CameraSpec:
    """The bonnet camera: low, wide, the horizon a little above the middle."""
    return CameraSpec(
        width=width, height=height, hfov_deg=75.0, height_m=1.25, pitch_deg=4.5, far_m=340.0
    )


def chase_camera(width: int, height: int) -> CameraSpec:
    """The third-person camera: 3.4 m up, looking slightly down over the car."""
    return CameraSpec(
        width=width, height=height, hfov_deg=62.0, height_m=3.4, pitch_deg=9.5, far_m=450.0
    )


def _bonnet(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The car's bonnet along the bottom edge, shaded like painted metal."""
    mask = np.zeros((height, width), np.uint8)
    centre = (width // 2, int(height * 1.55))
    axes = (int(width * 0.78), int(height * 0.63))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    base = np.array(CAR_BODY_RGB, float)
    shade = base * (0.55 + 0.6 * np.clip(1.0 - (rows - 0.88) * 6, 0.2, 1.0))
    image = np.broadcast_to(shade, (height, width, 3)).copy()
    highlight = np.zeros((height, width), np.uint8)
    cv2.ellipse(
        highlight,
        (centre[0], centre[1] + 2),
        (axes[0] - width // 10, axes[1]),
        0,
        200,
        340,
        255,
        max(1, height // 90),
        cv2.LINE_AA,
    )
    image += (255 - image) * (highlight[..., None] / 255.0) * 0.35
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8), (mask > 127)[..., None]


def _track_map(
    world: World, side: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A small track map for the chase view's corner, and its world-to-pixel transform."""
    points = world.track.points
    low = points.min(axis=0)
    span = float((points.max(axis=0) - low).max())
    pad = side * 0.1
    scale = (side - 2 * pad) / span
    pixels = np.stack(
        [pad + (points[:, 0] - low[0]) * scale, side - 1 - pad - (points[:, 1] - low[1]) * scale],
        axis=1,
    )
    image = np.zeros((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    polyline = [np.rint(pixels * 16).astype(np.int32)]
    cv2.polylines(mask, polyline, True, 255, max(3, side // 30), cv2.LINE_8, 4)
    cv2.polylines(image, polyline, True, (20, 20, 20), max(3, side // 30), cv2.LINE_AA, 4)
    cv2.polylines(image, polyline, True, (235, 235, 235), max(1, side // 90), cv2.LINE_AA, 4)
    start = tuple(np.rint(pixels[0]).astype(int))
    cv2.circle(image, start, max(2, side // 40), (230, 40, 40), -1)
    cv2.circle(mask, start, max(2, side // 40), 255, -1)
    transform = (scale, float(low[0] - pad / scale), float(low[1] - pad / scale))
    return image, (mask > 0)[..., None], transform
