"""Replies to Twitch within its chat rate limit, in order, never piling up.

Example::

    outbox = Outbox(send_to_twitch, limit=20, window_s=30.0)
    task = asyncio.create_task(outbox.run())
    outbox.put(Reply("model_0000_demo_v3, batch 12,345"))

Twitch allows an account 20 chat messages per 30 s (100 as a moderator or
the broadcaster) and holds back accounts that send more. A reply waits while
the last `limit` replies fall within `window_s`; at most `max_waiting` wait,
and a newer reply pushes out the oldest (a stale answer helps nobody).
A failed send is logged and dropped: chat must never stop the stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from bot.messages import Reply

log = logging.getLogger("charles.chat")

MAX_WAITING = 10


class SlidingWindow:
    """At most `limit` events in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def wait_s(self, now: float) -> float:
        """How long until one more event fits (0.0: now)."""
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now

    def record(self, now: float) -> None:
        """An event happened at `now`."""
        self._times.append(now)


class Outbox:
    """Replies waiting for the rate limit, sent one at a time by `run`."""

    def __init__(
        self,
        send: Callable[[Reply], Awaitable[None]],
        *,
        limit: int,
        window_s: float = 30.0,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.window = SlidingWindow(limit, window_s)
        self.dropped = 0  # replies pushed out by newer ones
        self._send = send
        self._waiting: collections.deque[Reply] = collections.deque(maxlen=max_waiting)
        self._ready = asyncio.Event()

    def put(self, reply: Reply) -> None:
        """Queue a reply (never blocks); the oldest waiting one goes if the queue is full."""
        if len(self._waiting) == self._waiting.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "chat replies over Twitch's rate limit: %d dropped so far", self.dropped
                )
        self._waiting.append(reply)
        self._ready.set()

    async def run(self) -> None:
        """Send queued replies as the limit allows, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._ready.clear()
                await self._ready.wait()
            wait = self.window.wait_s(loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # the newest replies may have pushed out the one we waited for
            reply = self._waiting.popleft()
            self.window.record(loop.time())
            try:
                await self._send(reply)
            except Exception as error:  # a dead link or a refusal must not end the outbox
                log.warning("chat reply not sent: %r (%s)", reply.text[:80], error)
