"""A supervised process's side of the liveness watchdog: "my work loop is still turning".

Example::

    from engine.node.progress import report_progress

    while not stop.is_set():
        train_one_batch()
        report_progress()        # cheap; a no-op outside the app's supervisor

The app's supervisor (`engine/app/supervisor.py`) kills and restarts a child
whose work loop has reported nothing for its liveness bound (openpilot's
`watchdog_max_dt`). The report must come from the loop that does the work -
a training step, a driven frame, a collector's game tick - never from a
helper thread such as the hub link's, which keeps running while the work is
deadlocked.

The channel is a file per child: the supervisor names it in
`CHARLES_PROGRESS_FILE`, a report sets its modification time (`os.utime`, at
most once per `MIN_INTERVAL_S`), and the supervisor looks for a change. Why a
file and not a message over the hub link: a collector's link carries
megabyte sample sets and waits behind a slow trainer on purpose
(backpressure), so a report queued there could look like a hang; the file
does not depend on the hub, works the same on Windows, needs no wire message
and no mapping from hub names to supervised processes, and costs one
metadata write a second. Without the variable (a command run by hand, a
remote collector) a report does nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

PROGRESS_FILE_ENV = "CHARLES_PROGRESS_FILE"
# Far below any liveness bound (1 s at the least), far above what costs anything.
MIN_INTERVAL_S = 0.5

log = logging.getLogger("charles.nodes.progress")


class ProgressReporter:
    """Touches one progress file, at most once per `min_interval_s`; safe from any thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last: float | None = None
        self._broken = False
        self._lock = threading.Lock()

    def report(self) -> None:
        """Say the work loop made progress; returns at once when one was said lately."""
        now = self._clock()
        with self._lock:
            if self._broken or (self._last is not None and now - self._last < self._min_interval_s):
                return
            self._last = now
        try:
            os.utime(self.path)
        except OSError as error:
            # The supervisor removed its folder (it is stopping us), or it was never there:
            # nothing a report could fix; the work goes on.
            self._broken = True
            log.warning("progress reports to %s stop: %s", self.path, error)


def report_progress() -> None:
    """Tell the supervisor that this process's work loop is alive (see the module docstring)."""
    reporter = _reporter()
    if reporter is not None:
        reporter.report()


@functools.cache
def _reporter() -> ProgressReporter | None:
    path = os.environ.get(PROGRESS_FILE_ENV, "")
    return ProgressReporter(path) if path else None
