"""SIGINT and SIGTERM as events of the asyncio loop, for the commands that run supervisors.

Example::

    with on_stop_signals(lambda signum: stop.set()):
        await stop.wait()            # then shut the processes down in order

The stream (`run`) and `collect` stop their children in order on Ctrl-C or a
process manager's SIGTERM instead of dying at once; both install the handlers
through this one context manager, which removes them again on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call `handler(signum)` on the running loop for SIGINT and SIGTERM while inside."""
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers: there Ctrl-C raises KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, handler, signum)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
