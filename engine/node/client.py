"""A node process's connection to the hub, usable from synchronous code.

Example::

    client = NodeClient.from_environment("collector", "collector-0", on_message=inbox.put)
    client.start()                       # connect + Hello; NodeError if the hub is not there
    client.send(SampleSets(sets=...))    # from any thread, never blocks
    ...
    if client.lost.is_set():             # the hub is gone for good: the node exits
        ...
    client.close()

The client runs its own thread with its own asyncio event loop, so the node's
work (a game loop, a training step) never waits for the network. While the hub
restarts, the client reconnects with backoff and keeps what it was asked to
send; of a type the services table marks `replaceable` (frames, statuses)
only the newest waits. When it cannot reconnect for `give_up_s` it sets
`lost`. A 401 and a hub of another protocol version are final: retrying
would not fix the token or the installed version.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import aiohttp

from engine.core.errors import CharlesError, ProtocolError
from engine.core.services import PROTOCOL_VERSION, SERVICES
from engine.core.wire import Hello, Message, Role, decode, encode, message_type

HUB_URL_ENV = "CHARLES_HUB_URL"
HUB_TOKEN_ENV = "CHARLES_HUB_TOKEN"

# How a hub's close reason starts when it refuses this node's protocol version
# (engine.core.services.version_problem).
VERSION_REFUSAL = "node speaks protocol"
# The hub only forwards messages it accepted under its own limit (at most 256 MB by config).
MAX_INCOMING_BYTES = 256 * 1024 * 1024
# Statuses and sample sets wait this long in memory while the hub restarts; beyond it the
# oldest go, so a node whose hub is gone cannot grow without bound.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
HEARTBEAT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
FIRST_RETRY_S = 0.05
LONGEST_RETRY_S = 1.0

log = logging.getLogger(__name__)


class NodeError(CharlesError):
    """The hub refused this node (wrong token) or could not be reached: exit 1, restart later."""

    exit_code = 1


class NodeClient:
    """A process's connection to the hub, for synchronous code: runs its own thread + event loop.

    `on_message` runs on the client's thread: keep it quick (hand work to the
    node's own thread through a queue).
    """

    def __init__(
        self,
        url: str,
        token: str,
        hello: Hello,
        on_message: Callable[[Message], None] | None = None,
        *,
        give_up_s: float = 10.0,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise NodeError(f"hub URL {url!r} is not accepted: use ws://HOST:PORT/ws/node")
        self.url = url
        self.name = hello.name
        self.lost = threading.Event()
        self._token = token
        self._hello_bytes = encode(hello)
        decode(self._hello_bytes)  # a bad role or name fails here, naming the field
        self._on_message = on_message
        self._give_up_s = give_up_s
        self._outbox = _Outbox(max_backlog_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._settled = threading.Condition()
        self._connected = False
        self._ever_connected = False
        self._finished = False
        self._closing = False
        self._error: NodeError | None = None
        self._failing_since: float | None = None

    @classmethod
    def from_environment(
        cls,
        role: Role,
        name: str,
        on_message: Callable[[Message], None] | None = None,
    ) -> NodeClient:
        """The client described by the environment: the app sets it for its children.

        A remote node's operator sets the same two variables by hand.
        """
        values = {}
        for variable, what in (
            (HUB_URL_ENV, "ws://HUB_HOST:PORT/ws/node"),
            (HUB_TOKEN_ENV, "the content of <data_dir>/secrets/hub_token on the hub's machine"),
        ):
            value = os.environ.get(variable, "")
            if not value:
                raise NodeError(
                    f"{variable} is not set: the app sets it for the processes it starts; "
                    f"a remote node sets it to {what}"
                )
            values[variable] = value
        hello = Hello(role=role, name=name, pid=os.getpid(), protocol=PROTOCOL_VERSION)
        return cls(values[HUB_URL_ENV], values[HUB_TOKEN_ENV], hello, on_message)

    def start(self, timeout: float = 30.0) -> None:
        """Connect and say Hello; raise NodeError if that does not happen within `timeout` s."""
        if self._thread is not None:
            raise RuntimeError(f"NodeClient {self.name!r} was already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"hub-link-{self.name}", daemon=True
        )
        self._thread.start()
        with self._settled:
            self._settled.wait_for(lambda: self._connected or self._finished, timeout)
            connected = self._connected
        if not connected:
            self.close(timeout=0.0)
            raise self._error or NodeError(
                f"could not connect to the hub at {self.url} within {timeout:g} s"
            )

    @property
    def connected(self) -> bool:
        """Whether the link to the hub is up now (messages sent meanwhile wait in the outbox)."""
        return self._connected

    def send(self, message: Message) -> None:
        """Queue a message for the hub; thread-safe and never blocks.

        A message of a `replaceable` type (services table) is replaced by a
        newer one of its type while it waits, so a slow link shows the newest
        picture and status instead of falling behind. After `lost` or
        `close`, messages are dropped: the node is on its way out.
        """
        if self._closing or self.lost.is_set():
            return
        kind = message_type(message)
        replaceable = SERVICES[kind].replaceable
        dropped = self._outbox.put(encode(message), kind=kind if replaceable else None)
        if dropped:
            log.warning(
                "hub link of %s is backed up: dropped %d old message(s) (%d so far)",
                self.name,
                dropped,
                self._outbox.dropped,
            )
        self._wake_writer()

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (for up to `timeout` seconds while connected), then disconnect."""
        self._closing = True
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._begin_close, timeout)
        if threading.current_thread() is not self._thread:  # on_message may call close()
            self._thread.join(timeout + 2.0)

    # -- the client's thread ------------------------------------------------------------

    def _run_loop(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()
            with self._settled:
                self._connected = False
                self._finished = True
                self._settled.notify_all()

    async def _main(self) -> None:
        self._main_task = asyncio.current_task()
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with contextlib.suppress(asyncio.CancelledError):
                await self._keep_connected(session)

    async def _keep_connected(self, session: aiohttp.ClientSession) -> None:
        retry_s = FIRST_RETRY_S
        while not self._closing:
            try:
                await self._one_connection(session)
                retry_s = FIRST_RETRY_S
                if self._error is not None:  # the hub refused this node's protocol version
                    log.error("%s", self._error)
                    self.lost.set()
                    return
            except aiohttp.WSServerHandshakeError as error:
                if error.status == 401:
                    self._error = NodeError(
                        f"the hub at {self.url} refused the token (401): set {HUB_TOKEN_ENV} to "
                        "the content of <data_dir>/secrets/hub_token on the hub's machine"
                    )
                    log.error("%s", self._error)
                    self.lost.set()
                    return
                log.warning("hub at %s refused the connection: %s", self.url, error)
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                log.debug("hub at %s not reachable: %r", self.url, error)
            self._set_connected(False)
            if self._closing:
                return
            if self._ever_connected:
                now = time.monotonic()
                self._failing_since = self._failing_since or now
                if now - self._failing_since >= self._give_up_s:
                    log.error(
                        "hub at %s unreachable for %.1f s: giving up", self.url, self._give_up_s
                    )
                    self.lost.set()
                    return
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, LONGEST_RETRY_S)

    async def _one_connection(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self.url,
            headers={"Authorization": f"Bearer {self._token}"},
            max_msg_size=MAX_INCOMING_BYTES,
            heartbeat=HEARTBEAT_S,
            compress=0,  # JPEG bytes do not compress; deflate would only cost CPU
        ) as ws:
            await ws.send_bytes(self._hello_bytes)
            self._failing_since = None
            self._ever_connected = True
            self._set_connected(True)
            log.info("%s connected to the hub at %s", self.name, self.url)
            writer = asyncio.create_task(self._write(ws))
            try:
                await self._read(ws)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            received = await ws.receive()
            if received.type is aiohttp.WSMsgType.BINARY:
                self._deliver(received.data)
            elif received.type is aiohttp.WSMsgType.CLOSE:
                if (received.extra or "").startswith(VERSION_REFUSAL):
                    self._error = NodeError(
                        f"the hub at {self.url} refused {self.name}: {received.extra}"
                    )
                    return
                level = logging.INFO if received.data in (1000, 1001) else logging.WARNING
                log.log(
                    level,
                    "hub closed the link of %s: %s %s",
                    self.name,
                    received.data,
                    received.extra or "",
                )
                return
            elif received.type is aiohttp.WSMsgType.ERROR:
                log.warning("hub link of %s failed: %r", self.name, received.data)
                return
            elif received.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return
            else:
                log.warning(
                    "hub sent a %s frame; only binary messages are expected", received.type.name
                )

    def _deliver(self, data: bytes) -> None:
        try:
            message = decode(data)
        except ProtocolError as error:
            log.warning("%s ignored a message from the hub: %s", self.name, error)
            return
        if self._on_message is None:
            return
        try:
            self._on_message(message)
        except Exception:  # a broken handler must not cut the node off the hub
            log.exception("%s: on_message failed for a %s", self.name, type(message).__name__)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            data = self._outbox.take()
            if data is None:
                if self._closing:
                    await ws.close()
                    return
                self._wake.clear()
                if self._outbox.empty():
                    await self._wake.wait()
                continue
            try:
                await ws.send_bytes(data)
            except (aiohttp.ClientError, ConnectionError) as error:
                self._outbox.put_back(data)
                log.debug("hub link of %s broke while sending: %r", self.name, error)
                await ws.close()
                return

    def _begin_close(self, timeout: float) -> None:
        self._wake.set()
        if self._main_task is None or not self._connected:
            if self._main_task is not None:
                self._main_task.cancel()
            return
        assert self._loop is not None
        self._loop.call_later(timeout, self._main_task.cancel)

    def _set_connected(self, connected: bool) -> None:
        with self._settled:
            self._connected = connected
            self._settled.notify_all()

    def _wake_writer(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended (lost or closed)
            loop.call_soon_threadsafe(self._wake.set)


class _Outbox:
    """Encoded messages waiting for the link, shared between the node's threads and the client's.

    Messages wait in order, except replaceable ones: of each replaceable type
    only the newest waits, sent after the ordered ones.
    """

    def __init__(self, max_bytes: int) -> None:
        self.dropped = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._newest: dict[str, bytes] = {}

    def put(self, data: bytes, *, kind: str | None = None) -> int:
        """Queue `data` (the newest of `kind` when given); return how many old ones were dropped."""
        with self._lock:
            if kind is not None:
                self._newest.pop(kind, None)  # the newest goes last, behind other kinds
                self._newest[kind] = data
                return 0
            self._queue.append(data)
            self._queued_bytes += len(data)
            dropped = 0
            while self._queued_bytes > self._max_bytes and len(self._queue) > 1:
                self._queued_bytes -= len(self._queue.popleft())
                dropped += 1
            self.dropped += dropped
            return dropped

    def put_back(self, data: bytes) -> None:
        """Return a message whose send failed to the front, to go first on the next link."""
        with self._lock:
            self._queue.appendleft(data)
            self._queued_bytes += len(data)

    def take(self) -> bytes | None:
        """The next message to send, or None when nothing waits."""
        with self._lock:
            if self._queue:
                data = self._queue.popleft()
                self._queued_bytes -= len(data)
                return data
            if self._newest:
                kind = next(iter(self._newest))
                return self._newest.pop(kind)
            return None

    def empty(self) -> bool:
        """Whether nothing waits."""
        with self._lock:
            return not self._queue and not self._newest
