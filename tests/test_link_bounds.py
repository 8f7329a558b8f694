"""Memory bounds and loss counting on both ends of a node's link (issue 17).

The hub's send queue per node is bounded in messages and bytes, so a slow
link waits its senders instead of growing the hub; the node's backlog is
bounded in bytes, and what it drops is counted as lost sets. One set is in
flight at a time, so a dropped link loses at most that one
(tests/test_several_pcs.py cuts a real link mid-set).
"""

from __future__ import annotations

import asyncio

import pytest

from engine.app import hub as hub_module
from engine.app.hub import _NodeLink
from engine.core.wire import Hello, encode
from engine.node.client import SETS, NodeClient, SendWindow
from tests.hub_helpers import small_sets


class StuckSocket:
    """The far end of a link that takes nothing: every send waits for ever."""

    closed = False

    async def send_bytes(self, data: bytes) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True


async def test_the_hubs_queue_for_a_slow_node_is_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(hub_module, "NODE_QUEUE_BYTES", 1000)
    link = _NodeLink(StuckSocket(), "10.77.1.2:40000")  # type: ignore[arg-type]
    link.role = "trainer"
    link.start_writing()
    for _ in range(4):  # 1200 bytes: the last one went in while there was room
        assert await link.put("sample_sets", b"x" * 300)

    fifth = asyncio.create_task(link.put("sample_sets", b"x" * 300))
    for _ in range(20):  # nothing else can make room: the put must still wait
        await asyncio.sleep(0)
    assert not fifth.done()

    unsent = await link.close(1001, "")
    assert await fifth is False
    assert len(unsent) == 4


def test_sets_dropped_from_a_full_backlog_are_counted_as_lost():
    one_set = encode(small_sets(0))
    node = NodeClient(
        "ws://127.0.0.1:1/ws/node",
        "token",
        Hello(role="collector", name="collector-0"),
        max_backlog_bytes=3 * len(one_set),
    )
    for number in range(5):  # never started: everything waits in the backlog
        node.send(small_sets(number))

    stats = node.link_stats()
    assert (stats.sets_lost, stats.bytes_lost) == (2, 2 * len(one_set))
    assert stats.reconnects == 0


async def test_the_next_set_waits_until_the_hub_confirms_the_one_in_flight():
    window = SendWindow()
    ping = window.sent(SETS, 300)
    window.sent("collector_report", 20)  # other messages do not wait for a confirmation

    second = asyncio.create_task(window.room_for_a_set())
    for _ in range(20):  # nothing but the pong can make room: it must still wait
        await asyncio.sleep(0)
    assert not second.done()
    assert window.unconfirmed_sets() == (1, 300)  # what a drop now would count lost

    window.confirm(ping)
    await asyncio.wait_for(second, timeout=10.0)
    assert window.unconfirmed_sets() == (0, 0)


def test_a_window_of_no_sets_is_refused_naming_the_value():
    with pytest.raises(ValueError, match=r"max_sets = 0 is not accepted; accepted: 1 or more"):
        SendWindow(0)
