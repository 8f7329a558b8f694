"""A real hub on a free port, and the clients the hub and node tests speak to it with."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import msgspec

from engine.app.hub import Hub
from engine.core.actions import Action
from engine.core.config import HubConfig
from engine.core.store import AppState
from engine.core.wire import Hello, Role, SampleSets, encode
from engine.data.samples import SampleSet
from tests.data_helpers import make_sample

TOKEN = "test-hub-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def running_hub(
    *,
    port: int = 0,
    max_message_mb: float = 8.0,
    on_action: Callable[[Action], Awaitable[dict]] | None = None,
    state: AppState | None = None,
) -> AsyncIterator[Hub]:
    """A started hub on 127.0.0.1 (any free port unless given), stopped afterwards."""
    hub = Hub(
        HubConfig(host="127.0.0.1", port=port, max_message_mb=max_message_mb),
        TOKEN,
        state or AppState(),
        on_action,
    )
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@contextlib.asynccontextmanager
async def node_socket(
    hub: Hub, role: Role | None, name: str = "node"
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A websocket to the hub with the token; says Hello as `role` unless role is None."""
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.ws_connect(hub.url()) as ws,
    ):
        if role is not None:
            await ws.send_bytes(encode(Hello(role=role, name=name)))
        yield ws


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for something another task or thread makes true (there is no event to await).

    The timeout only ends a test that would otherwise hang: a passing test never
    waits for it, and a busy 2-core machine may need many seconds (a reconnect's
    backoff, a process start).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def small_sets(number: int) -> SampleSets:
    """A one-sample set told apart from others by its `time` (= number)."""
    sample = make_sample({"steering": 0.0, "throttle_brake": 0.5}, jpeg=b"\xff\xd8jpeg")
    marked = msgspec.structs.replace(sample, time=float(number))
    return SampleSets(sets=(SampleSet(output="steering", samples=(marked,)),))


async def raw_exchange(port: int, frames: bytes, token: str = TOKEN) -> int | None:
    """Open a websocket by hand, send `frames` with the handshake, return the close code.

    A hand-written RFC 6455 client sends a few thousand connections a second
    (aiohttp's client a third of that) and can send frames a library refuses
    to build. None means the hub dropped the connection without a close frame.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_handshake(port, token) + frames)
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status[:80]
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        body = await reader.readexactly(length)
        if head[0] & 0x0F != 0x8:
            raise AssertionError(f"expected a close frame, got opcode {head[0] & 0x0F}")
        return struct.unpack("!H", body[:2])[0] if len(body) >= 2 else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    finally:
        writer.close()


def ws_frame(payload: bytes, opcode: int = 0x2, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame (RFC 6455 5.2); rsv/fin/opcode may be set to invalid values."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    repeated = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return head + mask + masked


def _handshake(port: int, token: str) -> bytes:
    return (
        f"GET /ws/node HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
