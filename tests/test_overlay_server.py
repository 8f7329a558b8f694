"""The overlay routes and /ws/overlay push, spoken to with plain HTTP and websocket clients."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct

import aiohttp
import pytest

from engine.core.config import OverlayConfig
from engine.core.store import AppState, Received
from engine.core.wire import Frames
from overlays.server import FRAME_HEADER
from tests.hub_helpers import wait_until
from tests.overlay_helpers import live_state, overlay_hub, trainer_status

FRAME_BYTES = 256 * 1024
TEXT = aiohttp.WSMsgType.TEXT
BINARY = aiohttp.WSMsgType.BINARY
# Only ends a hung test: a passing one never waits this long, however busy the machine.
WAIT_S = 60.0


async def test_a_new_page_gets_the_state_and_the_newest_frame_of_every_camera():
    state = live_state()
    async with (
        overlay_hub(state) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay") as ws,
    ):
        hello = await ws.receive_json(timeout=WAIT_S)
        first_state = await ws.receive_json(timeout=WAIT_S)
        frames = {}
        while len(frames) < 3:
            message = await ws.receive(timeout=WAIT_S)
            camera, _, _ = FRAME_HEADER.unpack_from(message.data)
            frames[camera] = message.data[FRAME_HEADER.size :]
    assert hello["type"] == "hello"
    assert first_state["model"]["version"] == state.version
    assert first_state["trainer"]["batch"] == 1180
    assert frames == {0: state.frames.hood, 1: state.frames.convcam, 2: state.frames.chase}


async def test_a_page_gets_only_the_cameras_it_names():
    async with (
        overlay_hub(live_state()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay?cameras=hood") as ws,
    ):
        messages = [await ws.receive(timeout=WAIT_S)]
        while messages[-1].type is not BINARY:  # the hello and the state come first
            messages.append(await ws.receive(timeout=WAIT_S))
        # Whatever else was already sent: the other cameras' frames would have come with it.
        while (message := await _next(ws, timeout=0.3)) is not None:
            messages.append(message)
    cameras = [FRAME_HEADER.unpack_from(m.data)[0] for m in messages if m.type is BINARY]
    assert cameras == [0]


async def test_an_unknown_camera_is_refused_naming_the_cameras():
    async with (
        overlay_hub(AppState()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{hub.port}/ws/overlay?cameras=hood,webcam") as response,
    ):
        text = await response.text()
    assert response.status == 400
    assert "'webcam'" in text
    assert "hood, convcam, chase" in text


async def test_a_slow_page_gets_the_newest_frame_and_costs_bounded_memory():
    state = AppState()
    frames = 60
    async with overlay_hub(state, config=OverlayConfig(max_fps=60.0)) as (hub, server):
        reader, writer = await _stalled_websocket(hub.port)
        await wait_until(lambda: len(server.clients) == 1)
        (client,) = server.clients
        peak = 0
        for index in range(frames):
            state.apply(Received(Frames(chase=bytes([index]) * FRAME_BYTES), "driver"))
            await asyncio.sleep(1 / 50)
            peak = max(peak, client.buffered_bytes)
        # 15 MB were published; a queue per page would hold most of them.
        assert peak < 2 * 1024 * 1024
        assert client.replaced > frames // 3
        received = await _read_until_chase_frame(reader, sequence=frames)
        writer.close()
    assert received[-1] == bytes([frames - 1]) * FRAME_BYTES
    assert len(received) < frames * 2 // 3


async def test_frames_are_pushed_at_most_max_fps():
    state = AppState()
    async with (
        overlay_hub(state, config=OverlayConfig(max_fps=10.0)) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay") as ws,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(50):  # 100 frames a second for half a second
            state.apply(Received(Frames(hood=bytes([index]) * 1000), "driver"))
            await asyncio.sleep(0.01)
        elapsed = loop.time() - started
        await asyncio.sleep(0.15)
        binary = 0
        while (message := await _next(ws)) is not None:
            binary += message.type is BINARY
    assert 2 <= binary <= math.ceil(elapsed * 10) + 2


async def test_overlay_connections_are_read_only():
    async with (
        overlay_hub(live_state()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay") as ws,
    ):
        await ws.send_str('{"type": "switch", "model": "model_0003_xception"}')
        while not ws.closed:
            await ws.receive(timeout=WAIT_S)
    assert ws.close_code == 1008


async def test_pages_beyond_max_clients_are_refused():
    async with (
        overlay_hub(AppState(), config=OverlayConfig(max_clients=1)) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay"),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay")
    assert refused.value.status == 503


async def test_a_diverged_loss_reaches_the_pages_as_null():
    state = live_state()
    state.apply(Received(trainer_status(1200, math.nan), "trainer"))
    async with (
        overlay_hub(state) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay") as ws,
    ):
        await ws.receive_json(timeout=WAIT_S)  # hello
        message = await ws.receive(timeout=WAIT_S)
    loss = json.loads(message.data)["trainer"]["loss"]  # strict JSON: NaN would not parse in a page
    assert loss["total"] is None


async def test_two_trainer_reports_between_two_pushes_are_both_loss_points():
    state = live_state()
    async with (
        overlay_hub(state, config=OverlayConfig(state_hz=1.0)) as (hub, _),
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{hub.port}/ws/overlay?cameras=") as ws,
    ):
        await ws.receive_json(timeout=WAIT_S)  # hello
        await ws.receive_json(timeout=WAIT_S)  # the state as the page connected
        state.apply(Received(trainer_status(1181, 0.04), "trainer"))
        state.apply(Received(trainer_status(1182, 0.03), "trainer"))  # the same moment
        pushed = await ws.receive_json(timeout=WAIT_S)
        async with session.get(f"http://127.0.0.1:{hub.port}/overlay/loss.json") as response:
            curve = await response.json()
    assert [point[1] for point in pushed["loss"]["tail"]] == [1180, 1181, 1182]
    assert [point[1] for point in curve["points"]] == [1180, 1181, 1182]


async def test_an_unknown_tile_is_404_naming_the_tiles():
    async with (
        overlay_hub(AppState()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{hub.port}/overlay/webcam") as response,
    ):
        text = await response.text()
    assert response.status == 404
    assert "'webcam'" in text
    assert "camera, hood, convcam, player, trainer, loss, model, alerts" in text


@pytest.mark.parametrize(
    "path", ["/overlay/static/..%2F..%2Fengine%2Fconfig.py", "/overlay/static/page.html"]
)
async def test_static_route_serves_only_the_pages_scripts_and_styles(path):
    async with (
        overlay_hub(AppState()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{hub.port}{path}") as response,
    ):
        assert response.status == 404


@pytest.mark.parametrize("path", ["/overlay/", "/overlay/alerts", "/overlay/static/tiles.js"])
async def test_pages_and_scripts_forbid_inline_and_foreign_scripts(path):
    async with (
        overlay_hub(AppState()) as (hub, _),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{hub.port}{path}") as response,
    ):
        policy = response.headers["Content-Security-Policy"]
        assert response.status == 200
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def _stalled_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket that stops reading after the handshake (its socket buffer is tiny)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /ws/overlay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101")
    return reader, writer


async def _read_until_chase_frame(reader: asyncio.StreamReader, sequence: int) -> list[bytes]:
    """Read the stalled socket now; every chase JPEG until the one numbered `sequence`."""
    received = []
    while True:
        opcode, payload = await asyncio.wait_for(_read_websocket_frame(reader), WAIT_S)
        if opcode == 2:
            camera, _, number = FRAME_HEADER.unpack_from(payload)
            received.append(payload[FRAME_HEADER.size :])
            if camera == 2 and number == sequence:
                return received


async def _read_websocket_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    # Server frames are unmasked and unfragmented (RFC 6455 section 5.2).
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack(">Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def _next(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = 0.05
) -> aiohttp.WSMessage | None:
    """The next message, or None when none comes within `timeout` seconds."""
    try:
        return await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
