"""The overlay pages in a real browser (Debian's chromium through Playwright) against a real hub.

Pages are loaded with the CSP bypassed, so a page that rendered chat text as
HTML would run the payload: the text-only rendering is tested on its own, not
hidden behind the Content-Security-Policy (tested in test_overlay_server.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import statistics

import aiohttp
import pytest

from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.core.config import OverlayConfig
from engine.core.store import AppState, NodesChanged, Noted, Received, VersionStreamed
from engine.core.wire import DRIVER_STAGES, DriverStatus, Frames
from overlays.layout import TILES
from tests.hub_helpers import AUTH
from tests.overlay_helpers import (
    CHASE_BGR,
    CONVCAM_BGR,
    ELSEWHERE,
    HOOD_BGR,
    STAGES,
    VERSION,
    canvas_pixel,
    coloured_pixels,
    joined_from_other_pcs,
    live_state,
    near,
    needs_chromium,
    overlay_hub,
    solid_jpeg,
    trainer_status,
)

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module"), pytest.mark.browser]

TOTAL_LOSS_RGB = (0xFF, 0x70, 0x43)  # the chart's first colour: the total loss
XSS_PAYLOADS = (
    "<script>window.__xss = 1</script>",
    '<img src="x" onerror="window.__xss = 1">',
    '<svg onload="window.__xss = 1"></svg>',
)


def url(hub: Hub, path: str) -> str:
    return f"http://127.0.0.1:{hub.port}{path}"


@pytest.mark.parametrize(
    ("tile", "text"),
    [
        ("player", "0.300"),  # the steering prediction
        ("trainer", "1,180"),  # batches trained
        ("model", VERSION),
        ("alerts", "Charles went for a swim"),
    ],
)
async def test_console_model_and_alert_pages_show_live_data(page, tile, text):
    async with overlay_hub(live_state()) as (hub, _):
        await page.goto(url(hub, f"/overlay/{tile}?width=600&height=360"))
        await page.wait_for_function(
            f"document.querySelector('.tile-{tile}').textContent.includes({json.dumps(text)})"
        )


async def test_player_tile_shows_every_stage_time_inside_the_tile_at_its_layout_size(page):
    player = TILES["player"]
    state = live_state()
    # The most rows a driver sends: a line with three heads, and the pad as the driver reports it.
    busiest = DriverStatus(
        version=VERSION,
        batch=500,
        predictions={"steering": 0.3, "acceleration": 0.8, "braking": 0.1},
        pad={"steering": 0.25, "left_trigger": 0.0, "right_trigger": 0.7},
        fps=30.0,
        pps=29.5,
        unstucks=2,
        distance_m=1234.0,
        stages=STAGES,
    )
    state.apply(Received(busiest, "driver"))
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, f"/overlay/player?width={player.width}&height={player.height}"))
        await page.wait_for_function(
            "document.querySelector('.stage-grid').textContent.includes('3.41 / 4.27')"
        )
        names = await page.locator(".stage-name").all_text_contents()
        values = await page.locator(".stage-value").all_text_contents()
        geometry = await page.evaluate(
            """() => {
                const tile = document.querySelector('.tile-player').getBoundingClientRect();
                const cells = [...document.querySelectorAll('.stage-name, .stage-value')];
                return {
                    tileBottom: tile.bottom,
                    tileRight: tile.right,
                    lowest: Math.max(...cells.map((cell) => cell.getBoundingClientRect().bottom)),
                    rightmost: Math.max(...cells.map((cell) => cell.getBoundingClientRect().right)),
                    lines: new Set(cells.map((cell) => cell.getBoundingClientRect().top)).size,
                    clipped: cells.filter((cell) => cell.scrollWidth > cell.clientWidth).length,
                    fontPx: parseFloat(getComputedStyle(cells[0]).fontSize),
                };
            }"""
        )
    assert names == [stage.replace("_", " ") for stage in DRIVER_STAGES]
    # p50 / p95 in ms, three significant figures at most.
    assert dict(zip(names, values, strict=True)) == {
        "capture wait": "28.4 / 31.9",
        "preprocess": "0.04 / 0.07",
        "predict": "3.41 / 4.27",
        "translate": "0.01 / 0.02",
        "controller": "0.03 / 0.05",
        "convcam": "0.52 / 0.81",
        "watch": "0.02 / 0.04",
        "report": "0.21 / 6.35",
    }
    # Readable on stream: two stages a line, all inside the tile below the Player rows, none cut.
    assert geometry["lines"] == len(DRIVER_STAGES) // 2
    assert geometry["lowest"] <= geometry["tileBottom"]
    assert geometry["rightmost"] <= geometry["tileRight"]
    assert geometry["clipped"] == 0
    assert geometry["fontPx"] >= 14


async def test_player_tile_shows_no_stage_times_before_the_driver_timed_a_turn(page):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        state.apply(Received(DriverStatus(version=VERSION, pps=1.5), "driver"))
        await page.goto(url(hub, "/overlay/player?width=560&height=360"))
        await page.wait_for_function(
            "document.querySelector('.tile-player').textContent.includes('1.5')"
        )
        assert await page.locator(".stages").is_hidden()


@pytest.mark.parametrize(
    ("tile", "camera", "bgr"),
    [("camera", 2, CHASE_BGR), ("hood", 0, HOOD_BGR), ("convcam", 1, CONVCAM_BGR)],
)
async def test_camera_pages_draw_their_camera(page, tile, camera, bgr):
    async with overlay_hub(live_state()) as (hub, _):
        await page.goto(url(hub, f"/overlay/{tile}?width=640&height=360"))
        await page.wait_for_function(f"window.overlayStats.frames[{camera}] > 0")
        assert near(await canvas_pixel(page, ".camera-canvas", 0.5, 0.5), bgr)


async def test_a_camera_says_no_signal_while_the_driver_is_disconnected(page):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/hood"))
        await page.wait_for_function("window.overlayStats.frames[0] > 0")
        assert await page.text_content(".camera-status") == ""
        state.apply(NodesChanged({"trainer": "trainer"}, "driver (driver) disconnected"))
        await page.wait_for_function(
            "document.querySelector('.camera-status').textContent === 'no signal'"
        )


async def test_loss_page_draws_the_chart_of_the_history(page):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        for batch in range(20, 1200, 20):
            state.apply(Received(trainer_status(batch, 1.0 / batch), "trainer"))
        await page.goto(url(hub, "/overlay/loss?width=760&height=360"))
        await page.wait_for_function(
            "document.querySelector('.legend').textContent.includes('total')"
        )
        await page.wait_for_timeout(100)  # the chart draws on the next animation frame
        assert await coloured_pixels(page, ".loss-canvas", TOTAL_LOSS_RGB) > 100


async def test_full_layout_shows_every_camera_the_model_and_the_chart(page):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        for batch in range(20, 400, 20):
            state.apply(Received(trainer_status(batch, 1.0 / batch), "trainer"))
        await page.goto(url(hub, "/overlay/"))
        await page.wait_for_function("window.overlayStats.frames.every((count) => count > 0)")
        await page.wait_for_timeout(100)
        for tile, bgr in (("camera", CHASE_BGR), ("hood", HOOD_BGR), ("convcam", CONVCAM_BGR)):
            assert near(await canvas_pixel(page, f".tile-{tile} canvas", 0.5, 0.5), bgr), tile
        label = await page.text_content(".tile-model")
        assert VERSION in label
        assert "created 2026-11-20" in label
        assert await coloured_pixels(page, ".loss-canvas", TOTAL_LOSS_RGB) > 100


async def test_model_label_follows_a_switch(page):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/model"))
        await page.wait_for_function(f"document.body.textContent.includes('{VERSION}')")
        state.apply(VersionStreamed("model_0003_xception_v2"))
        await page.wait_for_function(
            "document.querySelector('.model-name').textContent === 'model_0003_xception_v2'"
        )


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
async def test_chat_text_in_a_tag_shows_as_text_never_as_html(page, tmp_path, payload):
    state = live_state()
    async with overlay_hub(state) as (hub, _):
        hub.set_action_handler(StreamActions(tmp_path, state, hub))
        await page.goto(url(hub, "/overlay/"))
        await page.wait_for_function("window.overlayStats.states > 0")
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.post(url(hub, "/api/tag"), json={"text": f"look {payload}"}) as response,
        ):
            assert response.status == 200
        await page.wait_for_function(
            f"document.querySelector('.alerts').textContent.includes({json.dumps(payload)})"
        )
        await page.wait_for_timeout(200)  # time for an injected handler to fire
        assert (
            await page.evaluate(
                "document.querySelectorAll('#overlay img, #overlay svg, #overlay script').length"
            )
            == 0
        )
        assert await page.evaluate("window.__xss") is None


async def test_node_names_in_console_events_show_as_text(page):
    state = live_state()
    payload = XSS_PAYLOADS[1]
    state.apply(Noted(f"{payload} (collector) connected"))
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/trainer"))
        await page.wait_for_function(
            f"document.querySelector('.events').textContent.includes({json.dumps(payload)})"
        )
        await page.wait_for_timeout(200)
        assert await page.evaluate("document.querySelectorAll('#overlay img').length") == 0
        assert await page.evaluate("window.__xss") is None


async def test_the_trainer_console_names_the_other_pcs_that_joined(page):
    state = live_state()
    state.apply(joined_from_other_pcs())
    expected = " \u00b7 ".join(f"{name} {where}" for name, where in ELSEWHERE.items())
    async with overlay_hub(state) as (hub, _):
        await page.goto(url(hub, "/overlay/trainer"))
        await page.wait_for_function(
            "document.querySelector('.tile-trainer').textContent.includes("
            f"{json.dumps('other PCs' + expected)})"
        )


async def test_page_shows_offline_and_reconnects_after_the_hub_restarts(page):
    port = _free_port()
    async with overlay_hub(live_state(), port=port) as (hub, _):
        await page.goto(url(hub, "/overlay/"))
        await page.wait_for_function(
            "window.overlayStats.online && window.overlayStats.frames[2] > 0"
        )
    await page.wait_for_function("document.body.classList.contains('offline')")
    assert await page.is_visible("#offline")
    restarted = live_state()
    restarted.apply(VersionStreamed("model_0003_xception_v1"))
    async with overlay_hub(restarted, port=port):
        await page.wait_for_function(
            "window.overlayStats.connects === 2 && !document.body.classList.contains('offline')",
            timeout=10_000,
        )
        await page.wait_for_function(
            "document.querySelector('.model-name').textContent === 'model_0003_xception_v1'"
        )
        assert not await page.is_visible("#offline")


async def test_loss_smoothing_is_tensorboards(page):
    values = [1.0, 0.8, None, 0.9, 0.5, 0.4, 0.45, 0.3]
    async with overlay_hub(AppState()) as (hub, _):
        await page.goto(url(hub, "/overlay/loss"))
        smoothed = await page.evaluate(
            "async (values) => (await import('/overlay/static/chart.js')).smooth(values, 0.6)",
            values,
        )
    assert smoothed == pytest.approx(_tensorboard_smoothing(values, 0.6), nan_ok=True)


async def test_frames_reach_the_page_within_tens_of_milliseconds(page):
    state = AppState()
    frames = 60
    async with overlay_hub(state, config=OverlayConfig(max_fps=30.0)) as (hub, _):
        await page.goto(url(hub, "/overlay/camera?width=1280&height=720"))
        await page.wait_for_function("window.overlayStats.online")
        for index in range(frames):
            # Distinct images: the publisher sends a camera's frame only when it changed.
            frames_now = Frames(chase=solid_jpeg((index * 4 % 256, 0, 0), 1280, 720))
            state.apply(Received(frames_now, "driver"))
            await asyncio.sleep(1 / 30)
        await page.wait_for_function(f"window.overlayStats.frames[2] >= {frames - 2}")
        paints = await page.evaluate("window.overlayStats.paints")
    latencies = [painted - sent for camera, _, sent, painted in paints if camera == 2]
    p95 = statistics.quantiles(latencies, n=20)[-1]
    p50 = statistics.median(latencies)
    print(f"hub-send to paint, 1280x720 JPEG on loopback: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    # The target is 20 ms (bench/overlay.py measures it); two busy shared cores get slack.
    assert p95 < 150


def _tensorboard_smoothing(values: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard's vz_line_chart2 smoothing, written out again in Python."""
    last, count, out = 0.0, 0, []
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(None)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight**count))
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
