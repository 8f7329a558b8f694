"""Replies stay under Twitch's chat rate limit with a margin; moderators' replies go first.

The window rules are checked on `ReplyQueue` with times passed in (a spam
burst over virtual minutes takes milliseconds); `Outbox` itself with short
real windows; the whole path against the local Twitch in test_bot_twitch.py.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from bot.messages import Priority, Reply
from bot.outbox import MARGIN_S, WINDOW_S, Outbox, ReplyQueue

HIGH, NORMAL = Priority.HIGH, Priority.NORMAL


def viewer(text: str) -> Reply:
    return Reply(text)


def moderator(text: str) -> Reply:
    return Reply(text, priority=HIGH)


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of `times` that fall within any `window_s` (half-open, as Twitch's may be)."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def simulate(
    queue: ReplyQueue,
    puts: list[tuple[float, Reply]],
    *,
    reach_s: tuple[float, ...] = (),
    answer_s: float = 0.05,
) -> list[tuple[float, Reply]]:
    """Send what `queue` allows in virtual time; (when Twitch received it, reply) for each.

    `puts`: (when, reply) in time order. The n-th request takes `reach_s[n]`
    (default 0.05 s) to reach Twitch, which answers `answer_s` later; the
    next send starts when that answer is in, as `Outbox.run` does.
    """
    received: list[tuple[float, Reply]] = []
    pending = list(puts)
    now = 0.0
    while pending or len(queue):
        while pending and pending[0][0] <= now:
            queue.put(pending.pop(0)[1])
        reply = queue.take(now)
        if reply is None:
            wait = queue.wait_s(now)
            next_put = pending[0][0] if pending else math.inf
            now = min(now + wait if wait is not None else math.inf, next_put)
            continue
        reach = reach_s[len(received)] if len(received) < len(reach_s) else 0.05
        received.append((now + reach, reply))
        now += reach + answer_s
        queue.record(now, reply.priority)
    return received


def test_a_spam_burst_never_puts_more_than_20_replies_in_32_s_where_twitch_counts():
    queue = ReplyQueue(limit=20)
    puts = [(index * 0.05, viewer(f"stats {index}")) for index in range(120)]
    # Three moderators when viewers have spent their 18: two go at once, one waits.
    puts += [(5.0, moderator(f"Switched {index}")) for index in range(3)]
    puts.sort(key=lambda put: put[0])
    # The first request is slow on its way to Twitch: counted from before the POST, the 21st
    # reply would reach Twitch 29.5 s after the first.
    received = simulate(queue, puts, reach_s=(2.5,))
    times = [at for at, _ in received]
    assert most_in_any_window(times, WINDOW_S + MARGIN_S) == 20
    assert times[20] - times[0] >= WINDOW_S + MARGIN_S
    # 20 at once (18 viewers, 2 moderators), then the 10 that waited; the rest were dropped.
    assert len(received) == 30
    texts = [reply.text for _, reply in received]
    assert {"Switched 0", "Switched 1", "Switched 2"} <= set(texts)
    assert texts[20] == "Switched 2"  # it waited, and went first when the window allowed


def send(queue: ReplyQueue, now: float, answered: float | None = None) -> str | None:
    """Take the reply allowed at `now` and count it as answered at `answered` (default: now)."""
    reply = queue.take(now)
    if reply is None:
        return None
    queue.record(now if answered is None else answered, reply.priority)
    return reply.text


def test_the_window_counts_a_reply_from_when_its_post_was_answered():
    queue = ReplyQueue(limit=2, window_s=10.0, margin_s=0.0, reserve=0)
    for text in ("a", "b", "c"):
        queue.put(viewer(text))
    assert send(queue, 0.0, answered=3.0) == "a"  # a slow POST: answered 3 s after it started
    assert send(queue, 3.0, answered=3.1) == "b"
    assert queue.take(12.9) is None  # 10 s after "a" started, but not after it was answered
    assert queue.wait_s(12.9) == pytest.approx(0.1)
    assert send(queue, 13.0) == "c"


def test_the_window_is_twitchs_30_s_and_a_2_s_margin():
    queue = ReplyQueue(limit=20, max_waiting=21)
    for index in range(21):
        queue.put(moderator(f"switched {index}"))
    assert [send(queue, 0.0) for _ in range(20)] == [f"switched {index}" for index in range(20)]
    assert queue.wait_s(30.0) == pytest.approx(2.0)
    assert send(queue, 32.0) == "switched 20"


def test_moderators_replies_go_before_viewers_replies_that_waited_longer():
    queue = ReplyQueue(limit=1, window_s=30.0, margin_s=0.0)
    queue.put(viewer("first"))
    assert send(queue, 0.0) == "first"
    for index in range(3):
        queue.put(viewer(f"stats {index}"))
    queue.put(moderator("Switched to model_0003_xception_v1"))
    sent = []
    now = 0.0
    while len(queue):
        now += queue.wait_s(now)
        sent.append(send(queue, now))
    assert sent == ["Switched to model_0003_xception_v1", "stats 0", "stats 1", "stats 2"]


def test_viewers_leave_the_last_two_of_each_window_to_moderators():
    queue = ReplyQueue(limit=20)
    for index in range(25):
        queue.put(viewer(f"stats {index}"))
        send(queue, 0.0)
    assert queue.take(0.0) is None  # 18 sent: viewers have spent their part
    for text in ("Switched", "Switched again", "and again"):
        queue.put(moderator(text))
    assert send(queue, 1.0) == "Switched"
    assert send(queue, 1.0) == "Switched again"
    assert queue.take(1.0) is None  # 20 in the window: now moderators wait too
    assert queue.wait_s(1.0) == pytest.approx(WINDOW_S + MARGIN_S - 1.0)


def test_once_moderators_had_their_two_viewers_may_use_the_whole_window():
    queue = ReplyQueue(limit=20, max_waiting=20)
    queue.put(moderator("Switched"))
    queue.put(moderator("Switched again"))
    assert send(queue, 0.0) == "Switched"
    assert send(queue, 0.0) == "Switched again"
    for index in range(20):
        queue.put(viewer(f"stats {index}"))
    sent = [send(queue, 1.0) for _ in range(20)]
    assert sent == [f"stats {index}" for index in range(18)] + [None, None]
    # When the moderators' two leave the window, their reserve is free again, not the viewers'.
    assert queue.wait_s(32.0) == pytest.approx(1.0)


def test_a_tiny_limit_leaves_viewers_one_reply_per_window():
    queue = ReplyQueue(limit=1)
    assert queue.reserve == 0
    queue.put(viewer("stats"))
    assert queue.take(0.0).text == "stats"


def test_a_full_queue_drops_the_oldest_viewer_reply_first():
    queue = ReplyQueue(limit=1, max_waiting=3)
    assert queue.put(moderator("switched 1")) is None
    assert queue.put(viewer("stats 1")) is None
    assert queue.put(viewer("stats 2")) is None
    assert queue.put(moderator("switched 2")).text == "stats 1"
    assert queue.put(viewer("stats 3")).text == "stats 2"
    assert queue.put(moderator("switched 3")).text == "stats 3"


def test_a_viewer_reply_never_pushes_out_a_moderators():
    queue = ReplyQueue(limit=1, max_waiting=2)
    queue.put(moderator("switched 1"))
    queue.put(moderator("switched 2"))
    assert queue.put(viewer("stats")).text == "stats"
    # Only when every waiting reply is a moderator's does the oldest of them go.
    assert queue.put(moderator("switched 3")).text == "switched 1"
    assert [queue.take(0.0).text] == ["switched 2"]


def test_under_spam_every_moderator_confirmation_is_sent():
    queue = ReplyQueue(limit=20)
    puts: list[tuple[float, Reply]] = []
    for index in range(100):
        puts.append((index * 0.1, viewer(f"stats {index}")))
        if index % 20 == 10:
            puts.append((index * 0.1, moderator(f"Switched {index}")))
    received = simulate(queue, puts)
    texts = [reply.text for _, reply in received]
    assert [text for text in texts if text.startswith("Switched")] == [
        "Switched 10",
        "Switched 30",
        "Switched 50",
        "Switched 70",
        "Switched 90",
    ]
    assert most_in_any_window([at for at, _ in received], WINDOW_S + MARGIN_S) <= 20


@pytest.mark.parametrize(
    ("argument", "value", "accepted"),
    [
        ("limit", 0, "an integer >= 1"),
        ("limit", True, "an integer >= 1"),
        ("window_s", math.nan, "a finite number > 0"),
        ("window_s", 0.0, "a finite number > 0"),
        ("margin_s", math.inf, "a finite number >= 0"),
        ("margin_s", -1.0, "a finite number >= 0"),
        ("max_waiting", 0, "an integer >= 1"),
        ("reserve", -1, "an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_value_and_what_is_accepted(argument, value, accepted):
    settings = {"limit": 20, argument: value}
    with pytest.raises(ValueError) as refused:
        ReplyQueue(**settings)
    assert str(refused.value) == (
        f"outbox {argument} = {value!r} is not accepted; accepted: {accepted}"
    )


async def test_outbox_sends_no_more_than_the_limit_within_the_window():
    sent: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def send(reply: Reply) -> None:
        sent.append((loop.time(), reply.text))
        if len(sent) == 5:
            done.set()

    outbox = Outbox(send, limit=2, window_s=0.2, margin_s=0.05, reserve=0)
    task = asyncio.create_task(outbox.run())
    for number in range(5):
        outbox.put(Reply(str(number)))
    await asyncio.wait_for(done.wait(), timeout=10)
    task.cancel()
    assert [text for _, text in sent] == ["0", "1", "2", "3", "4"]
    assert most_in_any_window([at for at, _ in sent], 0.25) == 2


async def test_outbox_counts_from_when_twitch_answered_however_slow_the_way_there():
    # Twitch counts a reply when it arrives: here the first takes 0.3 s to get there.
    received: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def send(reply: Reply) -> None:
        await asyncio.sleep(0.3 if not received else 0.0)
        received.append(loop.time())
        if len(received) == 6:
            done.set()

    outbox = Outbox(send, limit=2, window_s=0.2, margin_s=0.05, reserve=0)
    task = asyncio.create_task(outbox.run())
    for number in range(6):
        outbox.put(Reply(str(number)))
    await asyncio.wait_for(done.wait(), timeout=10)
    task.cancel()
    assert most_in_any_window(received, 0.25) == 2


async def test_a_moderators_reply_wakes_a_waiting_outbox_at_once():
    sent: list[str] = []
    switched = asyncio.Event()

    async def send(reply: Reply) -> None:
        sent.append(reply.text)
        if reply.priority is HIGH:
            switched.set()

    # Viewers may send 1 of 2 per minute: the second viewer reply waits a minute.
    outbox = Outbox(send, limit=2, window_s=60.0, margin_s=0.0, reserve=1)
    task = asyncio.create_task(outbox.run())
    outbox.put(viewer("stats 1"))
    outbox.put(viewer("stats 2"))
    await asyncio.sleep(0)  # let the outbox start waiting
    outbox.put(moderator("Switched"))
    await asyncio.wait_for(switched.wait(), timeout=10)
    task.cancel()
    assert sent == ["stats 1", "Switched"]


async def test_dropped_replies_are_counted_and_logged(caplog):
    caplog.set_level(logging.WARNING, logger="charles.chat")
    now = [0.0]

    async def send(reply: Reply) -> None:
        raise AssertionError("nothing is sent: the outbox does not run")

    outbox = Outbox(send, limit=1, max_waiting=2, clock=lambda: now[0])
    assert outbox.describe_drops() == ""
    for index in range(5):
        outbox.put(viewer(f"stats {index}"))
    now[0] = 10.0
    outbox.put(viewer("stats 5"))
    outbox.put(moderator("switched 1"))
    outbox.put(moderator("switched 2"))
    outbox.put(moderator("switched 3"))
    assert outbox.dropped == {NORMAL: 6, HIGH: 1}
    assert outbox.describe_drops() == "7 replies dropped over Twitch's limit (1 to moderators)"
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "chat replies over Twitch's rate limit: 1 viewer replies dropped so far (1 since the "
        "last line; moderators' replies are kept)",
        "chat replies over Twitch's rate limit: 4 viewer replies dropped so far (3 since the "
        "last line; moderators' replies are kept)",
        "chat reply to a moderator dropped: 2 high-priority replies waited already (1 dropped "
        "so far): 'switched 1'",
    ]


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
    assert outbox.sent == 2  # the failed one counts in the window: Twitch may have had it
