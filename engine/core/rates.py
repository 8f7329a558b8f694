"""Events per second over a sliding window: the Player Console's FPS and PPS.

Example::

    pps = RateMeter()
    pps.record()          # one prediction, now
    pps.rate()            # predictions in the last second

A sliding window rather than a lifetime average, so a stall shows at once on
stream and a recovered driver stops looking slow a second later.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateMeter:
    """Counts events and reports how many happened per second over the last `window_s`."""

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.total = 0
        self._clock = clock
        self._times: deque[float] = deque()
        # record() runs in a capture thread while the driver thread reads rate().
        self._lock = threading.Lock()

    def record(self) -> None:
        """Count one event at the current time."""
        now = self._clock()
        with self._lock:
            self.total += 1
            self._times.append(now)
            self._forget_before(now - self.window_s)

    def rate(self) -> float:
        """Events per second within the last window."""
        now = self._clock()
        with self._lock:
            self._forget_before(now - self.window_s)
            return len(self._times) / self.window_s

    def _forget_before(self, oldest: float) -> None:
        while self._times and self._times[0] < oldest:
            self._times.popleft()
