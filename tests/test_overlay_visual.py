"""Visual regression: every tile and the full layout, rendered in Debian's chromium from one
fixed recorded state, compared with the reference PNGs in tests/visual/ within a tolerance.

A change in looks is then a reviewed change: after an intended one, write the references
again with `CHARLES_UPDATE_VISUALS=1 pytest tests/test_overlay_visual.py`, look at the PNGs
and commit them. The time on stream (a clock) is masked; animations are finished first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
from playwright.async_api import Page

from engine.core.store import AppState, Noted, Received
from engine.core.wire import Alert
from engine.driver.convcam import OVERLAY_ASPECT, render_convcam
from overlays.layout import TILES
from tests.overlay_helpers import (
    live_state,
    needs_chromium,
    overlay_hub,
    trainer_status,
)

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

REFERENCES = Path(__file__).with_name("visual")
UPDATE = os.environ.get("CHARLES_UPDATE_VISUALS") == "1"
# A pixel differs when a channel is off by more than this; a picture may differ in this share
# of its pixels (anti-aliasing of text between chromium builds), no more.
CHANNEL_TOLERANCE = 24
PIXEL_SHARE = 0.005


def recorded_state() -> AppState:
    """One moment of a stream, the same every run: live_state with events and the Convcam the
    driver renders for Xception's 1536 7x11 maps (seeded). The loss curve comes once the hub
    runs (`add_loss_curve`): the overlay's history starts when the overlay does."""
    state = live_state()
    driver = state.snapshot().driver
    state.apply(
        Received(
            msgspec.structs.replace(
                driver, convcam_layers=("block14_sepconv2_act",), convcam_kernels=1536
            ),
            "driver",
        )
    )
    maps = np.random.default_rng(0).random((7, 11, 1536), np.float32)
    convcam = cv2.cvtColor(render_convcam(maps, aspect=OVERLAY_ASPECT), cv2.COLOR_RGB2BGR)
    frames = state.snapshot().frames
    state.apply(
        Received(
            msgspec.structs.replace(frames, convcam=cv2.imencode(".jpg", convcam)[1].tobytes()),
            "driver",
        )
    )
    for index in range(3):
        state.apply(Noted(f"checkpoint {index + 1} saved at batch {(index + 1) * 400}"))
    state.apply(Received(Alert(kind="unstuck", text="Stuck: respawn elsewhere"), "driver"))
    return state


def add_loss_curve(state: AppState) -> None:
    """Trainer reports after live_state's at batch 1,180: the loss chart's points."""
    for batch in range(1200, 2400, 20):
        state.apply(Received(trainer_status(batch, 20.0 / batch), "trainer"))


async def chart_drawn(page: Page) -> None:
    """The chart draws its legend with the history fetched from /overlay/loss.json."""
    await page.wait_for_function("document.querySelector('.legend').textContent.includes('total')")


async def painted(page: Page) -> None:
    """Wait until the page drew what it was sent: fonts loaded and two animation frames on."""
    await page.wait_for_function("window.overlayStats.states > 0")
    await page.evaluate(
        """async () => {
            await document.fonts.ready;
            for (let i = 0; i < 2; i += 1) await new Promise(requestAnimationFrame);
        }"""
    )


async def check(page: Page, name: str, selector: str) -> None:
    png = await page.locator(selector).screenshot(
        animations="disabled", caret="hide", mask=[page.locator(".on-stream")]
    )
    path = REFERENCES / f"{name}.png"
    if UPDATE:
        REFERENCES.mkdir(exist_ok=True)
        path.write_bytes(png)
        return
    assert path.exists(), (
        f"no reference {path}: write it with CHARLES_UPDATE_VISUALS=1, review it and commit it"
    )
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert shot.shape == reference.shape, (
        f"{name}: size {shot.shape} != reference {reference.shape}"
    )
    off = (np.abs(shot.astype(np.int16) - reference).max(axis=-1) > CHANNEL_TOLERANCE).mean()
    actual = Path(tempfile.gettempdir()) / f"charles-visual-{name}.png"
    if off > PIXEL_SHARE:
        cv2.imwrite(str(actual), shot)
    assert off <= PIXEL_SHARE, (
        f"{name}: {off:.2%} of pixels differ (limit {PIXEL_SHARE:.1%}); this run's is {actual}"
    )


@pytest.mark.parametrize("tile", list(TILES))
async def test_each_tile_looks_as_reviewed(page, tile):
    spec = TILES[tile]
    state = recorded_state()
    async with overlay_hub(state) as (hub, _):
        add_loss_curve(state)
        await page.set_viewport_size({"width": spec.width, "height": spec.height})
        await page.goto(
            f"http://127.0.0.1:{hub.port}/overlay/{tile}"
            f"?width={spec.width}&height={spec.height}&alert_s=120"
        )
        await painted(page)
        if tile in ("camera", "hood", "convcam"):
            await page.wait_for_function("window.overlayStats.frames.some((count) => count > 0)")
        if tile == "alerts":
            await page.wait_for_function("document.querySelectorAll('.alert').length === 2")
        if tile == "loss":
            await chart_drawn(page)
        await check(page, f"tile-{tile}", f".tile-{tile}")


async def test_the_full_layout_looks_as_reviewed(page):
    state = recorded_state()
    async with overlay_hub(state) as (hub, _):
        add_loss_curve(state)
        await page.set_viewport_size({"width": 1920, "height": 1080})
        await page.goto(f"http://127.0.0.1:{hub.port}/overlay/?alert_s=120")
        await page.wait_for_function("window.overlayStats.frames.every((count) => count > 0)")
        await page.wait_for_function("document.querySelectorAll('.alert').length === 2")
        await chart_drawn(page)
        await painted(page)
        await check(page, "layout", "#overlay")
