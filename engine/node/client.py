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
`lost`. A 401, a hub of another protocol version and a hub certificate
other than the pinned one are final: retrying would not fix the token, the
installed version or the certificate.

Security: the token goes in plain `ws://` only to a loopback hub; a hub
beyond loopback is `wss://` and is trusted by the SHA-256 fingerprint of its
certificate (pinned by `charles-stream node`, engine/node/cli.py), checked
on every connection before the token is sent.

Loss: after each message the client sends a websocket ping numbered like
it; the hub answers a ping only after it has routed every message before it
(aiohttp answers pings in `receive()`, which the hub calls once per message
handled), so a pong confirms them. One sample set is in flight at a time
(`UNCONFIRMED_SETS`): the next set goes only once the hub's pong confirmed
the previous one. The set in flight, from its first byte until its pong,
is what a dropped link loses: at most one set per drop, counted in
`link_stats` (`sets_lost` + 1, `bytes_lost` + its encoded size) and never
sent again, so no set reaches the trainer twice; the count is an upper
bound, as the hub may have routed it just before the drop. Sets still
waiting for the link are kept and go on the next one; other messages cut
off midway go again too. Sets dropped because more than `max_backlog_bytes`
waited are counted as lost as well. The counters travel in the next Hello,
so the hub shows them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import msgspec

from engine.core.errors import CharlesError, ProtocolError
from engine.core.services import PROTOCOL_VERSION, SERVICES
from engine.core.tls import fingerprint_bytes, needs_tls, parse_fingerprint
from engine.core.wire import Hello, Message, Role, decode, encode, message_type

HUB_URL_ENV = "CHARLES_HUB_URL"
HUB_TOKEN_ENV = "CHARLES_HUB_TOKEN"
# The SHA-256 fingerprint a wss:// hub's certificate must have (set by `charles-stream node`).
HUB_FINGERPRINT_ENV = "CHARLES_HUB_FINGERPRINT"
# Seconds without a hub before the node gives up (default GIVE_UP_S; a remote node waits longer).
HUB_GIVE_UP_ENV = "CHARLES_HUB_GIVE_UP_S"
GIVE_UP_S = 10.0

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
# Sample sets in flight (being sent, or sent and not yet confirmed by the hub's pong): what a
# dropped link loses. One: the next set waits for the previous one's pong, so a drop costs at
# most one set (issue 17), at the price of the link idling for each pong's round trip.
UNCONFIRMED_SETS = 1
SETS = "sample_sets"

log = logging.getLogger(__name__)


class NodeError(CharlesError):
    """The hub refused this node (wrong token) or could not be reached: exit 1, restart later."""

    exit_code = 1


@dataclass(frozen=True)
class LinkStats:
    """What this node's link to the hub lost since the node started, and how often it dropped.

    `sets_lost`/`bytes_lost`: sample sets (and their encoded bytes) the hub
    never confirmed: in flight when a link dropped (at most UNCONFIRMED_SETS,
    one, each time; the hub may have routed it, so this is an upper bound) or
    dropped from a full backlog.
    """

    reconnects: int = 0
    sets_lost: int = 0
    bytes_lost: int = 0


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
        give_up_s: float = GIVE_UP_S,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
        fingerprint: str | None = None,
    ) -> None:
        self._ssl = _transport_security(url, fingerprint)
        self.url = url
        self.name = hello.name
        self.lost = threading.Event()
        self._token = token
        self._hello = hello
        decode(encode(hello))  # a bad role or name fails here, naming the field
        self._stats = LinkStats()
        self._stats_lock = threading.Lock()
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
        *,
        follows_chief: bool = False,
    ) -> NodeClient:
        """The client described by the environment: the app sets it for its children.

        `charles-stream node` (engine/node/cli.py) sets them on another
        machine, with the pinned fingerprint of a wss:// hub.
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
        hello = Hello(
            role=role,
            name=name,
            pid=os.getpid(),
            protocol=PROTOCOL_VERSION,
            host=socket.gethostname(),
            follows_chief=follows_chief,
        )
        give_up_s = os.environ.get(HUB_GIVE_UP_ENV, "")
        try:
            give_up = float(give_up_s) if give_up_s else GIVE_UP_S
        except ValueError:
            give_up = -1.0
        if not 0 < give_up < float("inf"):
            raise NodeError(
                f"{HUB_GIVE_UP_ENV} = {give_up_s!r} is not accepted; accepted: seconds above 0"
            )
        return cls(
            values[HUB_URL_ENV],
            values[HUB_TOKEN_ENV],
            hello,
            on_message,
            give_up_s=give_up,
            fingerprint=os.environ.get(HUB_FINGERPRINT_ENV) or None,
        )

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

    def link_stats(self) -> LinkStats:
        """Reconnects and sets lost so far (thread-safe)."""
        with self._stats_lock:
            return self._stats

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
        dropped = self._outbox.put(encode(message), kind, replaceable=replaceable)
        if dropped:
            sets = [size for dropped_kind, size in dropped if dropped_kind == SETS]
            self._count_lost(len(sets), sum(sets))
            log.warning(
                "hub link of %s is backed up: dropped %d old message(s) (%d so far)",
                self.name,
                len(dropped),
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
            except aiohttp.ServerFingerprintMismatch as error:
                self._error = NodeError(
                    f"the hub at {self.url} presents a certificate with fingerprint "
                    f"{fingerprint_of_hash(error.got)}, but this node pinned "
                    f"{fingerprint_of_hash(error.expected)}: someone may be between this node "
                    "and the hub, or the hub has a new certificate. Compare with the fingerprint "
                    "the hub printed when it started; if it is the new one, re-pin with "
                    "charles-stream node ... --fingerprint NEW"
                )
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
            autoping=False,  # the hub's pongs confirm what it routed (SendWindow)
            ssl=self._ssl,
            compress=0,  # JPEG bytes do not compress; deflate would only cost CPU
        ) as ws:
            if self._ever_connected:
                with self._stats_lock:
                    self._stats = dataclasses.replace(
                        self._stats, reconnects=self._stats.reconnects + 1
                    )
            stats = self.link_stats()
            await ws.send_bytes(
                encode(
                    msgspec.structs.replace(
                        self._hello,
                        reconnects=stats.reconnects,
                        sets_lost=stats.sets_lost,
                        bytes_lost=stats.bytes_lost,
                    )
                )
            )
            self._failing_since = None
            self._ever_connected = True
            self._set_connected(True)
            log.info("%s connected to the hub at %s", self.name, self.url)
            window = SendWindow()
            writer = asyncio.create_task(self._write(ws, window))
            try:
                await self._read(ws, window)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
                sets, size = window.unconfirmed_sets()
                if sets:
                    self._count_lost(sets, size)
                    log.warning(
                        "hub link of %s dropped with %d set(s) (%d bytes) in flight, unconfirmed: "
                        "counted as lost, not sent again (%d sets so far)",
                        self.name,
                        sets,
                        size,
                        self.link_stats().sets_lost,
                    )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, window: SendWindow) -> None:
        while True:
            received = await ws.receive()
            if received.type is aiohttp.WSMsgType.BINARY:
                self._deliver(received.data)
            elif received.type is aiohttp.WSMsgType.PONG:
                window.confirm(received.data)
            elif received.type is aiohttp.WSMsgType.PING:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await ws.pong(received.data)
            elif received.type is aiohttp.WSMsgType.CLOSE:
                if (received.extra or "").startswith(VERSION_REFUSAL):
                    self._error = self._version_refused(received.extra)
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

    def _version_refused(self, reason: str) -> NodeError:
        """The hub's refusal of this protocol version, said from this side: which to upgrade."""
        mine = self._hello.protocol
        spoken = re.search(r"this hub speaks (\d+)", reason)
        if spoken is None:
            return NodeError(f"the hub at {self.url} refused {self.name}: {reason}")
        theirs = int(spoken[1])
        side = "this node" if theirs > mine else "the hub (on the streaming PC)"
        return NodeError(
            f"the hub at {self.url} speaks protocol {theirs} and this node {mine}: upgrade "
            f"{side} (pip install -U charles-stream) so both speak the same; the hub said: "
            f"{reason}"
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

    async def _write(self, ws: aiohttp.ClientWebSocketResponse, window: SendWindow) -> None:
        while True:
            item = self._outbox.take()
            if item is None:
                if self._closing:
                    await window.all_confirmed()  # what went out was routed: nothing counts lost
                    await ws.close()
                    return
                self._wake.clear()
                if self._outbox.empty():
                    await self._wake.wait()
                continue
            kind, data = item
            if kind == SETS:
                try:
                    await window.room_for_a_set()
                except asyncio.CancelledError:
                    self._outbox.put_back(kind, data)  # not sent yet: it goes on the next link
                    raise
            # In flight from its first byte: a set cut off from here until its pong stays in the
            # window and is counted lost, never sent again (the hub may have routed it).
            ping = window.sent(kind, len(data))
            try:
                await ws.send_bytes(data)
            except (aiohttp.ClientError, ConnectionError) as error:
                if kind != SETS:
                    self._outbox.put_back(kind, data)
                log.debug("hub link of %s broke while sending: %r", self.name, error)
                await ws.close()
                return
            except asyncio.CancelledError:
                if kind != SETS:
                    self._outbox.put_back(kind, data)  # the link ended: it goes on the next one
                raise
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await ws.ping(ping)

    def _begin_close(self, timeout: float) -> None:
        self._wake.set()
        if self._main_task is None or not self._connected:
            if self._main_task is not None:
                self._main_task.cancel()
            return
        assert self._loop is not None
        self._loop.call_later(timeout, self._main_task.cancel)

    def _count_lost(self, sets: int, size: int) -> None:
        with self._stats_lock:
            self._stats = LinkStats(
                self._stats.reconnects, self._stats.sets_lost + sets, self._stats.bytes_lost + size
            )

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
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._queued_bytes = 0
        self._newest: dict[str, bytes] = {}

    def put(self, data: bytes, kind: str, *, replaceable: bool = False) -> list[tuple[str, int]]:
        """Queue `data`; return the (kind, size) of old messages dropped to stay under the bound."""
        with self._lock:
            if replaceable:
                self._newest.pop(kind, None)  # the newest goes last, behind other kinds
                self._newest[kind] = data
                return []
            self._queue.append((kind, data))
            self._queued_bytes += len(data)
            dropped: list[tuple[str, int]] = []
            while self._queued_bytes > self._max_bytes and len(self._queue) > 1:
                old_kind, old = self._queue.popleft()
                self._queued_bytes -= len(old)
                dropped.append((old_kind, len(old)))
            self.dropped += len(dropped)
            return dropped

    def put_back(self, kind: str, data: bytes) -> None:
        """Return a message whose send failed to the front, to go first on the next link."""
        with self._lock:
            if SERVICES[kind].replaceable:
                self._newest.setdefault(kind, data)  # unless a newer one came meanwhile
                return
            self._queue.appendleft((kind, data))
            self._queued_bytes += len(data)

    def take(self) -> tuple[str, bytes] | None:
        """The next message to send and its kind, or None when nothing waits."""
        with self._lock:
            if self._queue:
                kind, data = self._queue.popleft()
                self._queued_bytes -= len(data)
                return kind, data
            if self._newest:
                kind = next(iter(self._newest))
                return kind, self._newest.pop(kind)
            return None

    def empty(self) -> bool:
        """Whether nothing waits."""
        with self._lock:
            return not self._queue and not self._newest


class SendWindow:
    """One connection's messages in flight (sent, or being sent) and not yet confirmed, in order.

    Each message is followed by a ping carrying its sequence number; the pong
    of number N confirms every message up to N. At most `max_sets` sample
    sets are in flight (`room_for_a_set`). bench/cluster.py's senders use it
    to send as nodes do.
    """

    def __init__(self, max_sets: int = UNCONFIRMED_SETS) -> None:
        if max_sets < 1:
            raise ValueError(f"max_sets = {max_sets} is not accepted; accepted: 1 or more")
        self.max_sets = max_sets
        self._next = 0
        self._unconfirmed: collections.deque[tuple[int, str, int]] = collections.deque()
        self._changed = asyncio.Event()

    def sent(self, kind: str, size: int) -> bytes:
        """Note a message in flight (before its first byte); return the payload of its ping."""
        self._next += 1
        self._unconfirmed.append((self._next, kind, size))
        return self._next.to_bytes(8, "big")

    def confirm(self, payload: bytes) -> None:
        """A pong arrived: what it confirms leaves the window (heartbeat pongs are empty)."""
        if len(payload) != 8:
            return
        number = int.from_bytes(payload, "big")
        while self._unconfirmed and self._unconfirmed[0][0] <= number:
            self._unconfirmed.popleft()
        self._changed.set()

    async def room_for_a_set(self) -> None:
        """Wait until fewer than `max_sets` sets are in flight."""
        while self.unconfirmed_sets()[0] >= self.max_sets:
            self._changed.clear()
            await self._changed.wait()

    async def all_confirmed(self) -> None:
        """Wait until the hub confirmed everything sent on this connection."""
        while self._unconfirmed:
            self._changed.clear()
            await self._changed.wait()

    def unconfirmed_sets(self) -> tuple[int, int]:
        """How many sample sets, of how many bytes, the hub has not confirmed yet."""
        sizes = [size for _, kind, size in self._unconfirmed if kind == SETS]
        return len(sizes), sum(sizes)


def _transport_security(url: str, fingerprint: str | None) -> aiohttp.Fingerprint | bool:
    """What aiohttp's `ssl` gets for `url`: the pinned fingerprint for wss://; refusals otherwise.

    The token is never sent in clear text beyond this machine: plain ws://
    is accepted for loopback hubs only.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise NodeError(
            f"hub URL {url!r} is not accepted: use ws://127.0.0.1:PORT/ws/node (this machine) "
            "or wss://HOST:PORT/ws/node"
        )
    host = parts.hostname
    if parts.scheme == "ws":
        if needs_tls(host):
            raise NodeError(
                f"refusing to send the hub token in clear text to {host}: plain ws:// is "
                f"accepted only for a hub on this machine (127.0.0.1, ::1, localhost); a hub "
                f"beyond loopback serves TLS: use wss://{parts.netloc}/ws/node "
                f"(charles-stream node ... --hub {parts.netloc} does)"
            )
        return True
    if not fingerprint:
        raise NodeError(
            f"the hub at {url} is wss:// but no certificate fingerprint is pinned: set "
            f"{HUB_FINGERPRINT_ENV} to the fingerprint the hub printed when it started, or "
            "join with charles-stream node ... (it pins the hub's fingerprint on first contact)"
        )
    try:
        return aiohttp.Fingerprint(fingerprint_bytes(parse_fingerprint(fingerprint)))
    except ValueError as error:
        raise NodeError(f"{HUB_FINGERPRINT_ENV}: {error}") from None


def fingerprint_of_hash(digest: bytes) -> str:
    """A SHA-256 digest in the fingerprint form people compare ("AB:CD:...")."""
    text = digest.hex().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))
