"""A stand-in collector that sends numbered sample sets of one size through the real node client.

Example::

    CHARLES_HUB_URL=wss://10.77.3.1:18765/ws/node CHARLES_HUB_TOKEN=... \\
        CHARLES_HUB_FINGERPRINT=3F:A0:... python -m tests.children.set_sender \\
        --name collector-8 --bytes 300000 --period 1.0

It joins as role "collector" through `NodeClient.from_environment` (TLS,
the pinned fingerprint, the reconnects of a real node) and hands the client
one `SampleSets` every `--period` seconds, the set's one sample named
`probe#000001`, `probe#000002`, ... (fixed width, so every set encodes to the
same size; its frame is random bytes: only the size matters on the link).
It prints `set_bytes N` once, then runs until SIGTERM; then it stops making
sets, closes the client with `--close-s` for what is queued to go (every
queued set is sent and confirmed, or counted lost), and prints one JSON line:
`{"sent": SETS HANDED TO THE CLIENT, "sets_lost": ..., "bytes_lost": ...,
"reconnects": ...}`. A test compares it with the set numbers the hub routed
(tests/children/set_counter.py prints each set's source).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from engine.core.samples import Sample, SampleSet
from engine.core.wire import SampleSets, encode
from engine.node.client import NodeClient

PREFIX = "probe#"


def main() -> int:
    """Send numbered sets until SIGTERM; print what was sent and what the link counted lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="collector-8", help="the node's name")
    parser.add_argument("--bytes", type=int, default=300_000, help="frame bytes of each set")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between sets")
    parser.add_argument("--close-s", type=float, default=120.0, help="time for the queue to go")
    args = parser.parse_args()
    if args.bytes < 1 or not 0 < args.period < 3600 or args.close_s <= 0:
        parser.error(
            f"--bytes {args.bytes} --period {args.period} --close-s {args.close_s}: accepted: "
            "bytes >= 1, 0 < period < 3600, close-s > 0"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    frame = os.urandom(args.bytes)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    client = NodeClient.from_environment("collector", args.name)
    client.start()
    print(f"set_bytes {len(encode(_numbered(1, frame)))}", flush=True)
    sent = 0
    while not stop.is_set() and not client.lost.is_set():
        sent += 1
        client.send(_numbered(sent, frame))
        stop.wait(args.period)
    client.close(timeout=args.close_s)
    stats = client.link_stats()
    summary = {
        "sent": sent,
        "sets_lost": stats.sets_lost,
        "bytes_lost": stats.bytes_lost,
        "reconnects": stats.reconnects,
    }
    print(json.dumps(summary), flush=True)
    return 0 if not client.lost.is_set() else 1


def _numbered(number: int, frame: bytes) -> SampleSets:
    sample = Sample(
        frame=frame,
        width=480,
        height=270,
        outputs={"steering": 0.0},
        speed=0.0,
        time=0.0,
        source=f"{PREFIX}{number:06d}",
        episode=0,
    )
    return SampleSets(sets=(SampleSet(output="steering", samples=(sample,)),))


if __name__ == "__main__":
    sys.exit(main())
