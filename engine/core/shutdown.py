"""Clean ends for command processes: SIGTERM runs `finally` blocks.

Example::

    with sigterm_as_exit():
        run_until_done()          # a kill still releases the pad, stops child processes

A streamer stops things with Ctrl-C and a process manager with SIGTERM; either
way the keys, the pad and the stored sets must be left in order. (A parent
killed without cleanup is handled by the children themselves:
engine/node/process.py die_with_parent.)
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_SIGTERM = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) so `finally` blocks run on a kill.

    After the first SIGTERM the default action is back: a second one ends the
    process at once, should cleanup ever hang.
    """

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(EXIT_SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
