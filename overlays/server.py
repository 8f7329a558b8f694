"""The overlay pages and their live push, served by the hub's aiohttp app.

Example::

    overlays = OverlayServer(config.overlay, state)
    overlays.add_routes(hub.app)     # before hub.start(); runs and stops with the hub
    # OBS browser sources open http://127.0.0.1:8765/overlay/ (everything) or /overlay/hood ...

Routes (read-only, no token: they show what the stream shows anyway):

- `/overlay/`: the whole 1920x1080 layout; `/overlay/<tile>` one tile per page
  (camera, hood, convcam, player, trainer, loss, model, alerts), each its own
  OBS browser source. Query parameters: `width`, `height`, `theme` (dark,
  light, clear), `smoothing` (loss chart, 0-0.999), `alert_s`.
- `/overlay/static/<file>`: the pages' plain JS and CSS (no build step).
- `/overlay/loss.json`: the streamed version's loss history.
- `/ws/overlay[?cameras=hood,convcam,chase]`: pushes a JSON state message
  (consoles, model, alerts, the newest loss points) when the app's state
  changed, at most `state_hz` times a second, and the hood, Convcam and chase JPEGs as binary
  messages as they arrive, at most `max_fps` per camera, only the cameras
  named (all without `cameras`; a tile page names its own, or none). Each
  frame starts with FRAME_HEADER: the camera, the wall-clock ms when the hub
  sent it and a per-camera sequence number. A client that sends anything is
  closed (1008): the pages only listen.

A slow client never holds up another or grows the app's memory: each client
has one slot per camera and one for the state, and a newer frame replaces the
one still waiting in its slot. The publisher subscribes to the app's state
and sleeps until new frames arrive, the state changes, a page connects or a
frame held back by `max_fps` is due; with no page open it sends nothing (the
loss history follows the state's events by itself, see `overlays.feed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from engine.core.config import OverlayConfig
from engine.core.store import AppState, Event, Received, encode_json
from engine.core.web import SECURITY_HEADERS
from engine.core.wire import Frames
from overlays.feed import OverlayFeed
from overlays.layout import TILES, layout_json

log = logging.getLogger("charles.overlays")

# Camera index, wall-clock milliseconds at send, per-camera sequence number; the JPEG follows.
FRAME_HEADER = struct.Struct("<BdI")
# Index -> the Frames field it carries (the "camera" tile shows "chase").
CAMERAS = ("hood", "convcam", "chase")
# The max_fps limit lets this many frames through back to back (jitter of a steady source).
BURST_FRAMES = 2.0
HEARTBEAT_S = 10.0
# Pages send nothing; a few bytes of slack for pings and close frames.
MAX_INCOMING_BYTES = 1024
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
STATIC_DIR = Path(__file__).with_name("static")
PAGE_TEMPLATE = "page.html"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
STATIC_FILES = frozenset(path.name for path in STATIC_DIR.iterdir() if path.suffix in STATIC_TYPES)


class OverlayServer:
    """Serves the overlay pages and pushes state and camera frames to every open page."""

    def __init__(self, config: OverlayConfig, state: AppState) -> None:
        self.config = config
        self.state = state
        self.feed = OverlayFeed(state, loss_points=config.loss_points)
        self.clients: set[OverlayClient] = set()
        self._page_index = _page(tile="", config=config)
        self._page_tiles = {name: _page(tile=name, config=config) for name in TILES}
        self._state_text: str | None = None
        self._newest_frames: Frames | None = None  # the Frames object last looked at
        self._waiting: dict[int, bytes] = {}  # camera -> newest JPEG not yet sent (rate cap)
        self._credit = [BURST_FRAMES] * len(CAMERAS)  # frames each camera may send now
        self._credit_at = [0.0] * len(CAMERAS)
        self._sequence = [0] * len(CAMERAS)
        self._latest_jpeg: dict[int, bytes] = {}
        # Set when there may be something to send: new frames or state, or a page connected.
        self._wake = asyncio.Event()
        self._state_changed = False  # since the last state message went out
        state.subscribe(self._on_event)
        self._publisher: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        """Add the pages and /ws/overlay to the hub's app; the publisher runs while it serves."""
        app.router.add_get("/overlay", self._redirect)
        app.router.add_get("/overlay/", self._index)
        app.router.add_get("/overlay/loss.json", self._loss)
        app.router.add_get("/overlay/static/{name}", self._static)
        app.router.add_get("/overlay/{tile}", self._tile)
        app.router.add_get("/ws/overlay", self._socket)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    # -- pages ---------------------------------------------------------------------------

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/overlay/")

    async def _index(self, request: web.Request) -> web.Response:
        return _html(self._page_index)

    async def _tile(self, request: web.Request) -> web.Response:
        name = request.match_info["tile"]
        page = self._page_tiles.get(name)
        if page is None:
            accepted = ", ".join(TILES)
            return web.Response(
                status=404, text=f"no overlay tile {name[:40]!r}; tiles: {accepted}\n"
            )
        return _html(page)

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:  # an allow-list: no path ever reaches the file system
            return web.Response(status=404, text=f"no overlay file {name[:40]!r}\n")
        path = STATIC_DIR / name
        return web.Response(
            body=path.read_bytes(),
            content_type=STATIC_TYPES[path.suffix],
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    async def _loss(self, request: web.Request) -> web.Response:
        return web.Response(
            text=encode_json(self.feed.loss.as_json()),
            content_type="application/json",
            headers=SECURITY_HEADERS,
        )

    # -- the push ------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if len(self.clients) >= self.config.max_clients:
            log.warning(
                "refused an overlay page from %s: %d already open ([overlay] max_clients)",
                request.remote,
                len(self.clients),
            )
            return web.Response(
                status=503,
                text=f"{len(self.clients)} overlay pages are open; [overlay] max_clients = "
                f"{self.config.max_clients}\n",
            )
        try:
            cameras = _cameras(request.query.get("cameras"))
        except ValueError as error:
            return web.Response(status=400, text=f"{error}\n")
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S, compress=False, max_msg_size=MAX_INCOMING_BYTES
        )
        await ws.prepare(request)
        client = OverlayClient(ws, request.transport, cameras)
        self.clients.add(client)
        self._welcome(client)
        self._wake.set()
        log.info("overlay page connected from %s (%d open)", request.remote, len(self.clients))
        try:
            async for message in ws:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    log.warning("closed overlay page %s: it sent data", request.remote)
                    await client.close(POLICY_VIOLATION, "overlay connections are read-only")
                    break
        finally:
            self.clients.discard(client)
            await client.close(GOING_AWAY, "")
            log.info("overlay page %s left (%d open)", request.remote, len(self.clients))
        return ws

    def sent_frames(self) -> dict[str, int]:
        """How many frames of each camera went out to the pages (the newest one's number)."""
        return dict(zip(CAMERAS, self._sequence, strict=True))

    def _welcome(self, client: OverlayClient) -> None:
        hello = {"type": "hello", "server_ms": time.time() * 1000, "max_fps": self.config.max_fps}
        client.offer_hello(encode_json(hello))
        if self._state_text is None:
            self._state_text = encode_json(self.feed.state_message())
        client.offer_state(self._state_text)
        now_ms = time.time() * 1000
        for camera, jpeg in self._latest_jpeg.items():
            client.offer_frame(camera, _packet(camera, now_ms, self._sequence[camera], jpeg))
        client.start()

    async def _on_startup(self, app: web.Application) -> None:
        self._publisher = asyncio.create_task(self._publish(), name="overlay-publisher")

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
        for client in list(self.clients):
            await client.close(GOING_AWAY, "hub stopping")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Received) and isinstance(event.message, Frames):
            self._wake.set()
            return
        if self.clients:
            self._state_changed = True
            self._wake.set()
        else:
            self._state_text = None  # the next page to connect gets a fresh one

    async def _publish(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.state_hz
        next_state = loop.time()
        while True:
            self._wake.clear()  # before looking: whatever comes in meanwhile wakes the wait
            now = loop.time()
            timeout: float | None = None
            if self.clients:
                self._publish_frames(now)
                if self._state_changed and now >= next_state:
                    next_state = now + period
                    self._state_changed = False
                    self._publish_state()
                if self._state_changed:
                    timeout = max(0.0, next_state - loop.time())  # at most state_hz
                if self._waiting:
                    held = 1.0 / self.config.max_fps  # a frame held back by max_fps
                    timeout = held if timeout is None else min(timeout, held)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _publish_state(self) -> None:
        text = encode_json(self.feed.state_message())
        if text == self._state_text:
            return
        self._state_text = text
        for client in self.clients:
            client.offer_state(text)

    def _publish_frames(self, now: float) -> None:
        frames = self.state.frames
        if frames is not None and frames is not self._newest_frames:
            self._newest_frames = frames
            for camera, field in enumerate(CAMERAS):
                jpeg = getattr(frames, field)
                if jpeg and jpeg != self._latest_jpeg.get(camera):
                    self._waiting[camera] = jpeg
        for camera, jpeg in list(self._waiting.items()):
            # A token bucket, not "one period after the last send": frames arriving at about
            # max_fps then go out at once, whatever their phase, and faster ones are thinned.
            self._credit[camera] = min(
                BURST_FRAMES,
                self._credit[camera] + (now - self._credit_at[camera]) * self.config.max_fps,
            )
            self._credit_at[camera] = now
            if self._credit[camera] < 1.0:
                continue  # over max_fps: the newest waits, older ones are dropped
            self._credit[camera] -= 1.0
            del self._waiting[camera]
            self._sequence[camera] += 1
            self._latest_jpeg[camera] = jpeg
            packet = _packet(camera, time.time() * 1000, self._sequence[camera], jpeg)
            for client in self.clients:
                client.offer_frame(camera, packet)


class OverlayClient:
    """One open page: a slot per camera and one for the state, written by its own task.

    A newer offer replaces what is still waiting in its slot, so a slow page
    gets the newest frame late rather than every frame ever later.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        cameras: frozenset[int],
    ) -> None:
        self.ws = ws
        self.cameras = cameras  # the camera indices this page shows
        self.replaced = 0  # frames and states dropped for a newer one before they were sent
        self._transport = transport
        self._hello: str | None = None
        self._state: str | None = None
        self._frames: dict[int, bytes] = {}
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """What this page costs the app right now: its slots plus the socket's send buffer."""
        waiting = sum(len(packet) for packet in self._frames.values()) + len(self._state or "")
        sending = 0
        if isinstance(self._transport, asyncio.WriteTransport) and not self._transport.is_closing():
            sending = self._transport.get_write_buffer_size()
        return waiting + sending

    def start(self) -> None:
        """Start sending what is offered."""
        self._writer = asyncio.create_task(self._write(), name="overlay-send")

    def offer_hello(self, text: str) -> None:
        """The greeting, sent before anything else."""
        self._hello = text
        self._ready.set()

    def offer_state(self, text: str) -> None:
        """The newest state message (replaces one not yet sent)."""
        if self._state is not None:
            self.replaced += 1
        self._state = text
        self._ready.set()

    def offer_frame(self, camera: int, packet: bytes) -> None:
        """The newest frame of one camera (replaces one not yet sent); others are not sent."""
        if camera not in self.cameras:
            return
        if camera in self._frames:
            self.replaced += 1
        self._frames[camera] = packet
        self._ready.set()

    async def close(self, code: int, reason: str) -> None:
        """Stop sending and close the socket."""
        self._closed = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=code, message=reason.encode())

    async def _write(self) -> None:
        while not self._closed:
            await self._ready.wait()
            self._ready.clear()
            try:
                # The state first: it is small and tells the page what the frames belong to.
                for text in self._take_texts():
                    await self.ws.send_str(text)
                while self._frames:
                    camera = next(iter(self._frames))
                    await self.ws.send_bytes(self._frames.pop(camera))
            except (ConnectionError, RuntimeError) as error:
                log.info("sending to an overlay page failed: %r", error)
                return

    def _take_texts(self) -> list[str]:
        texts = [text for text in (self._hello, self._state) if text is not None]
        self._hello = self._state = None
        return texts


def _cameras(query: str | None) -> frozenset[int]:
    """The camera indices a page asks for: `?cameras=hood,chase`; all without the parameter."""
    if query is None:
        return frozenset(range(len(CAMERAS)))
    names = [name for name in query.split(",") if name]
    unknown = [name for name in names if name not in CAMERAS]
    if unknown:
        raise ValueError(
            f"cameras={query[:60]!r} names {unknown[0][:20]!r}; accepted: {', '.join(CAMERAS)} "
            "(comma-separated; empty for none)"
        )
    return frozenset(CAMERAS.index(name) for name in names)


def _packet(camera: int, sent_ms: float, sequence: int, jpeg: bytes) -> bytes:
    return FRAME_HEADER.pack(camera, sent_ms, sequence) + jpeg


def _page(*, tile: str, config: OverlayConfig) -> str:
    # One template for the full layout (tile "") and every tile. The layout and what the
    # pages read of [overlay] ride in non-executed JSON script blocks; "<" is escaped so no
    # text in them can close the block.
    text = (STATIC_DIR / PAGE_TEMPLATE).read_text(encoding="utf-8")
    layout_text = json.dumps(layout_json()).replace("<", "\\u003c")
    config_text = json.dumps(page_config(config)).replace("<", "\\u003c")
    return (
        text.replace("{{TILE}}", tile)
        .replace("{{LAYOUT}}", layout_text)
        .replace("{{CONFIG}}", config_text)
    )


def page_config(config: OverlayConfig) -> dict[str, float]:
    """What the pages read of [overlay]: the alerts' time on screen, coalescing and share."""
    return {
        "alert_s": config.alert_s,
        "alert_coalesce_s": config.alert_coalesce_s,
        "alert_share": config.alert_share,
    }


def _html(page: str) -> web.Response:
    return web.Response(text=page, content_type="text/html", headers=SECURITY_HEADERS)
