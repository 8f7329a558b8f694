"""NodeClient: a synchronous process's link to the hub (own thread and event loop).

The hub runs in the test's event loop, so every blocking NodeClient call goes
through asyncio.to_thread: the hub must keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time

import pytest

from engine.core.samples import BalanceStats
from engine.core.services import PROTOCOL_VERSION, SERVICES
from engine.core.store import AppState
from engine.core.wire import (
    Alert,
    CollectorReport,
    Frames,
    Hello,
    Message,
    SwitchModel,
    TrainerStatus,
    decode,
)
from engine.node.client import (
    HUB_FINGERPRINT_ENV,
    HUB_TOKEN_ENV,
    HUB_URL_ENV,
    NodeClient,
    NodeError,
)
from tests.hub_helpers import TOKEN, node_socket, running_hub, small_sets, wait_until

# Only ends a hung test: a passing test never waits this long, and on a busy 2-core machine a
# link may take seconds to come up or a message to arrive.
HANG_S = 60.0


def client(url: str, role="collector", name="collector-0", token=TOKEN, **options) -> NodeClient:
    return NodeClient(url, token, Hello(role=role, name=name), **options)


async def started(node: NodeClient, timeout: float = HANG_S) -> NodeClient:
    await asyncio.to_thread(node.start, timeout)
    return node


async def test_messages_sent_from_another_thread_reach_the_hub():
    state = AppState()
    async with running_hub(state=state) as hub:
        node = await started(client(hub.url(), role="trainer", name="trainer"))
        status = TrainerStatus(version="m_v1", status="training", batch=3)
        sender = threading.Thread(target=node.send, args=(status,))
        sender.start()
        sender.join()

        await wait_until(lambda: state.trainer == status)
        assert state.nodes == {"trainer": "trainer"}
        await asyncio.to_thread(node.close)


async def test_a_collectors_sets_reach_a_trainer_node_client():
    received: queue.Queue[Message] = queue.Queue()
    sets = small_sets(5)
    async with running_hub() as hub:
        trainer = await started(client(hub.url(), "trainer", "trainer", on_message=received.put))
        collector = await started(client(hub.url()))
        collector.send(sets)

        assert await asyncio.to_thread(received.get, timeout=HANG_S) == sets
        await asyncio.gather(asyncio.to_thread(collector.close), asyncio.to_thread(trainer.close))


def report(number: int) -> CollectorReport:
    return CollectorReport(source="collector-0", balance=BalanceStats("v3"), episodes=number)


async def test_messages_sent_before_start_arrive_in_order_with_only_the_newest_replaceable():
    # Collector reports are `replaceable` in the services table; sample sets are not.
    assert SERVICES["collector_report"].replaceable and not SERVICES["sample_sets"].replaceable
    async with running_hub() as hub, node_socket(hub, "trainer") as trainer:
        await wait_until(lambda: "node" in hub.state.nodes)
        node = client(hub.url())
        for number in range(3):
            node.send(report(number))
            node.send(small_sets(number))
        await started(node)

        received = [decode((await trainer.receive()).data) for _ in range(4)]
        await asyncio.to_thread(node.close)

    assert [message.sets[0].samples[0].time for message in received[:3]] == [0.0, 1.0, 2.0]
    assert received[3] == report(2)


async def test_only_the_newest_frames_wait_while_every_alert_does():
    state = AppState()
    async with running_hub(state=state) as hub:
        node = client(hub.url(), role="driver", name="driver")
        for number in range(3):
            node.send(Frames(hood=bytes([number])))
            node.send(Alert(kind="note", text=str(number)))
        await started(node)

        await wait_until(lambda: hub.state.frames is not None and len(state.alerts) == 3)
        await asyncio.to_thread(node.close)

    assert [alert.text for alert in state.alerts] == ["0", "1", "2"]
    assert hub.state.frames == Frames(hood=b"\x02")


async def test_a_hub_of_another_protocol_version_is_final_and_names_the_side_to_upgrade(caplog):
    async with running_hub() as hub:
        old = NodeClient(hub.url(), TOKEN, Hello(role="collector", name="old", protocol=1))
        # The refusal may come before start() returns (then start raises it) or just after.
        with contextlib.suppress(NodeError):
            await started(old)

        assert await asyncio.to_thread(old.lost.wait, HANG_S)
        await asyncio.to_thread(old.close)
        assert "upgrade the node (pip install -U charles-stream)" in caplog.text
        assert f"speaks protocol {PROTOCOL_VERSION} and this node 1: upgrade this node" in (
            caplog.text
        )
        assert "old" not in hub.state.nodes


async def test_a_node_newer_than_the_hub_is_told_to_upgrade_the_hub(caplog):
    async with running_hub() as hub:
        newer = PROTOCOL_VERSION + 1
        node = NodeClient(hub.url(), TOKEN, Hello(role="collector", name="new", protocol=newer))
        with contextlib.suppress(NodeError):
            await started(node)

        assert await asyncio.to_thread(node.lost.wait, HANG_S)
        await asyncio.to_thread(node.close)
        assert (
            f"speaks protocol {PROTOCOL_VERSION} and this node {newer}: upgrade the hub "
            "(on the streaming PC)"
        ) in caplog.text


async def test_hub_messages_arrive_on_the_client_thread():
    received: queue.Queue[tuple[Message, str]] = queue.Queue()

    def on_message(message: Message) -> None:
        received.put((message, threading.current_thread().name))

    async with running_hub() as hub:
        node = await started(client(hub.url(), "driver", "driver", on_message=on_message))
        await wait_until(lambda: "driver" in hub.state.nodes)
        await hub.send("driver", SwitchModel(version="m_v2"))

        message, thread = await asyncio.to_thread(received.get, timeout=HANG_S)
        await asyncio.to_thread(node.close)

    assert message == SwitchModel(version="m_v2")
    assert thread == "hub-link-driver"


async def test_client_reconnects_when_the_hub_restarts_on_the_same_port():
    first_state, second_state = AppState(), AppState()
    async with running_hub(state=first_state) as hub:
        port = hub.port
        # It must not give up while the hub is away, however slowly the machine restarts it.
        node = await started(client(hub.url(), give_up_s=10 * HANG_S))
    # Sent once the client knows the hub is gone: a message written into a link the hub is
    # closing is lost in flight, which is not what this test is about.
    await wait_until(lambda: not node.connected)
    node.send(Alert(kind="note", text="sent while the hub was away"))

    async with running_hub(port=port, state=second_state):
        await wait_until(lambda: len(second_state.alerts) == 1)
        assert second_state.alerts[0].text == "sent while the hub was away"
        assert not node.lost.is_set()
        await asyncio.to_thread(node.close)


async def test_lost_is_set_when_the_hub_is_gone_for_good():
    async with running_hub() as hub:
        node = await started(client(hub.url(), give_up_s=0.3))

    assert await asyncio.to_thread(node.lost.wait, HANG_S)
    await asyncio.to_thread(node.close)


async def test_a_wrong_token_is_a_node_error_naming_the_url_and_is_not_retried():
    async with running_hub() as hub:
        node = client(hub.url(), token="wrong")
        began = time.monotonic()

        with pytest.raises(NodeError, match=rf"the hub at {hub.url()} refused the token \(401\)"):
            await started(node, timeout=HANG_S)
        assert time.monotonic() - began < HANG_S  # given up at the refusal, not at the timeout
        assert node.lost.is_set()


async def test_start_gives_up_when_no_hub_answers_in_time():
    async with running_hub() as hub:
        url = hub.url()
    node = client(url)

    with pytest.raises(NodeError, match=rf"could not connect to the hub at {url} within 0.3 s"):
        await started(node, timeout=0.3)


def test_from_environment_reads_url_token_and_fingerprint(monkeypatch):
    monkeypatch.setenv(HUB_URL_ENV, "wss://10.0.0.5:8765/ws/node")
    monkeypatch.setenv(HUB_TOKEN_ENV, "secret")
    monkeypatch.setenv(HUB_FINGERPRINT_ENV, "ab" * 32)

    node = NodeClient.from_environment("collector", "collector-7")

    assert (node.url, node.name) == ("wss://10.0.0.5:8765/ws/node", "collector-7")


@pytest.mark.parametrize("host", ["10.0.0.5", "0.0.0.0", "pc-b.lan", "[fd00::1]"])
def test_the_token_is_never_sent_in_plain_ws_beyond_loopback(host):
    with pytest.raises(NodeError) as refused:
        client(f"ws://{host}:8765/ws/node")

    message = str(refused.value)
    assert "refusing to send the hub token in clear text" in message
    assert f"use wss://{host}:8765/ws/node" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_ws_to_a_loopback_hub_is_accepted(host):
    assert client(f"ws://{host}:8765/ws/node").url == f"ws://{host}:8765/ws/node"


def test_a_wss_hub_without_a_pinned_fingerprint_is_refused():
    with pytest.raises(NodeError, match="no certificate fingerprint is pinned"):
        client("wss://10.0.0.5:8765/ws/node")


def test_a_malformed_fingerprint_is_refused_naming_it():
    with pytest.raises(NodeError, match="fingerprint 'abc' is not accepted; accepted: the 64 hex"):
        client("wss://10.0.0.5:8765/ws/node", fingerprint="abc")


async def test_the_hub_shows_a_nodes_host_name():
    state = AppState()
    async with running_hub(state=state) as hub:
        hello = Hello(role="collector", name="collector-5", host="pc-b")
        node = await started(NodeClient(hub.url(), TOKEN, hello))

        await wait_until(lambda: "collector-5" in state.snapshot().node_links)
        link = state.snapshot().node_links["collector-5"]
        assert (link["host"], link["sets_lost"], link["reconnects"]) == ("pc-b", 0, 0)
        assert any(
            "collector-5 (collector) on pc-b connected" in e for e in state.snapshot().events
        )
        await asyncio.to_thread(node.close)


@pytest.mark.parametrize("missing", [HUB_URL_ENV, HUB_TOKEN_ENV])
def test_from_environment_names_a_missing_variable(monkeypatch, missing):
    monkeypatch.setenv(HUB_URL_ENV, "ws://127.0.0.1:8765/ws/node")
    monkeypatch.setenv(HUB_TOKEN_ENV, "secret")
    monkeypatch.delenv(missing)

    with pytest.raises(NodeError, match=rf"{missing} is not set"):
        NodeClient.from_environment("collector", "collector-0")


def test_a_url_that_is_not_a_websocket_is_refused():
    with pytest.raises(NodeError, match=r"hub URL 'http://x/ws/node' is not accepted"):
        client("http://x/ws/node")
