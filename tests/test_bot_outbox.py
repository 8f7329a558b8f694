"""Replies stay within Twitch's chat rate limit, in order, and never pile up."""

from __future__ import annotations

import asyncio

from bot.messages import Reply
from bot.outbox import Outbox, SlidingWindow


def test_sliding_window_allows_limit_events_per_window():
    window = SlidingWindow(limit=2, window_s=30.0)
    assert window.wait_s(0.0) == 0.0
    window.record(0.0)
    window.record(1.0)
    assert window.wait_s(2.0) == 28.0
    assert window.wait_s(30.0) == 0.0


async def test_outbox_sends_no_more_than_the_limit_within_the_window():
    sent: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def send(reply: Reply) -> None:
        sent.append((loop.time(), reply.text))
        if len(sent) == 5:
            done.set()

    outbox = Outbox(send, limit=2, window_s=0.2)
    task = asyncio.create_task(outbox.run())
    for number in range(5):
        outbox.put(Reply(str(number)))
    await asyncio.wait_for(done.wait(), timeout=5)
    task.cancel()
    assert [text for _, text in sent] == ["0", "1", "2", "3", "4"]
    times = [at for at, _ in sent]
    for first, third in zip(times, times[2:], strict=False):
        assert third - first >= 0.2 - 1e-3  # never a third reply within one window


async def test_outbox_drops_the_oldest_waiting_replies_when_full():
    sent: list[str] = []
    first_out, all_out = asyncio.Event(), asyncio.Event()

    async def send(reply: Reply) -> None:
        sent.append(reply.text)
        first_out.set()
        if len(sent) == 4:
            all_out.set()

    outbox = Outbox(send, limit=1, window_s=0.2, max_waiting=3)
    task = asyncio.create_task(outbox.run())
    outbox.put(Reply("first"))
    await asyncio.wait_for(first_out.wait(), timeout=5)
    for number in range(10):
        outbox.put(Reply(f"waiting {number}"))
    await asyncio.wait_for(all_out.wait(), timeout=5)
    task.cancel()
    assert sent == ["first", "waiting 7", "waiting 8", "waiting 9"]
    assert outbox.dropped == 7


async def test_a_failed_send_does_not_stop_the_outbox():
    sent: list[str] = []
    done = asyncio.Event()

    async def send(reply: Reply) -> None:
        if reply.text == "bad":
            raise ConnectionError("Twitch said no")
        sent.append(reply.text)
        done.set()

    outbox = Outbox(send, limit=10, window_s=1.0)
    task = asyncio.create_task(outbox.run())
    outbox.put(Reply("bad"))
    outbox.put(Reply("good"))
    await asyncio.wait_for(done.wait(), timeout=5)
    task.cancel()
    assert sent == ["good"]
