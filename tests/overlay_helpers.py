"""A real hub serving the overlays, Debian's chromium through Playwright, and frames to show."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest
from playwright.async_api import Browser, Page, Playwright

from engine.app.hub import Hub
from engine.core.config import HubConfig, OverlayConfig
from engine.core.store import (
    AlertRaised,
    AppState,
    ConnectionChanged,
    NodesChanged,
    Received,
    VersionStreamed,
)
from engine.core.wire import (
    Alert,
    BufferFill,
    DriverStage,
    DriverStatus,
    Frames,
    StageTime,
    TrainerStatus,
)
from overlays.server import OverlayServer
from tests.hub_helpers import TOKEN

CHROMIUM = shutil.which("chromium")
# The flags the issue names: no sandbox (root in CI), no GPU, nothing phoning home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it)"
)

VERSION = "model_0000_demo_v1"
CREATED = "2026-11-20T10:00:00+00:00"
# BGR colours of the three cameras, told apart by pixels in the page.
HOOD_BGR = (0, 0, 200)
CONVCAM_BGR = (0, 200, 0)
CHASE_BGR = (200, 0, 0)


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's chromium, never a downloaded one."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


@contextlib.asynccontextmanager
async def overlay_hub(
    state: AppState | None = None, *, port: int = 0, config: OverlayConfig | None = None
) -> AsyncIterator[tuple[Hub, OverlayServer]]:
    """A started hub on 127.0.0.1 with the overlay routes, stopped afterwards."""
    state = state or AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=port), TOKEN, state)
    server = OverlayServer(config or OverlayConfig(), state)
    server.add_routes(hub.app)
    await hub.start()
    try:
        yield hub, server
    finally:
        await hub.stop()


def solid_jpeg(bgr: tuple[int, int, int], width: int, height: int) -> bytes:
    """A JPEG of one colour (JPEG keeps flat colours to within a few levels)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = bgr
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


# A driver's loop at 30 fps with a small model: every stage, in loop order, with its p50/p95 ms.
STAGES: dict[DriverStage, StageTime] = {
    "capture_wait": StageTime(p50_ms=28.4, p95_ms=31.9, turns=256),
    "preprocess": StageTime(p50_ms=0.04, p95_ms=0.07, turns=256),
    "predict": StageTime(p50_ms=3.41, p95_ms=4.27, turns=256),
    "translate": StageTime(p50_ms=0.01, p95_ms=0.02, turns=256),
    "controller": StageTime(p50_ms=0.03, p95_ms=0.05, turns=256),
    "convcam": StageTime(p50_ms=0.52, p95_ms=0.81, turns=256),
    "watch": StageTime(p50_ms=0.02, p95_ms=0.04, turns=256),
    "report": StageTime(p50_ms=0.21, p95_ms=6.35, turns=256),
}


def live_state() -> AppState:
    """An AppState as a running stream has it: frames, driver, trainer, an event and an alert."""
    state = AppState()
    state.apply(VersionStreamed(VERSION, CREATED))
    state.apply(ConnectionChanged("obs", "connected (OBS 29.0.2, replay buffer on)"))
    state.apply(ConnectionChanged("twitch", "off"))
    state.apply(
        NodesChanged(
            {"driver": "driver", "trainer": "trainer"},
            "trainer (trainer) connected from 127.0.0.1:5000",
        )
    )
    frames = Frames(
        hood=solid_jpeg(HOOD_BGR, 480, 270),
        convcam=solid_jpeg(CONVCAM_BGR, 320, 320),
        chase=solid_jpeg(CHASE_BGR, 1280, 720),
    )
    driver = DriverStatus(
        version=VERSION,
        batch=500,
        predictions={"steering": 0.3, "throttle_brake": 0.8},
        pad={"steering": 0.25, "throttle_brake": 0.8},
        fps=30.0,
        pps=29.5,
        unstucks=2,
        distance_m=1234.0,
        stages=STAGES,
    )
    for message in (frames, driver):
        state.apply(Received(message, "driver"))
    state.apply(Received(trainer_status(1180, 0.05), "trainer"))
    state.apply(AlertRaised(Alert(kind="moment", text="viewer42: Charles went for a swim")))
    return state


def joined_from_other_pcs() -> NodesChanged:
    """The hub's nodes after a trainer and a collector joined from other PCs (issue 17)."""
    return NodesChanged(
        {"collector-0": "collector", "collector-5": "collector", "trainer": "trainer"},
        "trainer (trainer) on gpu-box connected from 192.168.1.30:41000",
        {
            "collector-0": {"host": "streamer", "peer": "127.0.0.1:5000"},  # this PC's own
            "collector-5": {
                "host": "pc-b",
                "peer": "192.168.1.23:50412",
                "reconnects": 2,
                "sets_lost": 1,
            },
            "trainer": {"host": "gpu-box", "peer": "fd00::30:41000", "reconnects": 0},
        },
    )


# How the consoles and the overlay name the nodes of joined_from_other_pcs().
ELSEWHERE = {"collector-5": "on pc-b (2 reconnects, 1 set lost)", "trainer": "on gpu-box"}


def trainer_status(batch: int, total: float, version: str = VERSION) -> TrainerStatus:
    """The trainer's report at `batch` with a total loss (the outputs' losses are parts of it)."""
    return TrainerStatus(
        version=version,
        status="training",
        batch=batch,
        loss={"total": total, "steering": total * 0.6, "throttle_brake": total * 0.4},
        samples_per_s=812.0,
        buffers={"steering": BufferFill(fill=1800, capacity=2000, needed=1800)},
    )


async def canvas_pixel(page: Page, selector: str, x: float, y: float) -> list[int]:
    """RGBA of one pixel of a canvas, at fractions (x, y) of its size."""
    return await page.evaluate(
        """([selector, x, y]) => {
            const canvas = document.querySelector(selector);
            const context = canvas.getContext("2d");
            const px = Math.floor(canvas.width * x), py = Math.floor(canvas.height * y);
            return Array.from(context.getImageData(px, py, 1, 1).data);
        }""",
        [selector, x, y],
    )


async def coloured_pixels(page: Page, selector: str, rgb: tuple[int, int, int]) -> int:
    """How many pixels of a canvas are close to `rgb` (a drawn line's colour)."""
    return await page.evaluate(
        """([selector, rgb]) => {
            const canvas = document.querySelector(selector);
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
                const near = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1])
                    + Math.abs(data[i + 2] - rgb[2]) < 40;
                if (near && data[i + 3] > 200) count += 1;
            }
            return count;
        }""",
        [selector, list(rgb)],
    )


def near(rgba: list[int], bgr: tuple[int, int, int], tolerance: int = 12) -> bool:
    """Whether a page pixel shows the colour a JPEG was made of (BGR there, RGB here)."""
    blue, green, red = bgr
    return rgba[3] == 255 and all(
        abs(a - b) <= tolerance for a, b in zip(rgba[:3], (red, green, blue), strict=True)
    )
