"""Clean ends for command processes: SIGTERM runs `finally` blocks; children follow their parent.

Example::

    with sigterm_as_exit():
        run_until_done()          # a kill still releases the pad, stops child processes

    # in a multiprocessing child:
    parent_gone = parent_watch()
    while not stop.is_set() and not parent_gone():
        work()

A streamer stops things with Ctrl-C, a process manager with SIGTERM, and a
crash (or SIGKILL) stops a parent without any cleanup at all; in none of these
cases may a collector or driver go on running, unseen, eating the cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Callable, Iterator

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


def parent_watch() -> Callable[[], bool]:
    """In a multiprocessing child: a cheap check that says True once the parent has ended.

    It polls the parent's sentinel (a pipe the parent holds open), so it also sees
    a parent killed by SIGKILL, where no cleanup of the parent's ever ran.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return lambda: False
    return lambda: not parent.is_alive()
