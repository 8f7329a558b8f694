"""`collect`'s parts that need no game: the hub's in-process receiver and the collector specs.

`charles-stream collect` itself (real collectors, stored samples, a clean
stop) is tested in tests/test_collector.py.
"""

from __future__ import annotations

import asyncio

from engine.app.collect import collector_specs
from engine.core.config import SupervisorConfig, default_config
from engine.core.wire import decode, encode
from tests.hub_helpers import node_socket, running_hub, small_sets


async def test_a_receiver_gets_what_is_routed_to_its_role_in_order():
    received: list[float] = []
    got_three = asyncio.Event()

    async def receive(kind: str, data: bytes) -> None:
        assert kind == "sample_sets"
        received.append(decode(data).sets[0].samples[0].time)
        if len(received) == 3:
            got_three.set()

    async with running_hub() as hub:
        hub.add_receiver("trainer", receive)
        async with node_socket(hub, "collector") as collector:
            for number in range(3):
                await collector.send_bytes(encode(small_sets(number)))
            async with asyncio.timeout(60):
                await got_three.wait()
    assert received == [0.0, 1.0, 2.0]


async def test_a_slow_receiver_holds_the_next_message_back():
    # The hub reads a sender's next message only once the receiver took the last one:
    # the storage paces the collectors, as the trainer does in the stream.
    release = asyncio.Event()
    started: list[float] = []
    first_started = asyncio.Event()

    async def receive(kind: str, data: bytes) -> None:
        started.append(decode(data).sets[0].samples[0].time)
        first_started.set()
        await release.wait()

    async with running_hub() as hub:
        hub.add_receiver("trainer", receive)
        async with node_socket(hub, "collector") as collector:
            await collector.send_bytes(encode(small_sets(0)))
            await collector.send_bytes(encode(small_sets(1)))
            async with asyncio.timeout(60):
                await first_started.wait()
            # The second message is in the hub's socket buffer; a turn of the loop later it
            # still has not been handed over.
            for _ in range(20):
                await asyncio.sleep(0)
            assert started == [0.0]
            release.set()
            async with asyncio.timeout(60):
                while len(started) < 2:
                    await asyncio.sleep(0.01)
    assert started == [0.0, 1.0]


def test_collect_runs_the_stream_collector_rows_with_consecutive_seeds():
    config = default_config()
    specs = collector_specs(config, "/cfg/config.toml", collectors=3, seed=40)
    assert [spec.name for spec in specs] == ["collector-0", "collector-1", "collector-2"]
    assert specs[2].module == "engine.collector.node"
    assert specs[2].args == (
        "--config",
        "/cfg/config.toml",
        "--index",
        "2",
        "--seed",
        "42",
    )
    # The stream's liveness bound and restart policy, from the same table.
    assert {spec.liveness_s for spec in specs} == {SupervisorConfig().liveness_collector_s}
    assert {spec.restart for spec in specs} == {"always"}
