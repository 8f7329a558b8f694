"""Replies to Twitch within its chat rate limit, with a margin; moderators' replies go first.

Example::

    outbox = Outbox(send_to_twitch, limit=20)            # [chat] replies_per_30s
    task = asyncio.create_task(outbox.run())
    outbox.put(Reply("model_0000_demo_v3, batch 12,345"))                  # a viewer's !stats
    outbox.put(Reply("Switched to model_0003_xception_v2", priority=Priority.HIGH))
    outbox.dropped[Priority.NORMAL]                      # replies the limit cost, by priority

Twitch allows an account 20 chat messages per 30 s (100 as a moderator or the
broadcaster) and drops what comes over it. It counts a message when the
message reaches it, which we never see; what we see is the instant its POST
was answered, and Twitch had the message by then. So a reply counts in the
window from the moment its send *finished* (failed sends too: Twitch may
have had them), and the next one starts only when the window allows: the
times Twitch receives them are then at least a window apart for every
`limit` replies, however long each request took on the way. Counting from
before the POST, as this module once did, let a slow first request and a
quick later one arrive 29.98 s apart with 21 replies between.

On top of that the window is `MARGIN_S` (2 s) longer than Twitch's 30 s:
Helix answers for Twitch's chat servers, which may count a message a moment
after the answer, and their clocks are not ours. The margin is in time, not
one message fewer, because it then holds for any such delay up to 2 s
however the replies bunch (19 in a burst and one more a second later is
just as close to the limit as 20). It costs 6% of the rate (20 per 32 s)
and is not configurable: `[chat] replies_per_30s` says which limit Twitch
applies to the account; the margin only keeps us safely under it.

Under spam the limit decides who waits and who is dropped:

- Replies to the broadcaster and moderators and announcements of a vote's
  result (`Priority.HIGH`) are sent before any viewer's reply, and the last
  `HIGH_RESERVE` (2) messages of each window are theirs alone: a `!switch`
  is confirmed at once even when viewers' questions spent the rest.
- At most `max_waiting` (10) replies wait. When one more comes, the oldest
  viewer reply goes (a stale answer helps nobody); a viewer reply never
  pushes out a high one, and a high one goes only when all that wait are
  high.
- Every drop is counted (`dropped`, shown on the Twitch line of the
  console and /api/status) and logged: each high one, viewer ones in a line
  at most every `DROP_LOG_EVERY_S`.

A failed send is logged and the outbox goes on: chat must never stop the stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from bot.messages import Priority, Reply

log = logging.getLogger("charles.chat")

# Twitch's chat window, and what we add to it (see the module docstring for why).
WINDOW_S = 30.0
MARGIN_S = 2.0
MAX_WAITING = 10
# Messages of each window that only high-priority replies may use (fewer when the limit is tiny).
HIGH_RESERVE = 2
# Dropped viewer replies are logged in one line at most this often (each high one at once).
DROP_LOG_EVERY_S = 10.0
SHOWN_CHARS = 80


class ReplyQueue:
    """Which reply may go next and when: `Outbox`'s rules, with the times passed in.

    Raises `ValueError` naming the argument, its value and what is accepted.
    """

    def __init__(
        self,
        *,
        limit: int,
        window_s: float = WINDOW_S,
        margin_s: float = MARGIN_S,
        max_waiting: int = MAX_WAITING,
        reserve: int = HIGH_RESERVE,
    ) -> None:
        _check("limit", limit, _whole(limit) and limit >= 1, "an integer >= 1")
        _check("window_s", window_s, _finite(window_s) and window_s > 0, "a finite number > 0")
        _check("margin_s", margin_s, _finite(margin_s) and margin_s >= 0, "a finite number >= 0")
        _check(
            "max_waiting",
            max_waiting,
            _whole(max_waiting) and max_waiting >= 1,
            "an integer >= 1",
        )
        _check("reserve", reserve, _whole(reserve) and reserve >= 0, "an integer >= 0")
        self.limit = limit
        self.window_s = window_s + margin_s
        # A viewer reply may always go eventually: at least one message per window is theirs.
        self.reserve = min(reserve, limit - 1)
        self.max_waiting = max_waiting
        self._sent: collections.deque[tuple[float, Priority]] = collections.deque()
        self._waiting: dict[Priority, collections.deque[Reply]] = {
            Priority.HIGH: collections.deque(),
            Priority.NORMAL: collections.deque(),
        }

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._waiting.values())

    def put(self, reply: Reply) -> Reply | None:
        """Queue `reply`; the reply dropped to make room (perhaps `reply` itself), or None."""
        high, normal = self._waiting[Priority.HIGH], self._waiting[Priority.NORMAL]
        dropped: Reply | None = None
        if len(self) >= self.max_waiting:
            if normal:
                dropped = normal.popleft()
            elif reply.priority is Priority.NORMAL:
                return reply  # every waiting reply is a high one: they stay
            else:
                dropped = high.popleft()
        self._waiting[reply.priority].append(reply)
        return dropped

    def take(self, now: float) -> Reply | None:
        """The reply to send at `now` (removed from the queue), or None if none may go yet."""
        for priority in (Priority.HIGH, Priority.NORMAL):
            if self._waiting[priority] and self._wait_s(priority, now) == 0.0:
                return self._waiting[priority].popleft()
        return None

    def wait_s(self, now: float) -> float | None:
        """Seconds until `take` gives a reply (0.0: now), or None while nothing waits."""
        waits = [self._wait_s(priority, now) for priority, queue in self._waiting.items() if queue]
        return min(waits) if waits else None

    def record(self, now: float, priority: Priority) -> None:
        """A send finished at `now`: Twitch had the reply by then, if it got it at all."""
        self._sent.append((now, priority))

    def _wait_s(self, priority: Priority, now: float) -> float:
        """How long until a reply of `priority` fits the window (0.0: now).

        Any reply fits while fewer than `limit` were sent within the window; a
        viewer's only while the reserve's share not yet used by high replies
        stays free too.
        """
        sent = self._sent
        while sent and now - sent[0][0] >= self.window_s:
            sent.popleft()
        high = sum(1 for _, kind in sent if kind is Priority.HIGH)
        # Now, else the first instant at which enough of the oldest replies left the window.
        for leaving in range(len(sent) + 1):
            if leaving:
                high -= sent[leaving - 1][1] is Priority.HIGH
            unused_reserve = 0 if priority is Priority.HIGH else max(self.reserve - high, 0)
            if len(sent) - leaving + unused_reserve < self.limit:
                return max(sent[leaving - 1][0] + self.window_s - now, 0.0) if leaving else 0.0
        raise AssertionError("unreachable: an empty window fits any reply (reserve < limit)")


class Outbox:
    """Replies waiting for the rate limit, sent one at a time by `run`.

    `clock` (monotonic seconds) is injectable so a test can read the times
    the window was counted by; `run` waits on asyncio's own clock, which is
    the same monotonic one by default.
    """

    def __init__(
        self,
        send: Callable[[Reply], Awaitable[None]],
        *,
        limit: int,
        window_s: float = WINDOW_S,
        margin_s: float = MARGIN_S,
        max_waiting: int = MAX_WAITING,
        reserve: int = HIGH_RESERVE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = ReplyQueue(
            limit=limit,
            window_s=window_s,
            margin_s=margin_s,
            max_waiting=max_waiting,
            reserve=reserve,
        )
        self.sent = 0  # sends finished, whether Twitch took them or not
        self.dropped: collections.Counter[Priority] = collections.Counter()
        self._send = send
        self._clock = clock
        self._ready = asyncio.Event()
        self._drops_logged_at = -math.inf
        self._drops_logged = 0

    def put(self, reply: Reply) -> None:
        """Queue a reply (never blocks); when 10 wait, the least important one is dropped."""
        dropped = self.queue.put(reply)
        if dropped is not None:
            self._count_drop(dropped)
        self._ready.set()

    async def run(self) -> None:
        """Send queued replies as the limit allows, until cancelled."""
        while True:
            wait = self.queue.wait_s(self._clock())
            if wait is None or wait > 0.0:
                # A new reply may be allowed sooner (a high one into the reserve): wake on it.
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), timeout=wait)
                continue
            reply = self.queue.take(self._clock())
            if reply is None:
                continue
            try:
                await self._send(reply)
            except Exception as error:  # a dead link or a refusal must not end the outbox
                log.warning("chat reply not sent: %r (%s)", reply.text[:SHOWN_CHARS], error)
            finally:
                # Counted when the send is over, cancelled or not: Twitch may have had it.
                self.queue.record(self._clock(), reply.priority)
                self.sent += 1

    def describe_drops(self) -> str:
        """Empty while nothing was dropped, else "12 replies dropped over Twitch's limit"."""
        total = sum(self.dropped.values())
        if not total:
            return ""
        high = self.dropped[Priority.HIGH]
        text = f"{total:,} {'reply' if total == 1 else 'replies'} dropped over Twitch's limit"
        return f"{text} ({high:,} to moderators)" if high else text

    def _count_drop(self, reply: Reply) -> None:
        self.dropped[reply.priority] += 1
        if reply.priority is Priority.HIGH:
            log.warning(
                "chat reply to a moderator dropped: %d high-priority replies waited already "
                "(%d dropped so far): %r",
                self.queue.max_waiting,
                self.dropped[Priority.HIGH],
                reply.text[:SHOWN_CHARS],
            )
            return
        log.debug("chat reply dropped over Twitch's rate limit: %r", reply.text[:SHOWN_CHARS])
        now = self._clock()
        if now - self._drops_logged_at >= DROP_LOG_EVERY_S:
            count = self.dropped[Priority.NORMAL]
            log.warning(
                "chat replies over Twitch's rate limit: %d viewer replies dropped so far "
                "(%d since the last line; moderators' replies are kept)",
                count,
                count - self._drops_logged,
            )
            self._drops_logged_at, self._drops_logged = now, count


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value: object, ok: bool, accepted: str) -> None:
    if not ok:
        raise ValueError(f"outbox {name} = {value!r} is not accepted; accepted: {accepted}")
