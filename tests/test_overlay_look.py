"""How the overlay looks to a viewer (issue 16): in Debian's chromium against a real hub.

The Convcam fills its tile with a caption, camera letterboxes are never see-through,
alerts coalesce and stay within their share of the main camera, consoles never overflow
and speak words, and the main tile explains a stream that has no model driving yet.
"""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest
from playwright.async_api import Page

from engine.core.config import OverlayConfig
from engine.core.store import AlertRaised, AppState, NodesChanged, Noted, Received
from engine.core.wire import Alert, BufferFill, DriverStatus, TrainerStatus
from overlays.layout import TILES
from tests.overlay_helpers import (
    VERSION,
    live_state,
    needs_chromium,
    overlay_hub,
)

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]


def url(hub, path: str) -> str:
    return f"http://127.0.0.1:{hub.port}{path}"


def with_driver(state: AppState, **changes) -> AppState:
    """The state with the driver's status changed as given (one more report from it)."""
    driver = msgspec.structs.replace(state.snapshot().driver, **changes)
    state.apply(Received(driver, "driver"))
    return state


async def screenshot_rgba(page: Page, selector: str) -> np.ndarray:
    """The element as the page paints it, transparent where nothing is drawn (RGBA)."""
    # Transitions finished: a tile fades in from the "offline" dimming as the page connects.
    png = await page.locator(selector).screenshot(omit_background=True, animations="disabled")
    bgra = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


async def test_convcam_caption_names_the_layer_and_its_kernels(page):
    state = with_driver(live_state(), convcam_layers=("block_13_expand",), convcam_kernels=1536)
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/convcam?width=640&height=360"))
        await page.wait_for_function(
            "document.querySelector('.caption').textContent"
            " === 'Convcam \\u00b7 block_13_expand \\u00b7 1,536 kernels'"
        )


async def test_two_backbones_are_named_in_the_caption(page):
    state = with_driver(live_state(), convcam_layers=("a_conv", "b_conv"), convcam_kernels=4096)
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/convcam?width=640&height=360"))
        await page.wait_for_function(
            "document.querySelector('.caption').textContent.includes('a_conv + b_conv')"
        )


@pytest.mark.parametrize("tile", ["convcam", "hood", "camera"])
async def test_a_camera_letterbox_is_dark_never_see_through(page, tile):
    # live_state's Convcam is square and its hood 16:9 in a 640x480 page: both letterboxed.
    async with overlay_hub(live_state()) as (hub, _):
        await page.goto(url(hub, f"/overlay/{tile}?width=640&height=480"))
        await page.wait_for_function("window.overlayStats.frames.some((count) => count > 0)")
        pixels = await screenshot_rgba(page, f".tile-{tile}")
    corner = pixels[2, 2]
    assert corner[3] == 255, "the letterbox is transparent: a capture may show it white"
    assert max(corner[:3]) < 40


UNSTUCK = "Stuck (moved 0.0 m in 5.0 s): respawn elsewhere on the track"


async def alerts_page(page: Page, hub) -> None:
    alerts = TILES["alerts"]
    await page.goto(
        url(hub, f"/overlay/alerts?width={alerts.width}&height={alerts.height}&alert_s=60")
    )
    await page.wait_for_function("window.overlayStats.states > 0")


async def test_the_same_alert_again_is_one_card_with_a_count(page):
    state = AppState()
    async with overlay_hub(state) as (hub, _):
        await alerts_page(page, hub)
        for _ in range(3):
            state.apply(AlertRaised(Alert(kind="unstuck", text=UNSTUCK)))
        await page.wait_for_function(
            "document.querySelector('.alert-count')?.textContent === '\u00d73'"
        )
        assert await page.locator(".alert").count() == 1
        assert await page.text_content(".alert-text") == UNSTUCK


async def test_with_coalescing_off_every_alert_is_its_own_card(page):
    state = AppState()
    async with overlay_hub(state, config=OverlayConfig(alert_coalesce_s=0)) as (hub, _):
        await alerts_page(page, hub)
        # Raised one state message apart: a window of 0 joins none of them.
        for count in range(1, 3):
            state.apply(AlertRaised(Alert(kind="unstuck", text=UNSTUCK)))
            await page.wait_for_function(f"document.querySelectorAll('.alert').length === {count}")
        assert await page.locator(".alert-count").all_text_contents() == ["", ""]


async def test_alerts_stay_within_their_share_and_a_chat_tag_outranks_unstucks(page):
    state = AppState()
    config = OverlayConfig(alert_share=0.15)
    camera = TILES["camera"]
    async with overlay_hub(state, config=config) as (hub, _):
        await alerts_page(page, hub)
        state.apply(AlertRaised(Alert(kind="moment", text="viewer42: Charles went for a swim")))
        for index in range(8):
            state.apply(AlertRaised(Alert(kind="unstuck", text=f"{UNSTUCK} #{index}")))
        await page.wait_for_function("document.querySelector('.alerts').textContent.includes('#7')")
        cards = await page.evaluate(
            """() => [...document.querySelectorAll('.alert')].map((card) => ({
                kind: card.className,
                area: card.offsetWidth * card.offsetHeight,
                bottom: card.offsetTop + card.offsetHeight,
            }))"""
        )
    kinds = [card["kind"].split()[-1] for card in cards]
    assert kinds[0] == "alert-moment"  # first, above the newer unstucks
    assert 2 <= len(cards) < 9
    assert sum(card["area"] for card in cards) <= 0.15 * camera.width * camera.height
    assert max(card["bottom"] for card in cards) <= TILES["alerts"].height


def waiting_for_data(fill: int = 1786) -> TrainerStatus:
    """The trainer before its first batch: the buffer fills towards what it needs to start."""
    return TrainerStatus(
        version=VERSION,
        status="waiting_for_data",
        buffers={"steering": BufferFill(fill=fill, capacity=5000, needed=1800)},
    )


async def test_trainer_console_speaks_words_not_identifiers(page):
    state = live_state()
    state.apply(Received(waiting_for_data(), "trainer"))
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/trainer?width=600&height=360"))
        await page.wait_for_function(
            "document.querySelector('.tile-trainer').textContent"
            ".includes('waiting for data: 1,786 / 1,800 samples')"
        )
        assert "waiting_for_data" not in await page.text_content(".tile-trainer")


async def test_trainer_console_shows_the_weights_the_car_drives_with_and_their_lag(page):
    # live_state: the driver drives batch 500 of the version the trainer is at batch 1,180 of.
    async with overlay_hub(live_state()) as (hub, _):
        await page.goto(url(hub, "/overlay/trainer?width=600&height=360"))
        await page.wait_for_function(
            "document.querySelector('.weights').textContent === "
            "'driving batch 500, trainer at 1,180: new weights at the next reload'"
        )


async def test_trainer_console_shows_the_time_on_stream(page):
    async with overlay_hub(live_state()) as (hub, server):
        server.feed.started_ms -= 3725_000  # the app started streaming 1 h 2 min 5 s ago
        await page.goto(url(hub, "/overlay/trainer?width=600&height=360"))
        await page.wait_for_function(
            "document.querySelector('.on-stream').textContent.startsWith('on stream 1:02:0')"
        )


async def test_trainer_console_never_overflows_and_the_newest_event_stays(page):
    state = live_state()
    trainer = TILES["trainer"]
    async with overlay_hub(state) as (hub, _):
        for index in range(12):
            state.apply(
                Noted(f"event {index}: collector (collector) connected from 10.0.0.{index}")
            )
        await page.goto(url(hub, f"/overlay/trainer?width={trainer.width}&height={trainer.height}"))
        await page.wait_for_function(
            "document.querySelector('.events').textContent.includes('event 11:')"
        )
        geometry = await page.evaluate(
            """() => {
                const tile = document.querySelector('.tile-trainer').getBoundingClientRect();
                const events = document.querySelector('.events').getBoundingClientRect();
                const lines = [...document.querySelectorAll('.event')];
                const newest = lines[lines.length - 1].getBoundingClientRect();
                const parts = [...document.querySelectorAll('.row, .weights, .events')];
                return {
                    tileBottom: tile.bottom,
                    eventsTop: events.top,
                    newest: [newest.top, newest.bottom, lines[lines.length - 1].textContent],
                    lowest: Math.max(...parts.map((part) => part.getBoundingClientRect().bottom)),
                    hiddenAbove: lines.filter(
                        (line) => line.getBoundingClientRect().top < events.top - 1).length,
                };
            }"""
        )
    top, bottom, text = geometry["newest"]
    assert text.startswith("event 11:")
    assert geometry["eventsTop"] <= top and bottom <= geometry["tileBottom"]
    assert geometry["lowest"] <= geometry["tileBottom"]
    assert geometry["hiddenAbove"] > 0  # the oldest left over the top, not the newest below


async def test_first_run_view_counts_the_samples_to_go_until_a_model_drives(page):
    state = AppState()
    state.apply(Received(waiting_for_data(), "trainer"))
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/camera?width=1280&height=720"))
        await page.wait_for_function(
            "document.querySelector('.first-run-line').textContent === "
            "'collecting driving examples: 1,786 / 1,800 samples, 14 to go before training starts'"
        )
        assert await page.is_visible(".first-run")
        state.apply(NodesChanged({"driver": "driver"}, "driver (driver) connected"))
        state.apply(Received(DriverStatus(version=VERSION), "driver"))
        await page.wait_for_function("document.querySelector('.first-run').hidden")
