"""A stand-in trainer on the hub's machine that counts the sample sets the hub routes to it.

Example::

    CHARLES_HUB_URL=ws://127.0.0.1:8766/ws/node CHARLES_HUB_TOKEN=... \\
        python -m tests.children.set_counter

It joins as role "trainer" (name "set-counter") through the real node client
and prints "sets N SOURCE" for every set it receives, flushed, until SIGTERM:
the test reads the lines to see sets from a remote collector arrive without
loading TensorFlow.
"""

from __future__ import annotations

import signal
import sys
import threading

from engine.core.wire import SampleSets
from engine.node.client import NodeClient


def main() -> int:
    """Count and print received sets until SIGTERM or the hub is gone."""
    received = 0
    lock = threading.Lock()

    def on_message(message: object) -> None:
        nonlocal received
        if isinstance(message, SampleSets):
            with lock:
                for sample_set in message.sets:
                    received += 1
                    source = sample_set.samples[0].source if sample_set.samples else ""
                    print(f"sets {received} {source}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    client = NodeClient.from_environment("trainer", "set-counter", on_message=on_message)
    client.start()
    print("ready", flush=True)
    while not stop.is_set() and not client.lost.is_set():
        stop.wait(0.2)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
