"""How long each stage of the driver's loop takes: p50 and p95 over its recent turns.

Example::

    times = StageTimes()
    mark = times.start()
    frame = capture.next_frame(after=last, timeout=1.0)
    mark = times.lap("capture_wait", mark)      # the end of one stage starts the next
    prediction = model.predict(stack(frame.model_input))
    mark = times.lap("predict", mark)
    times.summary()     # {"capture_wait": StageTime(p50_ms=16.1, p95_ms=16.9, turns=256), ...}

DonkeyCar's part profiler (`donkeycar/vehicle.py`, `PartProfiler`) times every
part of every loop turn and prints percentiles once, when the car stops. The
driver runs for hours and reports a few times a second, so it keeps less and
computes later:

- each stage keeps only its newest `window` durations, in a ring of fixed
  size (memory does not grow with the hours driven);
- a turn costs one `time.perf_counter_ns()` and one list store per stage:
  `lap` reads the clock once, and that reading ends one stage and starts the
  next, so the stages of a turn add up to the turn;
- percentiles are computed only when a status is built (`summary`, at
  `[driver] status_hz`), never per frame.

`bench/driver.py --stages` measures what this costs (a lap's nanoseconds, and
the loop's PPS against the same loop with `NoStageTimes`, which does nothing).
The stage names are the wire's (`engine.core.wire.DRIVER_STAGES`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from engine.core.wire import DRIVER_STAGES, DriverStage, StageTime

# About 8 s of driving at 30 predictions per second: recent enough to show a slowdown
# (a trainer starting, a model switch) within seconds, long enough for a stable p95.
WINDOW = 256


class StageTimes:
    """The newest `window` durations of each driver stage, and their percentiles on request.

    Written by the loop's thread only; `summary` may be called from any thread (it
    copies the rings, so a turn being recorded meanwhile is at worst left out).
    """

    def __init__(
        self,
        window: int = WINDOW,
        *,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(
                f"stage times: window = {window!r} is not accepted; accepted: 1 or more"
            )
        self.window = window
        self._clock = clock
        self._rings = {stage: _Ring(window) for stage in DRIVER_STAGES}

    def start(self) -> int:
        """The clock now (ns): the start of the next stage, for `lap`."""
        return self._clock()

    def lap(self, stage: DriverStage, started: int) -> int:
        """End `stage`, begun at `started` (ns); returns the clock now, the next stage's start."""
        now = self._clock()
        try:  # inlined, not self.record(): this runs eight times a turn
            ring = self._rings[stage]
        except KeyError:
            raise _unknown(stage) from None
        ring.add(now - started)
        return now

    def record(self, stage: DriverStage, nanoseconds: int) -> None:
        """Add one turn of `stage` that took `nanoseconds` (the oldest beyond the window goes)."""
        try:
            ring = self._rings[stage]
        except KeyError:
            raise _unknown(stage) from None
        ring.add(nanoseconds)

    def turns(self, stage: DriverStage) -> int:
        """How many turns of `stage` were recorded since the start (not only those kept)."""
        return self._rings[stage].total

    def summary(self) -> dict[DriverStage, StageTime]:
        """p50 and p95 (ms) of every stage run at least once, over its kept turns, in loop order."""
        times: dict[DriverStage, StageTime] = {}
        for stage, ring in self._rings.items():
            kept = ring.kept()
            if kept:
                times[stage] = stage_time(kept)
        return times


class NoStageTimes(StageTimes):
    """Timing switched off: no clock read, nothing kept, an empty summary (the bench's baseline)."""

    def start(self) -> int:
        """No clock read."""
        return 0

    def lap(self, stage: DriverStage, started: int) -> int:
        """Nothing timed or kept."""
        return 0

    def record(self, stage: DriverStage, nanoseconds: int) -> None:
        """Nothing kept."""

    def summary(self) -> dict[DriverStage, StageTime]:
        """No stages: nothing was timed."""
        return {}


def stage_time(nanoseconds: list[int]) -> StageTime:
    """p50 and p95 (ms, nearest rank) of some durations in ns; at least one is needed."""
    ordered = sorted(nanoseconds)
    return StageTime(
        p50_ms=max(0, percentile(ordered, 50)) / 1e6,
        p95_ms=max(0, percentile(ordered, 95)) / 1e6,
        turns=len(ordered),
    )


def percentile(ordered: list[int], percent: float) -> int:
    """The nearest-rank percentile of sorted values: one of them, never an interpolation.

    Nearest rank keeps p95 >= p50 on the same values, which the wire requires.
    """
    if not ordered:
        raise ValueError("a percentile of no values; at least one is needed")
    if not 0 < percent <= 100:
        raise ValueError(f"percentile {percent!r} is not accepted; accepted: above 0, up to 100")
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[rank - 1]


def _unknown(stage: object) -> ValueError:
    return ValueError(
        f"stage times: stage {stage!r} is not a driver stage; accepted: {', '.join(DRIVER_STAGES)}"
    )


class _Ring:
    """A fixed-size ring of the newest durations of one stage."""

    __slots__ = ("_next", "_size", "_values", "total")

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: list[int] = []
        self._next = 0
        self.total = 0

    def add(self, value: int) -> None:
        values = self._values
        if len(values) < self._size:
            values.append(value)
        else:
            values[self._next] = value
            self._next = (self._next + 1) % self._size
        self.total += 1

    def kept(self) -> list[int]:
        return list(self._values)
