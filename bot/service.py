"""The app's chat: one router, fed by Twitch when configured, else by the console; /api/chat.

Example::

    chat = ChatBot(config, actions, hub_token=token)
    chat.add_routes(hub.app)        # POST /api/chat, before the hub starts
    await chat.start()              # after the processes run
    ...
    await chat.stop()               # first thing on shutdown

Twitch (`[twitch] channel` set) or the terminal (`[chat] console`, when stdin
is a terminal) carry viewers' lines to the `Router`; `POST /api/chat`
(`charles-stream chat`) reaches the same router as the broadcaster, with the
hub token. A vote that closes is announced where chat happens: Twitch, or
the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from bot.commands import Router
from bot.console import ConsoleChat
from bot.messages import ChatMessage, Reply
from bot.permissions import BROADCASTER
from bot.tokens import TokenStore
from bot.twitch import TwitchChat
from engine.core.actions import Actions
from engine.core.auth import token_problem
from engine.core.config import TWITCH_LOGIN, Config
from engine.core.schema import parse_json_object

log = logging.getLogger("charles.chat")

CHAT_PATH = "/api/chat"
# Longer than any Twitch message (500): the router copes with anything, this keeps bodies sane.
MAX_CHAT_CHARS = 10_000
DEFAULT_API_USER = "streamer"
# A running vote is checked at least this often (it closes at most this late).
VOTE_CHECK_S = 1.0


class ChatBot:
    """Starts and stops the chat transports around one `Router`."""

    def __init__(self, config: Config, actions: Actions, *, hub_token: str) -> None:
        self.router = Router(config.chat, actions, source=config.source)
        self.state = actions.state
        self.twitch = (
            TwitchChat(
                config.twitch,
                config.chat,
                self.router,
                self.state,
                TokenStore(config.app.data_dir),
            )
            if config.twitch.configured
            else None
        )
        wants_console = self.twitch is None and config.chat.console and _stdin_is_terminal()
        self.console = ConsoleChat(self.router) if wants_console else None
        self._token = hub_token.encode()
        self._tasks: list[asyncio.Task[None]] = []

    def add_routes(self, app: web.Application) -> None:
        """`POST /api/chat` `{"text": "...", "user": "..."}` -> `{"reply": "..." | null}`."""
        app.router.add_post(CHAT_PATH, self._chat_api)

    async def start(self) -> None:
        """Start the transport (Twitch or the console) and the vote clock."""
        self._start(self._close_votes(), "chat-votes")
        if self.twitch is not None:
            self._start(self.twitch.run(), "twitch")
        elif self.console is not None:
            self._start(self.console.run(), "console-chat")
            log.info("console chat: type !help and Enter (you are the broadcaster)")

    async def stop(self) -> None:
        """Stop reading chat and close the Twitch link."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.twitch is not None:
            await self.twitch.close()

    def announce(self, reply: Reply) -> None:
        """Post to wherever chat happens (Twitch, else the terminal)."""
        if self.twitch is not None:
            self.twitch.announce(reply)
        elif self.console is not None:
            self.console.show(reply)

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_log_failure)
        self._tasks.append(task)

    async def _close_votes(self) -> None:
        while True:
            closes_in = self.router.vote_closes_in()
            await asyncio.sleep(VOTE_CHECK_S if closes_in is None else min(closes_in, VOTE_CHECK_S))
            try:
                announcement = await self.router.close_due_vote()
            except Exception:  # a vote that cannot be applied must not stop later ones
                log.exception("closing a chat vote failed")
                continue
            if announcement is not None:
                self.announce(announcement)

    async def _chat_api(self, request: web.Request) -> web.Response:
        problem = token_problem(request.headers.get("Authorization"), self._token)
        if problem is not None:
            log.warning("rejected POST %s from %s: %s", CHAT_PATH, request.remote, problem)
            return _error(401, problem)
        try:
            text, user = _chat_request(await request.read())
        except ValueError as error:
            return _error(400, str(error))
        reply = await self.router.handle(ChatMessage(user, text, BROADCASTER))
        return web.json_response({"reply": reply.text if reply else None})


def _chat_request(body: bytes) -> tuple[str, str]:
    """(text, user) of a /api/chat body; ValueError naming the field and what is accepted."""
    # Not UTF-8, not an object or nested deeply: a 400 worded like the hub's API, never a 500.
    data = parse_json_object(body, where="the body", error=ValueError)
    unknown = sorted(set(data) - {"text", "user"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; accepted: text, user")
    text = data.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_CHAT_CHARS:
        raise ValueError(
            f"field 'text' = {json.dumps(text)[:80]} is not accepted; accepted: a string of "
            f"1-{MAX_CHAT_CHARS:,} characters"
        )
    user = data.get("user", DEFAULT_API_USER)
    if not isinstance(user, str) or not TWITCH_LOGIN.fullmatch(user):
        raise ValueError(
            f"field 'user' = {json.dumps(user)[:80]} is not accepted; accepted: 3-25 letters, "
            "digits or '_'"
        )
    return text, user


def _log_failure(task: asyncio.Task[None]) -> None:
    """A chat task that dies of a bug says so at once (chat is off, the stream goes on)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("chat task %s failed", task.get_name(), exc_info=task.exception())


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _stdin_is_terminal() -> bool:
    with contextlib.suppress(ValueError, AttributeError):  # closed or replaced stdin
        return sys.stdin.isatty()
    return False
