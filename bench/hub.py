"""Benchmark the hub: sample sets from collectors to a trainer, against a bare relay.

    .venv/bin/python bench/hub.py [--sets 300] [--collectors 2] [--rounds 3]

Sets of 23 samples at 480x270 (the reference's stored frame size, the largest
the stream sends) are sent by `--collectors` websocket clients and received by
one, all on this machine, through two servers in turn, with the very same
clients (aiohttp websockets in the benchmark's event loop, nothing decoded on
either end):

- bare relay: a server that forwards every binary message without looking;
- hub: `engine.app.hub.Hub` (token, Hello with its protocol version, the
  header of each set read for its type, routed by the services table through
  the trainer link's queue).

ratio = hub sets/s / bare relay sets/s: what the hub's own work costs. The
rounds alternate relay and hub so a busy machine slows both alike; the ratio
is the median round's. Also printed: the end-to-end rate with NodeClients at
both ends (each in its own thread and event loop, as the nodes run, the
trainer decoding and validating every set), the full decode time of one set,
and sets/s against what the collectors produce (a few sets per second each).
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
    parser.add_argument("--rounds", type=int, default=3, help="relay/hub rounds (median ratio)")
    args = parser.parse_args()
    data = encode(realistic_sets())
    print(f"one set: {SAMPLES_PER_SET} samples at 480x270, {len(data) / 1e6:.2f} MB on the wire")

    started = time.perf_counter()
    for _ in range(20):
        decode(data)
    decode_ms = (time.perf_counter() - started) / 20 * 1000
    print(f"decode + validate one set (the trainer's side): {decode_ms:.2f} ms")

    rounds = []
    for _ in range(args.rounds):
        bare = asyncio.run(bare_relay(data, args.sets, args.collectors))
        through_hub = asyncio.run(hub_relay(data, args.sets, args.collectors))
        rounds.append((through_hub / bare, bare, through_hub))
        print(f"round: bare relay {bare:.1f} sets/s, hub {through_hub:.1f} sets/s")
    ratio, bare, through_hub = sorted(rounds)[len(rounds) // 2]
    for name, rate in (("bare relay", bare), ("hub", through_hub)):
        print(f"{name}: {rate:.1f} sets/s ({rate * len(data) / 1e6:.0f} MB/s)")
    print(f"ratio hub / bare relay = {ratio:.2f} (median of {len(rounds)} rounds)")
    end_to_end = asyncio.run(node_clients_through_hub(data, args.sets, args.collectors))
    print(
        f"end to end with NodeClients (trainer validates every set): {end_to_end:.1f} sets/s "
        f"= {end_to_end / bare:.2f} of the bare relay"
    )
    demand = COLLECTOR_SETS_PER_S * args.collectors
    print(
        f"hub / what {args.collectors} collectors produce ({demand:g} sets/s) = "
        f"{end_to_end / demand:.0f}x"
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
                frame=encode_frame(frame.clip(0, 255).astype(np.uint8), quality=90),
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
    """Sets per second through the hub, with the bare relay's clients (plus token and Hello)."""
    hub = Hub(HubConfig(port=0), TOKEN, AppState())
    await hub.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        receiver = await session.ws_connect(hub.url(), max_msg_size=0, compress=0)
        await receiver.send_bytes(encode(Hello(role="trainer", name="trainer")))
        while "trainer" not in hub.state.nodes:
            await asyncio.sleep(0.01)
        senders = []
        for index in range(collectors):
            ws = await session.ws_connect(hub.url(), max_msg_size=0, compress=0)
            await ws.send_bytes(encode(Hello(role="collector", name=f"collector-{index}")))
            senders.append(ws)
        rate = await _relay_rate(data, sets, receiver, senders)
    await hub.stop()
    return rate


async def node_clients_through_hub(data: bytes, sets: int, collectors: int) -> float:
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
        senders = [
            await session.ws_connect(url, max_msg_size=0, compress=0) for _ in range(collectors)
        ]
        rate = await _relay_rate(data, sets, receiver, senders)
    await runner.cleanup()
    return rate


async def _relay_rate(
    data: bytes,
    sets: int,
    receiver: aiohttp.ClientWebSocketResponse,
    senders: list[aiohttp.ClientWebSocketResponse],
) -> float:
    """Send `sets` copies of `data` spread over `senders`; sets/s until `receiver` has them all."""

    async def send(ws: aiohttp.ClientWebSocketResponse, count: int) -> None:
        for _ in range(count):
            await ws.send_bytes(data)

    started = time.perf_counter()
    sending = asyncio.gather(
        *(send(ws, len(range(index, sets, len(senders)))) for index, ws in enumerate(senders))
    )
    for _ in range(sets):
        received = await receiver.receive()
        assert received.type is aiohttp.WSMsgType.BINARY, received
    await sending
    rate = sets / (time.perf_counter() - started)
    for ws in (receiver, *senders):
        await ws.close()
    return rate


if __name__ == "__main__":
    main()
