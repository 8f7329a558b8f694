"""Benchmark the hub: sample sets from a collector to a trainer, against a bare relay.

    .venv/bin/python bench/hub.py [--sets 300] [--collectors 2]

Sets of 23 samples at 480x270 (the reference's stored frame size, the largest
the stream sends) travel collector NodeClient -> hub (token, decode and
validate every message, route by role, AppState) -> trainer NodeClient
(decode and validate again), all on this machine. The limit measured in the
same run is a bare relay: the same bytes over aiohttp websockets through a
server that forwards them without decoding, to a receiver that does not
decode either. ratio = hub sets/s / bare relay sets/s: what validation and
routing cost. Also the hub's decode time per set, and sets/s against what
the collectors produce (a collector makes a few sets per second).
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import time

import aiohttp
import numpy as np
from aiohttp import web

from engine.app.hub import Hub
from engine.core.config import HubConfig
from engine.core.store import AppState
from engine.core.wire import Hello, Message, SampleSets, decode, encode
from engine.data.frames import encode_frame
from engine.data.samples import Sample, SampleSet
from engine.node.client import NodeClient

TOKEN = "bench-token"
SAMPLES_PER_SET = 23  # throttle_brake's bins, the largest balanced output
IN_FLIGHT = 32
# bench/data.py: one collector completes about 3 sets/s (65 balanced samples/s).
COLLECTOR_SETS_PER_S = 3.0


def main() -> None:
    """Run the measurements and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=300, help="sets sent per measurement")
    parser.add_argument("--collectors", type=int, default=2, help="collectors sending at once")
    args = parser.parse_args()
    data = encode(realistic_sets())
    print(f"one set: {SAMPLES_PER_SET} samples at 480x270, {len(data) / 1e6:.2f} MB on the wire")

    started = time.perf_counter()
    for _ in range(20):
        decode(data)
    decode_ms = (time.perf_counter() - started) / 20 * 1000
    print(f"decode + validate one set: {decode_ms:.2f} ms")

    bare = asyncio.run(bare_relay(data, args.sets, args.collectors))
    through_hub = asyncio.run(hub_relay(data, args.sets, args.collectors))
    for name, rate in (("bare relay", bare), ("hub", through_hub)):
        print(f"{name}: {rate:.1f} sets/s ({rate * len(data) / 1e6:.0f} MB/s)")
    print(f"ratio hub / bare relay = {through_hub / bare:.2f}")
    demand = COLLECTOR_SETS_PER_S * args.collectors
    print(
        f"hub / what {args.collectors} collectors produce ({demand:g} sets/s) = "
        f"{through_hub / demand:.0f}x"
    )


def realistic_sets() -> SampleSets:
    """One balanced set of 23 samples with frames that compress like game frames."""
    rng = np.random.default_rng(6)
    samples = []
    for index in range(SAMPLES_PER_SET):
        rows = np.linspace(40, 200, 270, dtype=np.float32)[:, None, None]
        frame = np.broadcast_to(rows, (270, 480, 3)) + rng.normal(0, 12, (270, 480, 3))
        samples.append(
            Sample(
                frame_jpeg=encode_frame(frame.clip(0, 255).astype(np.uint8), quality=90),
                width=480,
                height=270,
                outputs={"steering": 0.1, "throttle_brake": index / SAMPLES_PER_SET},
                speed=15.0,
                time=float(index),
                source="bench",
                episode=0,
                purpose_direction=0.0,
                purpose_distance_m=100.0,
            )
        )
    return SampleSets(sets=(SampleSet(output="throttle_brake", samples=tuple(samples)),))


async def hub_relay(data: bytes, sets: int, collectors: int) -> float:
    """Sets per second from `collectors` NodeClients through the hub to a trainer NodeClient."""
    message = decode(data)
    received: queue.Queue[Message] = queue.Queue()
    hub = Hub(HubConfig(port=0), TOKEN, AppState())
    await hub.start()
    trainer = NodeClient(hub.url(), TOKEN, Hello(role="trainer", name="trainer"), received.put)
    senders = [
        NodeClient(hub.url(), TOKEN, Hello(role="collector", name=f"collector-{index}"))
        for index in range(collectors)
    ]
    for client in (trainer, *senders):
        await asyncio.to_thread(client.start, 10)
    while "trainer" not in hub.state.nodes:
        await asyncio.sleep(0.01)

    def send_and_receive() -> float:
        # NodeClient keeps at most 64 MB waiting (then drops the oldest): stay under it.
        in_flight = min(IN_FLIGHT, sets)
        started = time.perf_counter()
        for number in range(in_flight):
            senders[number % collectors].send(message)
        for number in range(in_flight, sets):
            received.get(timeout=60)
            senders[number % collectors].send(message)
        for _ in range(in_flight):
            received.get(timeout=60)
        return sets / (time.perf_counter() - started)

    rate = await asyncio.to_thread(send_and_receive)
    for client in (trainer, *senders):
        await asyncio.to_thread(client.close)
    await hub.stop()
    return rate


async def bare_relay(data: bytes, sets: int, collectors: int) -> float:
    """The same bytes through an aiohttp server that forwards them without looking."""
    receivers: list[web.WebSocketResponse] = []
    receiver_ready = asyncio.Event()

    async def relay(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        if request.query.get("role") == "receiver":
            receivers.append(ws)
            receiver_ready.set()
        async for received in ws:
            for target in receivers:
                await target.send_bytes(received.data)
        return ws

    app = web.Application()
    app.router.add_get("/relay", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/relay"
    async with aiohttp.ClientSession() as session:
        receiver = await session.ws_connect(f"{url}?role=receiver", max_msg_size=0, compress=0)
        await receiver_ready.wait()
        sender_sockets = [
            await session.ws_connect(url, max_msg_size=0, compress=0) for _ in range(collectors)
        ]
        started = time.perf_counter()

        async def send(ws: aiohttp.ClientWebSocketResponse, count: int) -> None:
            for _ in range(count):
                await ws.send_bytes(data)

        sending = asyncio.gather(
            *(
                send(ws, len(range(index, sets, collectors)))
                for index, ws in enumerate(sender_sockets)
            )
        )
        for _ in range(sets):
            await receiver.receive()
        await sending
        rate = sets / (time.perf_counter() - started)
        for ws in (receiver, *sender_sockets):
            await ws.close()
    await runner.cleanup()
    return rate


if __name__ == "__main__":
    main()
