"""Benchmark the overlay push: frame latency into a real browser, and the app's CPU per page.

    .venv/bin/python bench/overlay.py [--seconds 8] [--clients 1,10]
    .venv/bin/python bench/overlay.py --layout [--seconds 8]

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

`--layout` (issue 16) measures instead what a stream's whole screen costs:
the server also feeds the state the full layout shows, from the app's own
message types at a running stream's rates (`DriverStatus` with stage times
and the Convcam caption at 4 Hz, `TrainerStatus` at 2 Hz, an unstuck `Alert`
every 5 s, a checkpoint event line every 10 s, a chat command every 3 s,
processes, links and nodes), Convcam mosaics shaped for their tile, and the
control dock (`ControlDock` with real `StreamActions` and chat `Router` on a
scratch data directory). In turn: no page; one /overlay/camera page; that
page plus the full layout `/overlay/` (1920x1080) and `/control` in an
OBS dock's size, signed in through the one-time link the server prints, as
the app does. Per phase: state->paint of the chase camera on the camera page
(and on the layout page's main tile, stamped by the same overlay.js), the
app's CPU, whether every page stayed free of page and console errors, and a
bare relay's 1-page p95 as the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright

from bot.commands import Router
from bot.messages import ChatMessage
from engine.app.actions import StreamActions
from engine.app.control import ControlDock
from engine.app.hub import Hub
from engine.core.config import ChatConfig, HubConfig, OverlayConfig, SimConfig
from engine.core.store import (
    AppState,
    ConnectionChanged,
    NodesChanged,
    Noted,
    ProcessChanged,
    ProcessState,
    Received,
    VersionStreamed,
)
from engine.core.wire import Alert, DriverStatus, Frames
from engine.data.frames import encode_frame
from engine.driver.convcam import OVERLAY_ASPECT, render_convcam
from engine.sim.game import Controls, Game
from overlays.server import FRAME_HEADER, OverlayServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.driver_helpers import create_version  # a registered version, no TensorFlow
from tests.overlay_helpers import (  # chromium launched as the tests launch it
    CHROMIUM_FLAGS,
    STAGES,
    trainer_status,
)

FPS = 30.0
DISTINCT_FRAMES = 30
JPEG_QUALITY = 80  # [driver] jpeg_quality
TARGET_P95_MS = 20.0
CHASE_CAMERA = 2
BENCH_TOKEN = "bench-token"
# --layout: the stand-in stream's rates (the driver's default status_hz; a demo line's trainer
# logging every 20 batches; the young model, stuck every 5 s).
STATUS_HZ = 4.0
TRAINER_EVERY = 2  # status ticks per TrainerStatus
UNSTUCK_EVERY = 20
CHECKPOINT_EVERY = 40
CHAT_EVERY = 12
CAMERA_VIEWPORT = {"width": 1280, "height": 720}
LAYOUT_VIEWPORT = {"width": 1920, "height": 1080}
DOCK_VIEWPORT = {"width": 320, "height": 700}  # an OBS custom browser dock
# The demo line's Convcam ("convcam", 64 maps of 9x16) shaped for its 16:9 tile, as the driver
# renders it now.
DEMO_CONVCAM_LAYER = "convcam"
DEMO_CONVCAM_MAPS = (9, 16, 64)
PAINTS_KEPT = 2000  # overlay.js LATENCY_KEPT
LAYOUT_MAX_SECONDS = 20.0  # three cameras at FPS within PAINTS_KEPT
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
    parser.add_argument(
        "--layout",
        action="store_true",
        help="instead: camera page, then camera + full layout + control dock, with a fed stream",
    )
    parser.add_argument("--serve", choices=("overlay", "layout", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)  # --serve layout: scratch data dir
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error(f"--seconds {args.seconds:g} is not accepted; accepted: more than 0")
    if args.serve:
        asyncio.run(_serve(args.serve, args.data))
        return 0
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is needed: apt-get install chromium", file=sys.stderr)
        return 2
    if args.layout and args.seconds > LAYOUT_MAX_SECONDS:
        parser.error(
            f"--seconds {args.seconds:g} is too long for --layout; accepted: up to "
            f"{LAYOUT_MAX_SECONDS:g} (the layout page keeps its newest {PAINTS_KEPT} paints of "
            "three cameras: overlay.js LATENCY_KEPT)"
        )
    if args.layout:
        layout = asyncio.run(_measure_layout_case(chromium, args.seconds))
        _report_layout(layout, args.seconds)
        return 0 if layout["layout"]["healthy"] else 1
    counts = [int(count) for count in args.clients.split(",")]
    results = asyncio.run(_measure(chromium, counts, args.seconds))
    _report(results, counts, args.seconds)
    return 0


# -- the server process -------------------------------------------------------------------


async def _serve(mode: str, data_dir: str | None) -> None:
    """Serve pages and push 30 fps until killed; print the port, answer /bench/* for the parent.

    `layout`: also the control dock and the rest of a stream's state; a second line printed
    is the dock's one-time sign-in path.
    """
    # The driver shapes its Convcam for the tile now; the plain case keeps its square mosaic.
    frames = _game_frames(OVERLAY_ASPECT, DEMO_CONVCAM_MAPS) if mode == "layout" else _game_frames()
    state = AppState()
    landed: dict[int, float] = {}  # sequence number of a chase frame -> ms it landed in the state
    bare_pages: set[web.WebSocketResponse] = set()
    overlays = OverlayServer(OverlayConfig(), state)
    once_path = ""
    stand_in: asyncio.Task[None] | None = None
    if mode == "overlay":
        state.apply(VersionStreamed("model_0000_demo_v1", "2026-11-20T10:00:00+00:00"))
        app = Hub(HubConfig(host="127.0.0.1", port=0), BENCH_TOKEN, state).app
        overlays.add_routes(app)
    elif mode == "layout":
        if data_dir is None:
            raise SystemExit("--serve layout needs --data DIR (a scratch data directory)")
        hub = Hub(HubConfig(host="127.0.0.1", port=0), BENCH_TOKEN, state)
        app = hub.app
        overlays.add_routes(app)
        # Wired as the app wires them (engine/app/app.py), on a scratch data directory.
        actions = StreamActions(data_dir, state, hub)
        hub.set_action_handler(actions)
        router = Router(ChatConfig(), actions)
        dock = ControlDock(BENCH_TOKEN, actions, loss=overlays.feed.loss, chat=router)
        dock.add_routes(app)
        await actions.switch(create_version(Path(data_dir)), user="app")
        once_path = dock.once_url("")
        stand_in = asyncio.create_task(_stand_in_stream(state, router), name="stand-in stream")
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
    if once_path:
        print(once_path, flush=True)

    loop = asyncio.get_running_loop()
    start = loop.time()
    published, landed_ms = 0, 0.0
    for index in range(10**9):
        await asyncio.sleep(max(0.0, start + index / FPS - loop.time()))
        hood, convcam, chase = frames[index % len(frames)]
        if stand_in is not None and stand_in.done():
            stand_in.result()  # the stand-in stream failed: say why instead of measuring less
        if mode != "bare":
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


async def _stand_in_stream(state: AppState, router: Router) -> None:
    """What a running stream tells the app besides frames, as the hub and supervisor apply it.

    The app's own message and event types at STATUS_HZ: the driver's status (predictions,
    stage times, the Convcam caption), the trainer's report, unstucks, checkpoints and a
    viewer's chat command now and then, so the consoles, alerts and the dock all change.
    """
    version = state.version
    state.apply(ConnectionChanged("obs", "connected (OBS 30.2.3, replay buffer on)"))
    state.apply(ConnectionChanged("twitch", "connected to #charles as charles_bot"))
    nodes = {"collector_0": "collector", "trainer": "trainer", "driver": "driver"}
    state.apply(NodesChanged(nodes, "driver (driver) connected from 127.0.0.1:41234"))
    for pid, name in enumerate(nodes, start=4100):
        state.apply(ProcessChanged(ProcessState(name, "running", pid=pid, since=time.time())))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for tick in range(10**9):
        await asyncio.sleep(max(0.0, start + tick / STATUS_HZ - loop.time()))
        batch = 1000 + tick * 5
        # The driver drives with the newest checkpoint (it loads new weights as they come).
        loaded = 1000 + tick // CHECKPOINT_EVERY * CHECKPOINT_EVERY * 5
        steering = float(np.sin(tick / 7.0)) * 0.4
        driver = DriverStatus(
            version=version,
            batch=loaded,
            predictions={"steering": steering, "throttle_brake": 0.75},
            pad={"steering": steering, "throttle_brake": 0.75},
            fps=FPS,
            pps=29.6,
            unstucks=tick // UNSTUCK_EVERY,
            distance_m=tick * 2.5,
            stages=STAGES,
            convcam_layers=(DEMO_CONVCAM_LAYER,),
            convcam_kernels=DEMO_CONVCAM_MAPS[-1],
        )
        state.apply(Received(driver, "driver"))
        if tick % TRAINER_EVERY == 0:
            report = trainer_status(batch, 20.0 / batch, version)
            state.apply(Received(report, "trainer"))
        if tick % UNSTUCK_EVERY == UNSTUCK_EVERY - 1:
            action = "respawn elsewhere on the track"
            text = f"Stuck (moved 0.0 m in 5.0 s): {action}"
            state.apply(Received(Alert(kind="unstuck", text=text), "driver"))
        if tick and tick % CHECKPOINT_EVERY == 0:
            state.apply(Noted(f"trainer: checkpoint saved at batch {loaded:,}"))
        if tick % CHAT_EVERY == 0:
            viewer = f"viewer{tick // CHAT_EVERY % 5}"
            await router.handle(ChatMessage(user=viewer, text="!model", user_id=viewer))


def _game_frames(
    aspect: float = 1.0, maps: tuple[int, int, int] = (9, 15, 256)
) -> list[tuple[bytes, bytes, bytes]]:
    """Real frames of the built-in game driving along, and Convcam mosaics of `maps` (h, w, n)
    about `aspect` wide."""
    game = Game(SimConfig(seed=3))
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(DISTINCT_FRAMES):
        for _ in range(3):
            game.set_controls(Controls(steering=0.05, throttle_brake=0.7))
            game.tick()
        activations = rng.random(maps, dtype=np.float32)
        frames.append(
            (
                encode_frame(game.render_hood(), JPEG_QUALITY),
                encode_frame(render_convcam(activations, aspect=aspect), JPEG_QUALITY),
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


async def _measure_layout_case(chromium: str, seconds: float) -> dict[str, dict]:
    """--layout: the fed stream with no page, the camera page, then camera + layout + dock;
    then a bare relay's one page as the limit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-overlay-") as data_dir:
                layout = await _measure_layout(browser, data_dir, seconds)
            bare = await _measure_server(browser, "bare", [1], seconds)
        finally:
            await browser.close()
    return {"layout": layout, "bare": bare}


class _PageHealth:
    """What went wrong on one page while it was open: uncaught errors, console errors and
    HTTP answers of 400 or more; and how many /control/state polls were answered."""

    def __init__(self, page: Page, name: str) -> None:
        self.name = name
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.refused: list[str] = []
        self.polls = 0
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.refused.append(f"{response.status} {response.url}")
        elif response.url.endswith("/control/state"):
            self.polls += 1

    def summary(self, overlay_stats: dict | None) -> dict:
        """Counts for the report; overlay pages add their reconnects and undecodable frames."""
        problems = [*self.page_errors, *self.console_errors, *self.refused]
        summary = {
            "page_errors": len(self.page_errors),
            "console_errors": len(self.console_errors),
            "refused": len(self.refused),
            "first_problem": problems[0][:200] if problems else "",
        }
        if overlay_stats is not None:
            summary["connects"] = overlay_stats["connects"]
            summary["broken"] = overlay_stats["broken"]
        summary["healthy"] = not problems and summary.get("connects", 1) == 1
        summary["healthy"] = summary["healthy"] and not summary.get("broken", 0)
        return summary


async def _measure_layout(browser: Browser, data_dir: str, seconds: float) -> dict:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "layout", "--data", data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    contexts = []
    try:
        port = int(server.stdout.readline())
        once_path = server.stdout.readline().strip()
        base = f"http://127.0.0.1:{port}"
        outcome: dict = {"cpu": {}, "machine": {}}
        async with aiohttp.ClientSession() as session:
            outcome["cpu"]["none"], outcome["machine"]["none"] = await _busy(session, base, seconds)

            # CSP bypassed on the overlay pages only so Playwright can read their stats (it
            # evaluates strings); the dock keeps its policy, so a violation is a console error.
            camera_context = await browser.new_context(bypass_csp=True, viewport=CAMERA_VIEWPORT)
            contexts.append(camera_context)
            camera = await camera_context.new_page()
            health = {"camera": _PageHealth(camera, "camera")}
            await camera.goto(base + "/overlay/camera?width=1280&height=720")
            await _painting(camera)
            outcome["camera"] = await _layout_phase(session, base, seconds, {"camera": camera})

            layout_context = await browser.new_context(bypass_csp=True, viewport=LAYOUT_VIEWPORT)
            dock_context = await browser.new_context(viewport=DOCK_VIEWPORT)
            contexts += [layout_context, dock_context]
            layout = await layout_context.new_page()
            dock = await dock_context.new_page()
            health["layout"] = _PageHealth(layout, "layout")
            health["dock"] = _PageHealth(dock, "dock")
            await layout.goto(base + "/overlay/")
            await dock.goto(base + once_path)  # the one-time link: a session cookie, then /control
            await dock.locator("#on-stream").filter(has_text="on stream: ").wait_for()
            await _painting(layout)
            polls_before = health["dock"].polls
            outcome["all"] = await _layout_phase(
                session, base, seconds, {"camera": camera, "layout": layout}
            )
            outcome["all"]["dock_polls"] = health["dock"].polls - polls_before
            outcome["health"] = {
                "camera": health["camera"].summary(await _stats(camera)),
                "layout": health["layout"].summary(await _stats(layout)),
                "dock": health["dock"].summary(None),
            }
            outcome["healthy"] = all(page["healthy"] for page in outcome["health"].values())
        return outcome
    finally:
        for context in contexts:
            await context.close()
        server.terminate()
        server.wait()


async def _painting(page: Page) -> None:
    """Wait until an overlay page is online and painting the chase camera."""
    await page.wait_for_function(
        f"window.overlayStats.online && window.overlayStats.frames[{CHASE_CAMERA}] > 5"
    )


async def _layout_phase(
    session: aiohttp.ClientSession, base: str, seconds: float, pages: dict[str, Page]
) -> dict:
    """One measured phase: the app's CPU, the machine's, and each page's chase state->paint."""
    await asyncio.sleep(1.0)  # warm up, then measure from a clean slate
    states = {}
    for name, page in pages.items():
        await page.evaluate("window.overlayStats.paints.length = 0")
        states[name] = (await _stats(page))["states"]
    cpu, machine = await _busy(session, base, seconds)
    async with session.get(base + "/bench/landed") as response:
        landed = {int(seq): at for seq, at in (await response.json()).items()}
    phase: dict = {"cpu": cpu, "machine": machine, "pages": {}}
    for name, page in pages.items():
        latencies = _latencies(await _paints(page), landed, seconds * FPS)
        latencies["states"] = (await _stats(page))["states"] - states[name]
        phase["pages"][name] = latencies
    return phase


async def _busy(session: aiohttp.ClientSession, base: str, seconds: float) -> tuple[float, float]:
    """The app's CPU and the whole machine's, each in cores, over `seconds`."""
    machine_before = _machine_cpu_s()
    cpu = await _cpu_per_s(session, base, seconds)
    return cpu, (_machine_cpu_s() - machine_before) / seconds


async def _stats(page: Page) -> dict:
    return await page.evaluate(
        "({states: overlayStats.states, connects: overlayStats.connects, "
        "broken: overlayStats.broken})"
    )


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


def _report_layout(results: dict[str, dict], seconds: float) -> None:
    layout, bare = results["layout"], results["bare"][1]
    hood, convcam, chase = _game_frames(OVERLAY_ASPECT, DEMO_CONVCAM_MAPS)[0]
    print(
        f"--layout: frames chase 1280x720 ({len(chase) // 1024} kB) + hood 480x270 "
        f"({len(hood) // 1024} kB) + Convcam for a 16:9 tile ({len(convcam) // 1024} kB), "
        f"JPEG q{JPEG_QUALITY}, {FPS:g} fps; DriverStatus {STATUS_HZ:g} Hz, TrainerStatus "
        f"{STATUS_HZ / TRAINER_EVERY:g} Hz, an unstuck every {UNSTUCK_EVERY / STATUS_HZ:g} s, "
        f"a chat command every {CHAT_EVERY / STATUS_HZ:g} s; measured {seconds:g} s a phase"
    )
    print(
        f"{'pages open':<22} {'chase state->paint on':<22} {'frames':>9}  {'p50 ms':>7}  "
        f"{'p95 ms':>7}  {'/ 20 ms':>7}  {'/ bare':>6}  {'send->paint p50/p95':>19}"
    )
    limit = bare["send"]["p95"]
    rows = [
        ("camera", "camera page", layout["camera"]["pages"]["camera"]),
        ("camera+layout+dock", "camera page", layout["all"]["pages"]["camera"]),
        ("camera+layout+dock", "layout page main tile", layout["all"]["pages"]["layout"]),
    ]
    for phase, where, data in rows:
        shown = f"{data['frames']}/{data['expected']:.0f}"
        p50, p95 = data["state"]["p50"], data["state"]["p95"]
        send = f"{data['send']['p50']:.1f} / {data['send']['p95']:.1f}"
        print(
            f"{phase:<22} {where:<22} {shown:>9}  {p50:7.1f}  {p95:7.1f}  "
            f"{p95 / TARGET_P95_MS:7.2f}  {p95 / limit:6.2f}  {send:>19}"
        )
    shown = f"{bare['frames']}/{bare['expected']:.0f}"
    print(
        f"{'bare relay, 1 page':<22} {'(send->paint)':<22} {shown:>9}  "
        f"{bare['send']['p50']:7.1f}  {limit:7.1f}"
    )
    all_pages = layout["all"]
    print(
        f"state messages received in {seconds:g} s: camera page "
        f"{all_pages['pages']['camera']['states']}, layout page "
        f"{all_pages['pages']['layout']['states']}; dock polls answered: "
        f"{all_pages['dock_polls']}"
    )
    cpu = layout["cpu"] | {"camera": layout["camera"]["cpu"], "all": all_pages["cpu"]}
    machine = layout["machine"] | {
        "camera": layout["camera"]["machine"],
        "all": all_pages["machine"],
    }
    print(
        "app CPU (one core = 100 %): no page "
        f"{cpu['none'] * 100:.1f} %, camera {cpu['camera'] * 100:.1f} %, "
        f"camera+layout+dock {cpu['all'] * 100:.1f} %"
    )
    print(
        f"  serving the camera page costs {(cpu['camera'] - cpu['none']) * 100:.1f} % of a core; "
        f"the layout page and the dock on top {(cpu['all'] - cpu['camera']) * 100:.1f} %; "
        f"all three {(cpu['all'] - cpu['none']) * 100:.1f} %"
    )
    print(
        f"whole machine busy ({os.cpu_count()} cores = {os.cpu_count() * 100} %): no page "
        f"{machine['none'] * 100:.0f} %, camera {machine['camera'] * 100:.0f} %, "
        f"camera+layout+dock {machine['all'] * 100:.0f} %"
    )
    for name, health in layout["health"].items():
        extra = (
            f", {health['connects']} connect(s), {health['broken']} undecodable frames"
            if "connects" in health
            else ""
        )
        print(
            f"page {name}: {health['page_errors']} page errors, {health['console_errors']} "
            f"console errors, {health['refused']} HTTP refusals{extra}"
            + ("" if health["healthy"] else f"; NOT CLEAN: {health['first_problem']}")
        )
    print("every page error-free: " + ("yes" if layout["healthy"] else "NO"))


if __name__ == "__main__":
    sys.exit(main())
