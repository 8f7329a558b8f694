"""Benchmark the overlay push: frame latency into a real browser, and the app's CPU per page.

    .venv/bin/python bench/overlay.py [--seconds 8] [--clients 1,10]

A server process runs the hub with the overlay routes (`OverlayServer`,
default [overlay] settings) and a stand-in driver in the same event loop that
applies real built-in-game frames to the app's state at 30 fps, exactly as
the hub does when the driver's `Frames` arrive: chase 1280x720, hood 480x270
and a Convcam mosaic, JPEG quality 80. Debian's chromium (Playwright, no
download) opens N pages of /overlay/camera (the chase camera, the largest
image). Per frame, the page's paint time (after decode and drawImage) minus:

- the time the frame was applied to the state ("state->paint": includes the
  publisher's wake-up), and
- the hub's send stamp in the frame header ("send->paint": the issue's
  "hub-send to browser-paint").

The limit measured in the same run is a bare relay: a plain aiohttp websocket
pushing the same JPEGs, the moment they are made, to a plain canvas page that
decodes and draws them the same way: what any page on this machine pays.
ratio = overlay p95 / bare p95. App CPU: the server process's CPU time per
second of wall time with 0 and N pages open (the stand-in driver included in
both; the difference is the cost of serving the pages).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from engine.app.hub import Hub
from engine.core.config import HubConfig, OverlayConfig, SimConfig
from engine.core.store import AppState, Received, VersionStreamed
from engine.core.wire import Frames
from engine.data.frames import encode_frame
from engine.driver.convcam import render_convcam
from engine.sim.game import Controls, Game
from overlays.server import FRAME_HEADER, OverlayServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.overlay_helpers import CHROMIUM_FLAGS  # chromium launched as the tests launch it

FPS = 30.0
DISTINCT_FRAMES = 30
JPEG_QUALITY = 80  # [driver] jpeg_quality
TARGET_P95_MS = 20.0
CHASE_CAMERA = 2
BARE_PAGE = """<!doctype html><html><body style="margin:0">
<canvas id="c" width="1280" height="720"></canvas>
<script>
const stats = { online: false, paints: [] };
window.overlayStats = stats;
const canvas = document.getElementById("c");
const context = canvas.getContext("2d");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
ws.onopen = () => { stats.online = true; };
// Like the overlay page, one decode at a time and only the newest frame waits: a page short of
// CPU drops frames instead of queueing them.
let busy = false, waiting = null;
async function show(data) {
  busy = true;
  const view = new DataView(data);
  const seq = view.getUint32(9, true), sentMs = view.getFloat64(1, true);
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(data, 13)]));
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  stats.paints.push([2, seq, sentMs, performance.timeOrigin + performance.now()]);
  busy = false;
  if (waiting) { const next = waiting; waiting = null; show(next); }
}
ws.onmessage = (event) => { if (busy) waiting = event.data; else show(event.data); };
</script></body></html>"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per case")
    parser.add_argument("--clients", default="1,10", help="page counts to measure, e.g. 1,10")
    parser.add_argument("--serve", choices=("overlay", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is needed: apt-get install chromium", file=sys.stderr)
        return 2
    counts = [int(count) for count in args.clients.split(",")]
    results = asyncio.run(_measure(chromium, counts, args.seconds))
    _report(results, counts, args.seconds)
    return 0


# -- the server process -------------------------------------------------------------------


async def _serve(mode: str) -> None:
    """Serve pages and push 30 fps until killed; print the port, answer /bench/* for the parent."""
    frames = _game_frames()
    state = AppState()
    state.apply(VersionStreamed("model_0000_demo_v1", "2026-11-20T10:00:00+00:00"))
    landed: dict[int, float] = {}  # sequence number of a chase frame -> ms it landed in the state
    bare_pages: set[web.WebSocketResponse] = set()
    overlays = OverlayServer(OverlayConfig(), state)
    if mode == "overlay":
        app = Hub(HubConfig(host="127.0.0.1", port=0), "bench-token", state).app
        overlays.add_routes(app)
    else:
        app = web.Application()

        async def bare_page(request: web.Request) -> web.Response:
            return web.Response(text=BARE_PAGE, content_type="text/html")

        async def bare_socket(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            bare_pages.add(ws)
            try:
                await ws.receive()  # the page only listens: wait for it to close
            finally:
                bare_pages.discard(ws)
            return ws

        app.router.add_get("/", bare_page)
        app.router.add_get("/ws", bare_socket)

    async def bench_landed(request: web.Request) -> web.Response:
        return web.json_response(landed)

    async def bench_cpu(request: web.Request) -> web.Response:
        return web.Response(text=str(time.process_time()))

    app.router.add_get("/bench/landed", bench_landed)
    app.router.add_get("/bench/cpu", bench_cpu)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)

    loop = asyncio.get_running_loop()
    start = loop.time()
    published, landed_ms = 0, 0.0
    for index in range(10**9):
        await asyncio.sleep(max(0.0, start + index / FPS - loop.time()))
        hood, convcam, chase = frames[index % len(frames)]
        if mode == "overlay":
            # The frame recorded a tick ago has been published by now: note when
            # it landed under the number the pages see.
            sent = overlays.sent_frames()["chase"]
            if sent == published + 1:
                landed[sent] = landed_ms
            published = sent
            state.apply(Received(Frames(hood=hood, convcam=convcam, chase=chase), "driver"))
            landed_ms = time.time() * 1000
        else:
            landed[index + 1] = time.time() * 1000
            packet = FRAME_HEADER.pack(CHASE_CAMERA, landed[index + 1], index + 1) + chase
            await asyncio.gather(*(page.send_bytes(packet) for page in list(bare_pages)))


def _game_frames() -> list[tuple[bytes, bytes, bytes]]:
    """Real frames of the built-in game driving along, and Convcam-like mosaics."""
    game = Game(SimConfig(seed=3))
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(DISTINCT_FRAMES):
        for _ in range(3):
            game.set_controls(Controls(steering=0.05, throttle_brake=0.7))
            game.tick()
        activations = rng.random((9, 15, 256), dtype=np.float32)
        frames.append(
            (
                encode_frame(game.render_hood(), JPEG_QUALITY),
                encode_frame(render_convcam(activations), JPEG_QUALITY),
                encode_frame(game.render_chase(), JPEG_QUALITY),
            )
        )
    return frames


# -- the measuring process ------------------------------------------------------------------


async def _measure(chromium: str, counts: list[int], seconds: float) -> dict[str, dict]:
    results: dict[str, dict] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            for mode in ("overlay", "bare"):
                results[mode] = await _measure_server(browser, mode, counts, seconds)
        finally:
            await browser.close()
    return results


async def _measure_server(browser: Browser, mode: str, counts: list[int], seconds: float) -> dict:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        path = "/overlay/camera?width=1280&height=720" if mode == "overlay" else "/"
        async with aiohttp.ClientSession() as session:
            outcome = {"cpu": {0: await _cpu_per_s(session, base, seconds / 2)}}
            for count in counts:
                # CSP bypassed only so Playwright can poll the pages' stats (it evaluates strings).
                context = await browser.new_context(
                    bypass_csp=True, viewport={"width": 1280, "height": 720}
                )
                pages = [await context.new_page() for _ in range(count)]
                for page in pages:
                    await page.goto(base + path)
                for page in pages:
                    await page.wait_for_function(
                        "window.overlayStats.online && window.overlayStats.paints.length > 5"
                    )
                await asyncio.sleep(1.0)  # warm up, then measure from a clean slate
                for page in pages:
                    await page.evaluate("window.overlayStats.paints.length = 0")
                machine_before = _machine_cpu_s()
                outcome["cpu"][count] = await _cpu_per_s(session, base, seconds)
                outcome.setdefault("machine", {})[count] = (
                    _machine_cpu_s() - machine_before
                ) / seconds
                paints = [paint for page in pages for paint in await _paints(page)]
                async with session.get(base + "/bench/landed") as response:
                    landed = {int(seq): at for seq, at in (await response.json()).items()}
                outcome[count] = _latencies(paints, landed, seconds * FPS * count)
                await context.close()
        return outcome
    finally:
        server.terminate()
        server.wait()


def _machine_cpu_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; Linux /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _cpu_per_s(session: aiohttp.ClientSession, base: str, seconds: float) -> float:
    async with session.get(base + "/bench/cpu") as response:
        before = float(await response.text())
    started = time.monotonic()
    await asyncio.sleep(seconds)
    async with session.get(base + "/bench/cpu") as response:
        after = float(await response.text())
    return (after - before) / (time.monotonic() - started)


async def _paints(page: Page) -> list[list[float]]:
    return await page.evaluate("window.overlayStats.paints")


def _latencies(paints: list[list[float]], landed: dict[int, float], expected: float) -> dict:
    chase = [paint for paint in paints if paint[0] == CHASE_CAMERA]
    send_to_paint = [painted - sent for _, _, sent, painted in chase]
    state_to_paint = [painted - landed[seq] for _, seq, _, painted in chase if seq in landed]
    return {
        "frames": len(chase),
        "expected": expected,
        "send": _quantiles(send_to_paint),
        "state": _quantiles(state_to_paint),
    }


def _quantiles(values: list[float]) -> dict[str, float]:
    if len(values) < 20:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": statistics.median(values), "p95": statistics.quantiles(values, n=20)[-1]}


def _report(results: dict[str, dict], counts: list[int], seconds: float) -> None:
    overlay, bare = results["overlay"], results["bare"]
    print(f"frames: chase 1280x720 + hood 480x270 + Convcam, JPEG q{JPEG_QUALITY}, {FPS:g} fps")
    hood, convcam, chase = _game_frames()[0]
    print(
        f"JPEG sizes: hood {len(hood) // 1024} kB, Convcam {len(convcam) // 1024} kB, "
        f"chase {len(chase) // 1024} kB"
    )
    print(f"{'pages':>5}  {'case':<22} {'frames':>9}  {'p50 ms':>7}  {'p95 ms':>7}")
    for count in counts:
        for label, data, key in (
            ("overlay state->paint", overlay[count], "state"),
            ("overlay send->paint", overlay[count], "send"),
            ("bare relay send->paint", bare[count], "send"),
        ):
            shown = f"{data['frames']}/{data['expected']:.0f}"
            p50, p95 = data[key]["p50"], data[key]["p95"]
            print(f"{count:>5}  {label:<22} {shown:>9}  {p50:7.1f}  {p95:7.1f}")
        p95, limit = overlay[count]["state"]["p95"], bare[count]["send"]["p95"]
        print(
            f"       ratio overlay state->paint p95 / bare p95 = {p95 / limit:.2f}"
            f"; against the {TARGET_P95_MS:g} ms target: {p95 / TARGET_P95_MS:.2f}"
        )
    cpu = overlay["cpu"]
    print(
        f"app CPU (one core = 100 %), measured {seconds:g} s: "
        + ", ".join(f"{count} pages {cpu[count] * 100:.1f} %" for count in [0, *counts])
    )
    print(
        f"whole machine busy ({os.cpu_count()} cores = {os.cpu_count() * 100} %), overlay runs: "
        + ", ".join(f"{count} pages {overlay['machine'][count] * 100:.0f} %" for count in counts)
    )
    for count in counts:
        print(
            f"  serving {count} pages costs {(cpu[count] - cpu[0]) * 100:.1f} % of a core "
            f"({(cpu[count] - cpu[0]) * 100 / count:.2f} % per page)"
        )


if __name__ == "__main__":
    sys.exit(main())
