"""Twitch chat through twitchio 3: EventSub `channel.chat.message` in, Helix Send Chat Message out.

Example::

    twitch = TwitchChat(config.twitch, config.chat, router, state, TokenStore(data_dir))
    task = asyncio.create_task(twitch.run())     # connects, stays connected; cancel to stop
    twitch.announce(Reply("Vote over: switching to model_0003_xception_v2"))
    ...
    task.cancel(); await twitch.close()

This is Twitch's current chat path (IRC is the legacy one): the bot's own user
token subscribes to the channel's chat over the EventSub websocket, and
replies go out through the Helix API, rate-limited by `Outbox` (moderators'
replies first; what the limit drops is counted on the store's Twitch line).
twitchio owns the protocol: the websocket's welcome, keepalive, reconnect and
resubscribe, token validation and refresh. This adapter adds what the stream needs around
it: tokens from `<data_dir>/secrets/` (saved again whenever twitchio
refreshes them), the link's state applied to the app's state as a
`ConnectionChanged` (shown in /api/status and the console), its own retries
with backoff while Twitch cannot be reached at all, and badges turned into
roles for the router. Problems only a person can
fix (no tokens, the wrong account, an unknown channel) stop the retries and
say what to do.

The endpoints come from `[twitch]` (`use_endpoints`), so the same code runs
against Twitch, the Twitch CLI's mock servers or the tests' local server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import twitchio
from twitchio.eventsub import ChatMessageSubscription
from twitchio.eventsub import websockets as eventsub_websockets

from bot.commands import Router
from bot.messages import ChatMessage, Reply
from bot.outbox import Outbox
from bot.permissions import roles_from_badges
from bot.tokens import SCOPES, TokenStore, TwitchTokens
from engine.core.config import ChatConfig, TwitchConfig
from engine.core.errors import ConfigError
from engine.core.store import AppState, ConnectionChanged

log = logging.getLogger("charles.twitch")

# Retries while Twitch cannot be reached at all: doubling from 1 s up to a minute.
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
# How often the EventSub link's state is read into the app's state.
WATCH_S = 0.25
# twitchio retries a dropped websocket with backoff up to 90 s; past this we start over.
LOST_AFTER_S = 120.0
# What passes with time: the network, Twitch's servers, a websocket that did not open.
RETRYABLE = (OSError, TimeoutError, aiohttp.ClientError, twitchio.TwitchioException)
SHOWN_ERROR_CHARS = 200


class TwitchSetupProblem(Exception):
    """Something only the streamer can fix (tokens, account, channel); retrying will not help."""


def use_endpoints(config: TwitchConfig) -> None:
    """Point twitchio at `[twitch]`'s Helix, auth and EventSub URLs (the one place they are set)."""
    twitchio.Route.BASE = _with_slash(config.helix_url)
    twitchio.Route.ID_BASE = _with_slash(config.auth_url)
    eventsub_websockets.WSS = config.eventsub_url


class TwitchChat:
    """One channel's chat: messages to the router, replies and announcements back."""

    def __init__(
        self,
        config: TwitchConfig,
        chat: ChatConfig,
        router: Router,
        state: AppState,
        store: TokenStore,
    ) -> None:
        self.config = config
        self.router = router
        self.state = state
        self.store = store
        self.outbox = Outbox(self._send, limit=chat.replies_per_30s)
        self._client: twitchio.Client | None = None
        self._channel: twitchio.PartialUser | None = None
        self._tokens: TwitchTokens | None = None
        self._described = ""
        self._link_state = ""  # the last _set_state text, without the drop count

    async def run(self) -> None:
        """Connect and stay connected until cancelled; returns early only on a setup problem."""
        sender = asyncio.create_task(self.outbox.run(), name="twitch-outbox")
        delay = FIRST_RETRY_S
        try:
            while True:
                self._set_state("connecting")
                try:
                    await self._connect()
                except (TwitchSetupProblem, ConfigError) as problem:
                    self._set_state(f"not working: {problem}")
                    log.error("Twitch chat is off: %s", problem)
                    return
                except RETRYABLE as error:
                    await self.close()
                    reason = _short(str(error) or type(error).__name__)
                    self._set_state(f"reconnecting in {delay:.0f} s: {reason}")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_S)
                    continue
                delay = FIRST_RETRY_S
                await self._watch()
                await self.close()
        except asyncio.CancelledError:
            self._set_state("off")
            raise
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await self.close()

    def announce(self, reply: Reply) -> None:
        """Post something nobody asked for (a vote result) within the rate limit."""
        self.outbox.put(reply)

    async def close(self) -> None:
        """Close twitchio's client (its websocket and HTTP sessions), if one is open."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- connecting ----------------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            await self._join()
        except twitchio.HTTPException as error:
            if _worth_retrying(error):
                raise
            raise TwitchSetupProblem(f"Twitch refused a request: {_short(str(error))}") from None

    async def _join(self) -> None:
        """Tokens checked, channel looked up, its chat subscribed to."""
        config = self.config
        tokens = self.store.load()
        if tokens is None:
            raise TwitchSetupProblem(
                f"no Twitch tokens in {self.store.path}; run `charles-stream twitch auth`"
            )
        if tokens.client_id != config.client_id:
            raise TwitchSetupProblem(
                f"the stored tokens are for Client ID {tokens.client_id!r}, [twitch] client_id is "
                f"{config.client_id!r}; run `charles-stream twitch auth` again"
            )
        self._tokens = tokens
        use_endpoints(config)
        client = twitchio.Client(client_id=config.client_id, fetch_client_user=False)
        client.add_listener(self._on_message, event="event_message")
        client.add_listener(self._on_token_refreshed, event="event_token_refreshed")
        self._client = client
        await client.login(token=tokens.access, load_tokens=False, save_tokens=False)
        try:
            validated = await client.add_token(tokens.access, tokens.refresh)
        except twitchio.InvalidTokenException:
            raise TwitchSetupProblem(
                "Twitch refused the stored token and its refresh; run `charles-stream twitch auth`"
            ) from None
        login = (validated.login or "").lower()
        if login != config.bot_login:
            raise TwitchSetupProblem(
                f"the stored token is {login or 'an app token'}'s, the bot account is "
                f"{config.bot_login!r} ([twitch] bot, else channel); run `charles-stream twitch "
                f"auth` signed in as {config.bot_login}"
            )
        missing = sorted(set(SCOPES) - set(validated.scopes))
        if missing:
            raise TwitchSetupProblem(
                f"the stored token lacks {', '.join(missing)}; run `charles-stream twitch auth`"
            )
        channel = config.channel.lower()
        users = await client.fetch_users(logins=[channel], token_for=tokens.user_id)
        if not users:
            raise TwitchSetupProblem(f"Twitch has no channel {channel!r} ([twitch] channel)")
        self._channel = client.create_partialuser(users[0].id, channel)
        subscription = ChatMessageSubscription(
            broadcaster_user_id=users[0].id, user_id=tokens.user_id
        )
        await client.subscribe_websocket(subscription, token_for=tokens.user_id)
        self._described = f"connected as {login} in #{channel}"
        log.info("Twitch chat: %s", self._described)

    async def _watch(self) -> None:
        """Mirror the EventSub link's state until it has been gone for LOST_AFTER_S."""
        loop = asyncio.get_running_loop()
        lost_since: float | None = None
        while True:
            if self._eventsub_connected():
                lost_since = None
                self._set_state(self._described)
            else:
                lost_since = lost_since or loop.time()
                if loop.time() - lost_since > LOST_AFTER_S:
                    log.warning("Twitch EventSub link gone for %.0f s: starting over", LOST_AFTER_S)
                    return
                self._set_state("reconnecting: the EventSub link dropped")
            await asyncio.sleep(WATCH_S)

    def _eventsub_connected(self) -> bool:
        # twitchio 3.3 has no public view of its EventSub sockets: `_websockets` maps a token's
        # user ID to {session ID: Websocket}, and each Websocket says whether it is connected.
        client = self._client
        sockets = client._websockets.values() if client is not None else ()
        return any(socket.connected for by_session in sockets for socket in by_session.values())

    # -- events --------------------------------------------------------------------------

    async def _on_message(self, payload: twitchio.ChatMessage) -> None:
        tokens = self._tokens
        if tokens is not None and payload.chatter.id == tokens.user_id != payload.broadcaster.id:
            # A bot account's own replies come back as chat. On the broadcaster's own account
            # they come back too, but the streamer's lines must count: replies never start
            # with the prefix, so they run nothing either way.
            return
        message = ChatMessage(
            user=payload.chatter.display_name or payload.chatter.name or payload.chatter.id,
            text=payload.text,
            roles=roles_from_badges(badge.set_id for badge in payload.badges),
            user_id=payload.chatter.id,
            id=payload.id,
        )
        reply = await self.router.handle(message)
        if reply is not None:
            self.outbox.put(reply)

    async def _on_token_refreshed(self, payload: Any) -> None:
        tokens = self._tokens
        if tokens is None or payload.user_id != tokens.user_id:
            return
        # Device-code refresh tokens work once: the new pair must be on disk now.
        self._tokens = TwitchTokens(
            access=payload.token,
            refresh=payload.refresh_token,
            user_id=tokens.user_id,
            login=tokens.login,
            scopes=tuple(payload.scopes),
            client_id=tokens.client_id,
        )
        await asyncio.to_thread(self.store.save, self._tokens)
        log.info("Twitch token refreshed and saved to %s", self.store.path)

    async def _send(self, reply: Reply) -> None:
        channel, tokens = self._channel, self._tokens
        if channel is None or tokens is None or self._client is None:
            raise ConnectionError("not connected to Twitch")
        sent = await channel.send_message(
            reply.text,
            sender=tokens.user_id,
            token_for=tokens.user_id,
            reply_to_message_id=reply.reply_to or None,
        )
        if not sent.sent:
            log.warning(
                "Twitch dropped a reply (%s: %s): %r",
                sent.dropped_code,
                sent.dropped_message,
                reply.text[:80],
            )

    def _set_state(self, text: str) -> None:
        """The link's state, and the replies the rate limit cost, on the store's Twitch line.

        A change of the link is also an event line; a new drop count only updates the line
        (spam would otherwise fill the events).
        """
        drops = self.outbox.describe_drops()
        shown = f"{text} · {drops}" if drops else text
        if self.state.connections.get("twitch") == shown:
            return
        changed = text != self._link_state
        self._link_state = text
        event = f"twitch: {text}" if changed else ""
        self.state.apply(ConnectionChanged("twitch", shown, event=event))
        if changed:
            log.info("Twitch: %s", text)


class _NoStarletteNotice(logging.Filter):
    """twitchio warns about its optional Starlette adapter on every Client; we use neither."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "StarletteAdapter" not in record.getMessage()


logging.getLogger("twitchio.client").addFilter(_NoStarletteNotice())


def _worth_retrying(error: twitchio.HTTPException) -> bool:
    """Server trouble and rate limits pass; other 4xx answers stay the same until fixed."""
    return error.status >= 500 or error.status == 429 or error.status < 400


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_ERROR_CHARS else text[:SHOWN_ERROR_CHARS] + "..."
