"""The hub: the app's aiohttp server that every process speaks to.

Example::

    hub = Hub(config.hub, hub_token(config.app.data_dir), state, on_action=app.act)
    port = await hub.start()                 # children get hub.url() and the token
    await hub.send("trainer", SwitchModel(version="model_0003_xception_v2"))
    await hub.stop()

Beyond loopback (`[hub] host` a LAN address or a wildcard) the hub serves
TLS with `[hub] tls_cert`/`tls_key` or a self-signed certificate made once
under `<data_dir>/secrets` (engine/core/tls.py), logs its SHA-256
fingerprint for remote operators to compare, and also listens in plain HTTP
on 127.0.0.1:`[hub] local_port` for this machine's own processes, OBS and
chat: `url()` is always that local address, `public_url()` the TLS one.

Routes:

- `/ws/node`: nodes (collectors, trainer, driver; local or remote) with
  `Authorization: Bearer <token>`, checked before the upgrade. Binary frames
  are `engine.core.wire` messages, the first one a `Hello`. Anything else
  closes that one connection with a logged reason; the hub keeps serving.
- `GET /api/status`: `status_view` of the app's state (engine/core/store.py)
  as JSON (a NaN loss is null), read-only, no token.
- `POST /api/switch` `{"model": "...", "new": false}` and `POST /api/tag`
  `{"text": "..."}`: token required; the parsed `Action` goes to `on_action`,
  whose dict is the reply. A body that is not a JSON object of these fields
  (or is nested deeply, or a tag that is only control characters once chat's
  `plain_text` has cleaned it) is answered 400 naming the field.

Every response, the API's, the pages', errors and 404s, carries
`engine.core.web.SECURITY_HEADERS` (a Content-Security-Policy among them).

Routing follows `engine.core.services.SERVICES`: a message type's row says
which roles may send it (others are disconnected), where it goes (the very
bytes the node sent, never a re-encoding) and whether the app's state keeps
it. Messages only forwarded (sample sets) are read no further than their
"type"; kept ones are decoded and validated in full and applied to the state
(`Received`). A `Hello` of another protocol version is closed with a reason
that says which side to upgrade.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.text import plain_text
from engine.core.actions import Action
from engine.core.auth import token_problem
from engine.core.config import HubConfig
from engine.core.errors import CharlesError, ConfigError, DeviceError, UsageError
from engine.core.schema import parse_json_object
from engine.core.services import HUB, SERVICES, version_problem
from engine.core.store import AppState, NodesChanged, Received, encode_json, status_view
from engine.core.tls import HubIdentity, hub_identity, needs_tls
from engine.core.web import add_security_headers
from engine.core.wire import (
    Hello,
    Message,
    ProtocolError,
    Role,
    SwitchModel,
    decode,
    encode,
    header_type,
    hello_protocol,
    message_type,
)

# Sets that arrive while no trainer is connected wait here (a restarting trainer loses
# nothing); the oldest go first when more arrive.
WAITING_SETS = 64
# Messages queued per node before the sender waits: a slow trainer slows the collectors
# instead of growing the hub's memory. At least WAITING_SETS, so a new trainer takes them all.
NODE_QUEUE_LENGTH = WAITING_SETS
# ...and bytes, so 64 messages of the largest size (max_message_mb) cannot take 512 MB per slow
# node: past this a sender waits too (one message more may always go in).
NODE_QUEUE_BYTES = 64 * 1024 * 1024
HELLO_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
STOP_TIMEOUT_S = 2.0
MAX_TAG_CHARS = 200
MODEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")

# RFC 6455: a close frame's reason is at most 123 bytes.
CLOSE_REASON_BYTES = 123
# A rejected message's reason can quote what it held; keep log lines readable.
LOGGED_REASON_CHARS = 300
POLICY_VIOLATION = 1008
GOING_AWAY = 1001

log = logging.getLogger(__name__)

# A receiver in the app's own process (Hub.add_receiver): the message's type and its bytes.
Receiver = Callable[[str, bytes], Awaitable[None]]


class Hub:
    """The app's server: node websockets, the status and action API; other parts add routes.

    Add routes to `app` (overlays: /overlay/*) before `start`.
    """

    def __init__(
        self,
        config: HubConfig,
        token: str,
        state: AppState,
        on_action: Callable[[Action], Awaitable[dict]] | None = None,
        *,
        data_dir: str | Path | None = None,
    ) -> None:
        self.app = web.Application()
        self.app.on_response_prepare.append(add_security_headers)
        self.app.router.add_get("/ws/node", self._node_socket)
        self.app.router.add_get("/api/status", self._status)
        self.app.router.add_post("/api/switch", self._switch)
        self.app.router.add_post("/api/tag", self._tag)
        self.state = state  # what the hub writes; the app and its views read it
        self.port = 0  # the bound port once started
        self.local_port = 0  # with TLS: the bound plain port on 127.0.0.1 (else the same as port)
        # With TLS: the certificate and its fingerprint (None: plain, a loopback hub).
        self.identity: HubIdentity | None = None
        self._config = config
        self._data_dir = data_dir
        self._token = token.encode()
        self._on_action = on_action
        self._max_message_bytes = int(config.max_message_mb * 1024 * 1024)
        self._links: set[_NodeLink] = set()
        # Receivers in this process, per role, beside its nodes (add_receiver).
        self._receivers: dict[str, list[Receiver]] = collections.defaultdict(list)
        # Messages the table holds for absent receivers (sample sets): (type, bytes).
        self._waiting: collections.deque[tuple[str, bytes]]
        self._waiting = collections.deque(maxlen=WAITING_SETS)
        self._dropped_waiting = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Bind `config.host:config.port` and serve; return the bound port (useful with port 0).

        Beyond loopback: TLS there, and plain HTTP on 127.0.0.1:`local_port`.
        """
        config = self._config
        if needs_tls(config.host):
            if self._data_dir is None and not config.tls_cert:
                raise ConfigError(
                    f"[hub] host = {config.host!r} is beyond loopback, so the hub serves TLS, and "
                    "this hub has no data folder for its certificate: set [hub] tls_cert and "
                    'tls_key, or use host = "127.0.0.1"'
                )
            self.identity = hub_identity(config.tls_cert, config.tls_key, self._data_dir or "")
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=STOP_TIMEOUT_S)
        await self._runner.setup()
        try:
            if self.identity is None:
                self.port = await self._listen(config.host, config.port, "port")
                self.local_port = self.port
            else:
                context = self.identity.server_context()
                self.port = await self._listen(config.host, config.port, "port", context)
                self.local_port = await self._listen("127.0.0.1", config.local_port, "local_port")
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.identity is None:
            log.info("hub listening on %s:%d", config.host, self.port)
        else:
            log.info(
                "hub listening on %s:%d with TLS (for other machines: charles-stream node KIND "
                "--hub THIS_MACHINE:%d); certificate fingerprint SHA-256 %s; this machine's "
                "processes, OBS and chat use http://127.0.0.1:%d",
                config.host,
                self.port,
                self.port,
                self.identity.fingerprint,
                self.local_port,
            )
        return self.port

    async def _listen(
        self, host: str, port: int, key: str, context: ssl.SSLContext | None = None
    ) -> int:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        before = len(self._runner.addresses)
        try:
            await site.start()
        except OSError as error:
            where = f"host = {host!r}, port" if key == "port" else f"{host}, [hub] {key}"
            raise DeviceError(
                f"the hub cannot listen on [hub] {where} = {port}: {error.strerror or error}; "
                "use a free port (0 = any) and an address of this machine"
            ) from None
        # The runner lists its sites' sockets in the order they started: this site's come last.
        return self._runner.addresses[before][1]

    async def stop(self) -> None:
        """Close every node connection (1001, going away), then the server."""
        for link in list(self._links):
            await link.close(GOING_AWAY, "hub stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("hub stopped")

    def set_action_handler(self, on_action: Callable[[Action], Awaitable[dict]]) -> None:
        """Who carries out /api/switch and /api/tag (it usually needs the hub itself to exist)."""
        self._on_action = on_action

    def url(self) -> str:
        """Where this machine's nodes connect: "ws://host:port/ws/node", plain.

        Wildcard hosts -> loopback; with TLS, the plain listener on 127.0.0.1.
        """
        if self.identity is not None:
            return f"ws://127.0.0.1:{self.local_port}/ws/node"
        return f"ws://{_connectable_host(self._config.host)}:{self.port}/ws/node"

    def public_url(self) -> str:
        """Where other machines' nodes connect: "wss://host:port/ws/node" with TLS, else url()."""
        if self.identity is None:
            return self.url()
        return f"wss://{_connectable_host(self._config.host)}:{self.port}/ws/node"

    def add_receiver(self, role: Role, receive: Receiver) -> None:
        """Hand `receive(type, bytes)` what the services table routes to `role`, in this process.

        `charles-stream collect` stores sample sets this way, with no trainer:
        its collectors are the stream's nodes and the hub routes as it does in
        the stream. A message is awaited into `receive` before the hub reads the
        sender's next one, so a slow receiver slows the senders (backpressure).
        """
        self._receivers[role].append(receive)

    async def send(self, role: Role, message: Message) -> int:
        """Send a message to every connected node of `role`; return how many got it."""
        return await self._forward(role, message_type(message), encode(message))

    # -- node connections ----------------------------------------------------------------

    async def _node_socket(self, request: web.Request) -> web.StreamResponse:
        peer = _peer(request)
        problem = self._authorization_problem(request)
        if problem is not None:
            log.warning("rejected node connection from %s: %s", peer, problem)
            return web.Response(
                status=401, text=f"{problem}\n", headers={"WWW-Authenticate": "Bearer"}
            )
        ws = web.WebSocketResponse(
            max_msg_size=self._max_message_bytes,
            heartbeat=HEARTBEAT_S,
            compress=False,  # JPEG bytes do not compress; deflate would only cost CPU
        )
        await ws.prepare(request)
        link = _NodeLink(ws, peer)
        # Tracked from the start (not only after Hello), so stop() closes every connection.
        self._links.add(link)
        try:
            await self._serve(link)
        finally:
            await self._forget(link)
        return ws

    async def _serve(self, link: _NodeLink) -> None:
        ws = link.ws
        while True:
            try:
                received = await ws.receive(timeout=None if link.role else HELLO_TIMEOUT_S)
            except TimeoutError:
                await self._reject(link, f"no hello within {HELLO_TIMEOUT_S:g} s")
                return
            if received.type is aiohttp.WSMsgType.BINARY:
                problem = await self._handle(link, received.data)
                if problem is not None:
                    await self._reject(link, problem)
                    return
            elif received.type is aiohttp.WSMsgType.TEXT:
                await self._reject(link, "text frames are not accepted: send msgpack binary frames")
                return
            elif received.type is aiohttp.WSMsgType.ERROR:
                # aiohttp already closed it with the matching code (1009 too big, 1002 bad frame).
                log.warning(
                    "closed node connection %s: %s (close code %s)",
                    link.describe(),
                    _short(str(received.data)),
                    ws.close_code,
                )
                return
            else:  # CLOSE, CLOSING, CLOSED: the node left
                return

    async def _handle(self, link: _NodeLink, data: bytes) -> str | None:
        """Route one message by its row in `SERVICES`; return why the connection must close.

        Only the header of a message the hub forwards without keeping (a 1 MB
        sample set) is read here; its receiver validates it in its own process.
        """
        try:
            if link.role is None:
                return self._greet(link, data)
            kind = header_type(data)
        except ProtocolError as error:
            return str(error)
        row = SERVICES[kind]
        if kind == "hello":
            return "hello was already sent on this connection"
        if link.role not in row.senders:
            if row.senders == {HUB}:
                return f"{kind} is sent by the hub, not to it"
            senders = ", ".join(sorted(row.senders))
            return f"{kind} is not accepted from a {link.role}; it is sent by: {senders}"
        if row.kept is not None:
            # What the app keeps is small: validated in full before the state sees it.
            try:
                message = decode(data)
            except ProtocolError as error:
                return str(error)
            self.state.apply(Received(message, link.name))
        delivered = 0
        for role in row.route_to:
            delivered += await self._forward(role, kind, data)
        if delivered == 0 and row.held_for_absent:
            self._hold(kind, data)
        return None

    def _greet(self, link: _NodeLink, data: bytes) -> str | None:
        """Check a connection's first message: a Hello of this protocol version."""
        kind = header_type(data)
        if kind != "hello":
            return f"the first message must be hello, got {kind}"
        # Before validating the rest: a node of another version hears "upgrade", not a field.
        problem = version_problem(hello_protocol(data))
        if problem is not None:
            return problem
        hello = decode(data)
        assert isinstance(hello, Hello)
        self._welcome(link, hello)
        return None

    def _welcome(self, link: _NodeLink, hello: Hello) -> None:
        link.name = hello.name
        waiting = [(k, d) for k, d in self._waiting if _wanted(hello, k)]
        if waiting:
            # Queued before the link has a role (is routable), so newer ones cannot overtake them.
            for kind, data in waiting:
                link.queue_now(kind, data)
            log.info(
                "handed %d waiting message(s) to %s (%d dropped while no %s was there)",
                len(waiting),
                hello.name,
                self._dropped_waiting,
                hello.role,
            )
            kept = [(k, d) for k, d in self._waiting if not _wanted(hello, k)]
            self._waiting.clear()
            self._waiting.extend(kept)
            self._dropped_waiting = 0
        if hello.role in ("trainer", "driver") and self.state.version:
            # The streamed version is the app's to say: a node restarted with the version it
            # was first started with catches up with any switch made since.
            link.queue_now("switch_model", encode(SwitchModel(self.state.version)))
        link.role = hello.role
        link.hello = hello
        link.start_writing()
        where = f" on {hello.host}" if hello.host else ""
        losses = (
            f" (reconnect {hello.reconnects}; lost so far: {hello.sets_lost} set(s), "
            f"{hello.bytes_lost} bytes)"
            if hello.reconnects or hello.sets_lost
            else ""
        )
        self._note_nodes(f"{hello.name} ({hello.role}){where} connected from {link.peer}{losses}")

    async def _forget(self, link: _NodeLink) -> None:
        unsent = await link.close(GOING_AWAY, "")
        self._links.discard(link)
        if link.role is None:
            return
        for kind, data in unsent:
            # Held for the next node that takes it (a chief may leave its followers behind).
            others = [other for other in self._nodes_of(link.role) if other.takes(kind)]
            if SERVICES[kind].held_for_absent and not others:
                self._hold(kind, data)
        where = f" on {link.hello.host}" if link.hello and link.hello.host else ""
        self._note_nodes(f"{link.name} ({link.role}){where} disconnected")

    async def _reject(self, link: _NodeLink, reason: str) -> None:
        log.warning("closed node connection %s: %s", link.describe(), _short(reason))
        await link.close(POLICY_VIOLATION, reason)

    async def _forward(self, role: str, kind: str, data: bytes) -> int:
        delivered = 0
        for receive in self._receivers.get(role, ()):
            await receive(kind, data)
            delivered += 1
        for link in self._nodes_of(role):
            if link.takes(kind) and await link.put(kind, data):
                delivered += 1
        return delivered

    def _hold(self, kind: str, data: bytes) -> None:
        """Keep a message for the next receiver that says hello; the oldest go first."""
        if len(self._waiting) == WAITING_SETS:
            if self._dropped_waiting == 0:
                log.warning(
                    "no receiver connected and %d messages waiting: dropping the oldest",
                    WAITING_SETS,
                )
            self._dropped_waiting += 1
        self._waiting.append((kind, data))

    def _nodes_of(self, role: str) -> list[_NodeLink]:
        return [link for link in self._links if link.role == role]

    def _note_nodes(self, event: str) -> None:
        nodes = {link.name: link.role for link in self._links if link.role}
        links = {
            link.name: {
                "host": link.hello.host,
                "peer": link.peer,
                "reconnects": link.hello.reconnects,
                "sets_lost": link.hello.sets_lost,
                "bytes_lost": link.hello.bytes_lost,
            }
            for link in self._links
            if link.role and link.hello
        }
        self.state.apply(NodesChanged(nodes, event, links))
        log.info("%s", event)

    def _authorization_problem(self, request: web.Request) -> str | None:
        return token_problem(request.headers.get("Authorization"), self._token)

    # -- HTTP API ------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        body = encode_json(status_view(self.state.snapshot()))
        return web.Response(text=body, content_type="application/json")

    async def _switch(self, request: web.Request) -> web.Response:
        return await self._act(request, _switch_action)

    async def _tag(self, request: web.Request) -> web.Response:
        return await self._act(request, _tag_action)

    async def _act(
        self, request: web.Request, parse: Callable[[dict[str, Any]], Action]
    ) -> web.Response:
        problem = self._authorization_problem(request)
        if problem is not None:
            log.warning(
                "rejected %s %s from %s: %s", request.method, request.path, _peer(request), problem
            )
            return _error(401, problem)
        try:
            action = parse(await _json_object(request))
        except _BadRequest as error:
            log.info("rejected %s %s: %s", request.method, request.path, error)
            return _error(400, str(error))
        if self._on_action is None:
            return _error(503, "this hub takes no actions: the app gave it no action handler")
        try:
            reply = await self._on_action(action)
        except UsageError as error:  # e.g. an unknown model: the request named something bad
            return _error(400, str(error))
        except CharlesError as error:  # the request was fine; carrying it out was not
            log.error("%s %s failed: %s", request.method, request.path, error)
            return _error(500, str(error))
        return web.json_response(reply)


# What a multi-worker trainer other than the chief (Hello.follows_chief) is not sent: the chief
# draws every batch and hands the others their slices; sets would cross the network to be dropped.
_NOT_FOR_FOLLOWERS = frozenset({"sample_sets", "collector_report"})


def _wanted(hello: Hello, kind: str) -> bool:
    """Whether the node that said `hello` is sent messages of `kind`."""
    if hello.role not in SERVICES[kind].route_to:
        return False
    return not (hello.follows_chief and kind in _NOT_FOR_FOLLOWERS)


class _NodeLink:
    """One node's websocket, with its own send queue so one slow node does not hold up others."""

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws = ws
        self.peer = peer
        self.role: Role | None = None
        self.name = ""
        self.hello: Hello | None = None
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._writer: asyncio.Task[None] | None = None

    def takes(self, kind: str) -> bool:
        """Whether this node is sent `kind` (of its role's kinds): a chief's follower takes less."""
        return self.hello is None or _wanted(self.hello, kind)

    def describe(self) -> str:
        """Who this is, for log lines: name and role once known, and the address."""
        return f"{self.name} ({self.role}) from {self.peer}" if self.role else f"from {self.peer}"

    def start_writing(self) -> None:
        """Start sending what is queued."""
        self._writer = asyncio.create_task(self._write(), name=f"hub-send-{self.name}")

    def queue_now(self, kind: str, data: bytes) -> None:
        """Queue without waiting: only for a link that is not routable yet (its queue has room)."""
        self._queue.append((kind, data))
        self._queued_bytes += len(data)
        self._ready.set()

    async def put(self, kind: str, data: bytes) -> bool:
        """Queue a message, waiting while the queue is full (messages or bytes); False if closed."""
        while self._full() and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            return False
        self.queue_now(kind, data)
        return True

    async def close(self, code: int, reason: str) -> list[tuple[str, bytes]]:
        """Stop sending, close the socket; return what was still queued."""
        self._closed = True
        self._room.set()  # senders waiting for room give up
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if not self.ws.closed:
            await self.ws.close(
                code=code, message=reason.encode("ascii", "replace")[:CLOSE_REASON_BYTES]
            )
        unsent = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        return unsent

    def _full(self) -> bool:
        return len(self._queue) >= NODE_QUEUE_LENGTH or (
            bool(self._queue) and self._queued_bytes >= NODE_QUEUE_BYTES
        )

    async def _write(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            data = self._queue[0][1]
            try:
                await self.ws.send_bytes(data)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
                log.info("sending to %s failed: %r", self.describe(), error)
                return
            self._queue.popleft()
            self._queued_bytes -= len(data)
            self._room.set()


class _BadRequest(ValueError):
    """A POST body the API cannot use, with the field, its value and what is accepted."""


# Tells a missing field from one sent as null.
_MISSING = object()


async def _json_object(request: web.Request) -> dict[str, Any]:
    # Bytes, not request.text(): a body that is not UTF-8 (or names a bogus charset) is a 400.
    return parse_json_object(await request.read(), where="the body", error=_BadRequest)


def parse_action(kind: str, body: bytes) -> Action:
    """A switch or tag request's body parsed as the API parses it (the control dock too).

    ValueError naming the field, its value and what is accepted.
    """
    data = parse_json_object(body, where="the body", error=_BadRequest)
    return _switch_action(data) if kind == "switch" else _tag_action(data)


def _switch_action(body: dict[str, Any]) -> Action:
    _only_fields(body, ("model", "new"))
    model = body.get("model", _MISSING)
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
        raise _field_problem(
            "model",
            model,
            "a model line or version: 1-100 letters, digits, '_' or '-' "
            "(e.g. 'model_0003_xception_v2')",
        )
    new = body.get("new", False)
    if not isinstance(new, bool):
        raise _field_problem("new", new, "true or false")
    return Action(kind="switch", model=model, new=new)


def _tag_action(body: dict[str, Any]) -> Action:
    _only_fields(body, ("text",))
    text = body.get("text", _MISSING)
    # Cleaned as chat cleans a !tag note: control and bidi characters never reach the overlay.
    cleaned = plain_text(text, MAX_TAG_CHARS) if isinstance(text, str) else ""
    if not cleaned or len(text) > MAX_TAG_CHARS:
        raise _field_problem(
            "text",
            text,
            f"a string of 1-{MAX_TAG_CHARS} characters, not only spaces or control characters",
        )
    return Action(kind="tag", text=cleaned)


def _only_fields(body: dict[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        raise _BadRequest(f"unknown field {unknown[0]!r}; accepted: {', '.join(accepted)}")


def _field_problem(name: str, value: Any, accepted: str) -> _BadRequest:
    if value is _MISSING:
        return _BadRequest(f"field {name!r} is missing; accepted: {accepted}")
    shown = _short(json.dumps(value), 80)
    return _BadRequest(f"field {name!r} = {shown} is not accepted; accepted: {accepted}")


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return request.remote or "unknown peer"


def _connectable_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _short(text: str, limit: int = LOGGED_REASON_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
