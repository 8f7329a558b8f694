"""A local Twitch on 127.0.0.1: OAuth, Helix and the EventSub websocket, as twitchio 3 uses them.

Example::

    async with running_twitch() as twitch:          # a FakeTwitch on a free port
        access, refresh = twitch.grant("charlesbot")
        config = TwitchConfig(channel="charles", client_id=twitch.client_id,
                              helix_url=twitch.helix_url, auth_url=twitch.auth_url,
                              eventsub_url=twitch.eventsub_url)
        ...
        await twitch.chat("viewer42", "!stats", badges=["subscriber"])
        await twitch.wait(lambda: twitch.sent)       # Helix "Send Chat Message" bodies

The bot's tests run real twitchio against this server: the service is
mocked, never the library. It follows Twitch's documentation:

- OAuth (id.twitch.tv): `GET /oauth2/validate` ("Authorization: OAuth"),
  `POST /oauth2/token` (refresh_token, single-use as for public clients,
  and the device code grant), `POST /oauth2/device`.
- Helix: `GET /users`, `POST /eventsub/subscriptions` (websocket
  transport, user token of the reading user, `user:read:chat`),
  `POST /chat/messages` (`user:write:chat`, sender = the token's user,
  at most 500 characters). Every call needs the Client-Id header and a live
  token, else 401 "Invalid OAuth token", as Twitch answers.
- EventSub websocket: session_welcome on connect, session_keepalive
  while quiet, notification messages for `channel.chat.message`,
  session_reconnect with a reconnect_url that carries the subscriptions
  over; a dropped session loses its subscriptions; a client that sends
  anything is closed with 4001, as Twitch does.

The Twitch CLI's mock servers are an alternative for manual runs; this one
lives inside the test's event loop and lets tests drop, refuse and redirect
the websocket on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

CLIENT_ID = "charlesteststreamclient"
BOT_SCOPES = ("user:read:chat", "user:write:chat")
MAX_MESSAGE_CHARS = 500
INBOUND_TRAFFIC = 4001  # Twitch's close code for a client that sent a message
INTERNAL_ERROR = 4000


@dataclass(frozen=True)
class Account:
    """A Twitch user."""

    user_id: str
    login: str

    @property
    def display_name(self) -> str:
        """Twitch's display name: the login with its own capitalisation."""
        return self.login.capitalize()

    def as_helix(self) -> dict[str, Any]:
        """The user object of Helix `GET /users`."""
        return {
            "id": self.user_id,
            "login": self.login,
            "display_name": self.display_name,
            "type": "",
            "broadcaster_type": "",
            "description": "",
            "profile_image_url": "https://static-cdn.jtvnw.net/user-default-pictures.png",
            "offline_image_url": "",
            "view_count": 0,
            "created_at": "2020-01-02T03:04:05Z",
        }


@dataclass
class Grant:
    """What one token stands for: a user of a client with scopes, until it expires."""

    account: Account
    scopes: tuple[str, ...]
    client_id: str
    expires_at: float

    def expires_in(self) -> int:
        """Seconds left, as /oauth2/validate reports them."""
        return max(int(self.expires_at - time.monotonic()), 0)


@dataclass
class Session:
    """One EventSub websocket connection."""

    id: str
    ws: web.WebSocketResponse
    keepalive_s: int
    connected_at: str
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DeviceCode:
    """A pending device code sign-in: who signs in, and after how many polls."""

    account: Account
    scopes: tuple[str, ...]
    polls_left: int


class FakeTwitch:
    """Twitch's OAuth, Helix and EventSub websocket endpoints, with the state tests look at."""

    def __init__(self, *, client_id: str = CLIENT_ID, channel: str = "charles") -> None:
        self.client_id = client_id
        self.port = 0
        self._ids = itertools.count(1000)
        self.accounts: dict[str, Account] = {}
        self.channel = self.account(channel)
        self.access: dict[str, Grant] = {}
        self.refresh: dict[str, Grant] = {}
        self.sessions: dict[str, Session] = {}
        self.sent: list[dict[str, Any]] = []  # Send Chat Message bodies, oldest first
        self.sent_at: list[float] = []  # loop.time() of each, when it reached the chat
        # Delays of the next Send Chat Messages on their way in: each reaches the chat (and is
        # counted and answered) this much after its request arrived. A slow way in.
        self.arrival_delays_s: list[float] = []
        self.refreshes = 0
        self.welcomes = 0
        self.refuse_websockets = False
        # Device code flow: who signs in when the streamer enters the code, after how many polls.
        self.device_login = "charles"
        self.device_polls = 1
        self._devices: dict[str, DeviceCode] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle and URLs --------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/auth/oauth2/validate", self._validate)
        app.router.add_post("/auth/oauth2/token", self._token)
        app.router.add_post("/auth/oauth2/device", self._device)
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/eventsub/subscriptions", self._subscribe)
        app.router.add_post("/helix/chat/messages", self._chat_message)
        app.router.add_get("/eventsub", self._eventsub)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close every session and the server."""
        for session in list(self.sessions.values()):
            await session.ws.close(code=INTERNAL_ERROR, message=b"server stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def helix_url(self) -> str:
        """[twitch] helix_url for this server."""
        return f"http://127.0.0.1:{self.port}/helix/"

    @property
    def auth_url(self) -> str:
        """[twitch] auth_url for this server."""
        return f"http://127.0.0.1:{self.port}/auth/"

    @property
    def eventsub_url(self) -> str:
        """[twitch] eventsub_url for this server."""
        return f"ws://127.0.0.1:{self.port}/eventsub"

    # -- what tests do -------------------------------------------------------------------

    def account(self, login: str) -> Account:
        """The account with this login, created on first use."""
        login = login.lower()
        if login not in self.accounts:
            self.accounts[login] = Account(str(next(self._ids)), login)
        return self.accounts[login]

    def grant(
        self, login: str, scopes: Iterable[str] = BOT_SCOPES, expires_in: float = 14_400.0
    ) -> tuple[str, str]:
        """Issue (access, refresh) tokens for `login`, as a finished sign-in would."""
        grant = Grant(
            self.account(login), tuple(scopes), self.client_id, time.monotonic() + expires_in
        )
        access, refresh = secrets.token_hex(15), secrets.token_hex(25)
        self.access[access] = grant
        self.refresh[refresh] = grant
        return access, refresh

    def expire(self, access: str) -> None:
        """Make an access token invalid (as after its expiry); its refresh token still works."""
        self.access.pop(access, None)

    def subscribed(self) -> bool:
        """Whether a connected session listens to the channel's chat."""
        return any(session.subscriptions for session in self.sessions.values())

    async def wait(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        """Until `condition()` is true (checked whenever this server's state changes)."""
        async with asyncio.timeout(timeout):
            while not condition():
                changed = self._changed
                await changed.wait()

    async def chat(
        self, login: str, text: str, *, badges: Iterable[str] = (), message_id: str | None = None
    ) -> str:
        """A viewer's chat line: a channel.chat.message notification to every subscribed session.

        Returns the message ID. Raises if no session is subscribed (the bot would miss it).
        """
        message_id = message_id or str(uuid.uuid4())
        event = self._chat_event(self.account(login), text, tuple(badges), message_id)
        delivered = 0
        for session in list(self.sessions.values()):
            for subscription in session.subscriptions.values():
                payload = {"subscription": subscription, "event": event}
                frame = _frame("notification", payload, subscription_type="channel.chat.message")
                await session.ws.send_str(frame)
                delivered += 1
        if not delivered:
            raise AssertionError("no EventSub session is subscribed to the channel's chat")
        return message_id

    async def reconnect(self) -> None:
        """Ask every session to move (session_reconnect); subscriptions follow to the new URL."""
        for session in list(self.sessions.values()):
            url = f"{self.eventsub_url}?reconnect_id={session.id}"
            payload = {"session": self._session_object(session, status="reconnecting", url=url)}
            await session.ws.send_str(_frame("session_reconnect", payload))

    async def drop(self) -> None:
        """Close every session as a failing server would (their subscriptions are gone)."""
        for session in list(self.sessions.values()):
            await session.ws.close(code=INTERNAL_ERROR, message=b"internal server error")

    # -- OAuth ---------------------------------------------------------------------------

    async def _validate(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("OAuth ").strip()
        grant = self.access.get(token)
        if grant is None or grant.expires_in() <= 0:
            return _json(401, {"status": 401, "message": "invalid access token"})
        return _json(
            200,
            {
                "client_id": grant.client_id,
                "login": grant.account.login,
                "scopes": list(grant.scopes),
                "user_id": grant.account.user_id,
                "expires_in": grant.expires_in(),
            },
        )

    async def _token(self, request: web.Request) -> web.Response:
        params = {**request.query, **(await request.post())}
        if params.get("client_id") != self.client_id:
            return _json(400, {"status": 400, "message": "invalid client"})
        kind = params.get("grant_type")
        if kind == "refresh_token":
            # Public clients' refresh tokens work once.
            grant = self.refresh.pop(str(params.get("refresh_token", "")), None)
            if grant is None:
                return _json(400, {"status": 400, "message": "Invalid refresh token"})
            self.refreshes += 1
            return self._tokens_for(grant.account, grant.scopes)
        if kind == "urn:ietf:params:oauth:grant-type:device_code":
            device = self._devices.get(str(params.get("device_code", "")))
            if device is None:
                return _json(400, {"status": 400, "message": "invalid device code"})
            if device.polls_left > 0:
                device.polls_left -= 1
                return _json(400, {"status": 400, "message": "authorization_pending"})
            del self._devices[str(params["device_code"])]
            return self._tokens_for(device.account, device.scopes)
        return _json(400, {"status": 400, "message": f"unsupported grant_type {kind!r}"})

    async def _device(self, request: web.Request) -> web.Response:
        if request.query.get("client_id") != self.client_id:
            return _json(400, {"status": 400, "message": "invalid client"})
        scopes = tuple(request.query.get("scopes", "").replace("+", " ").split())
        code = secrets.token_hex(16)
        user_code = secrets.token_hex(4).upper()
        self._devices[code] = DeviceCode(self.account(self.device_login), scopes, self.device_polls)
        return _json(
            200,
            {
                "device_code": code,
                "expires_in": 1800,
                "interval": 0,
                "user_code": user_code,
                "verification_uri": "https://www.twitch.tv/activate?public=true&device-code="
                + user_code,
            },
        )

    def _tokens_for(self, account: Account, scopes: tuple[str, ...]) -> web.Response:
        access, refresh = self.grant(account.login, scopes)
        self._notify()
        return _json(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": 14_400,
                "scope": list(scopes),
                "token_type": "bearer",
            },
        )

    # -- Helix ---------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> Grant | web.Response:
        if request.headers.get("Client-Id") != self.client_id:
            return _json(
                401,
                {
                    "error": "Unauthorized",
                    "status": 401,
                    "message": "Client ID is missing or wrong",
                },
            )
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        grant = self.access.get(token)
        if grant is None or grant.expires_in() <= 0:
            return _json(
                401, {"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"}
            )
        return grant

    async def _users(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        logins = request.query.getall("login", [])
        ids = set(request.query.getall("id", []))
        found = [a for a in self.accounts.values() if a.login in logins or a.user_id in ids]
        return _json(200, {"data": [account.as_helix() for account in found]})

    async def _subscribe(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        body = await request.json()
        transport, condition = body.get("transport", {}), body.get("condition", {})
        session = self.sessions.get(transport.get("session_id", ""))
        if transport.get("method") != "websocket" or session is None:
            return _bad_request("websocket transport session does not exist or has disconnected")
        if (body.get("type"), body.get("version")) != ("channel.chat.message", "1"):
            return _bad_request(f"unsupported subscription {body.get('type')!r}")
        if "user:read:chat" not in caller.scopes:
            return _json(403, {"error": "Forbidden", "status": 403, "message": "missing scope"})
        if condition.get("user_id") != caller.account.user_id:
            return _json(
                403,
                {"error": "Forbidden", "status": 403, "message": "user_id is not the token's user"},
            )
        for existing in session.subscriptions.values():
            if existing["condition"] == condition:
                return _json(
                    409, {"error": "Conflict", "status": 409, "message": "subscription exists"}
                )
        subscription = {
            "id": str(uuid.uuid4()),
            "status": "enabled",
            "type": "channel.chat.message",
            "version": "1",
            "condition": condition,
            "created_at": _now(),
            "transport": {
                "method": "websocket",
                "session_id": session.id,
                "connected_at": session.connected_at,
            },
            "cost": 0,
        }
        session.subscriptions[subscription["id"]] = subscription
        self._notify()
        return _json(
            202, {"data": [subscription], "total": 1, "total_cost": 0, "max_total_cost": 10}
        )

    async def _chat_message(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        body = await request.json()
        if "user:write:chat" not in caller.scopes:
            return _json(401, {"error": "Unauthorized", "status": 401, "message": "missing scope"})
        if body.get("sender_id") != caller.account.user_id:
            return _bad_request("The sender must have authorized the app with the user:write:chat")
        if not isinstance(body.get("message"), str) or len(body["message"]) > MAX_MESSAGE_CHARS:
            return _bad_request("The message field is missing or longer than 500 characters")
        if self.arrival_delays_s:
            await asyncio.sleep(self.arrival_delays_s.pop(0))
        self.sent.append(body)
        self.sent_at.append(asyncio.get_running_loop().time())
        self._notify()
        return _json(
            200, {"data": [{"message_id": str(uuid.uuid4()), "is_sent": True, "drop_reason": None}]}
        )

    # -- EventSub websocket --------------------------------------------------------------

    async def _eventsub(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websockets:
            return web.Response(status=503, text="service unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        keepalive = min(max(int(request.query.get("keepalive_timeout_seconds", "10")), 10), 600)
        session = Session(str(uuid.uuid4()), ws, keepalive, _now())
        moved = self.sessions.get(request.query.get("reconnect_id", ""))
        if moved is not None:  # a session_reconnect: the subscriptions come along
            session.subscriptions, moved.subscriptions = moved.subscriptions, {}
        self.sessions[session.id] = session
        payload = {"session": self._session_object(session, status="connected")}
        await ws.send_str(_frame("session_welcome", payload))
        self.welcomes += 1
        self._notify()
        keepalive_task = asyncio.create_task(self._keep_alive(session))
        self._tasks.add(keepalive_task)
        try:
            async for received in ws:
                if received.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await ws.close(code=INBOUND_TRAFFIC, message=b"client sent inbound traffic")
        finally:
            keepalive_task.cancel()
            self._tasks.discard(keepalive_task)
            self.sessions.pop(session.id, None)  # its subscriptions end with it
            self._notify()
        return ws

    async def _keep_alive(self, session: Session) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not session.ws.closed:
                await asyncio.sleep(session.keepalive_s / 2)
                await session.ws.send_str(_frame("session_keepalive", {}))

    def _session_object(self, session: Session, *, status: str, url: str | None = None) -> dict:
        return {
            "id": session.id,
            "status": status,
            "connected_at": session.connected_at,
            "keepalive_timeout_seconds": None if url else session.keepalive_s,
            "reconnect_url": url,
        }

    def _chat_event(
        self, chatter: Account, text: str, badges: tuple[str, ...], message_id: str
    ) -> dict[str, Any]:
        channel = self.channel
        return {
            "broadcaster_user_id": channel.user_id,
            "broadcaster_user_login": channel.login,
            "broadcaster_user_name": channel.display_name,
            "chatter_user_id": chatter.user_id,
            "chatter_user_login": chatter.login,
            "chatter_user_name": chatter.display_name,
            "message_id": message_id,
            "message": {
                "text": text,
                "fragments": [
                    {
                        "type": "text",
                        "text": text,
                        "cheermote": None,
                        "emote": None,
                        "mention": None,
                    }
                ],
            },
            "color": "#1E90FF",
            "badges": [{"set_id": badge, "id": "1", "info": ""} for badge in badges],
            "message_type": "text",
            "cheer": None,
            "reply": None,
            "channel_points_custom_reward_id": None,
            "channel_points_animation_id": None,
            "source_broadcaster_user_id": None,
            "source_broadcaster_user_login": None,
            "source_broadcaster_user_name": None,
            "source_message_id": None,
            "source_badges": None,
            "is_source_only": None,
        }

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


@contextlib.asynccontextmanager
async def running_twitch(**options: Any) -> AsyncIterator[FakeTwitch]:
    """A started FakeTwitch, stopped afterwards."""
    twitch = FakeTwitch(**options)
    await twitch.start()
    try:
        yield twitch
    finally:
        await twitch.stop()


def _frame(kind: str, payload: dict[str, Any], *, subscription_type: str | None = None) -> str:
    metadata: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "message_type": kind,
        "message_timestamp": _now(),
    }
    if subscription_type is not None:
        metadata |= {"subscription_type": subscription_type, "subscription_version": "1"}
    return json.dumps({"metadata": metadata, "payload": payload})


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def _bad_request(message: str) -> web.Response:
    return _json(400, {"error": "Bad Request", "status": 400, "message": message})


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
