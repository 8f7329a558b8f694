"""What the overlay pages are told: a compact state, the loss history, numbered alerts.

Example::

    feed = OverlayFeed(state, loss_points=2000)   # subscribes to the app's state
    state.apply(Received(TrainerStatus(...), "trainer"))   # every report is one loss point
    feed.state_message()            # {"type": "state", "model": {...}, "loss": {...}, ...}
    feed.loss.as_json()             # the whole chart, for /overlay/loss.json

The app's state keeps only the newest trainer report and a short tuple of
alerts; the pages need a loss *history* and alerts they can tell apart. The
feed keeps both on the overlay side, bounded, and builds them from the
state's events as they are applied (not by sampling): every trainer report
of the streamed version is a point, also when several come between two
state messages, and `loss_points` points at most (restarted when the version
switches). Each alert gets a sequence number and the wall-clock time it was
raised, so a page shows every alert once, also after a reconnect; the last
ALERTS_KEPT are kept.

The state message is the pages' view of one `Snapshot`, as `/api/status` is
the API's (`engine.core.store.status_view`); both go out through
`engine.core.store.encode_json`. Everything here runs in the app's event loop.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.core.store import (
    AlertRaised,
    AppState,
    Event,
    Received,
    Snapshot,
    VersionStreamed,
    nodes_elsewhere,
)
from engine.core.wire import Alert, TrainerStatus

# The newest points ride along with every state message; a page that missed more (it was
# slow, or the history was reset) fetches /overlay/loss.json.
LOSS_TAIL = 32
ALERTS_KEPT = 20
EVENTS_SHOWN = 8


class OverlayFeed:
    """The state message the pages get: a view of the app's state plus the loss and alert history.

    From construction on it follows `state`'s events; what the state already
    holds then (the current trainer report, the alerts) is taken as the start.
    """

    def __init__(
        self, state: AppState, *, loss_points: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.state = state
        self.loss = LossHistory(loss_points)
        self.alerts = AlertFeed(clock)
        # The app starts its overlays as it starts streaming: the consoles' "on stream" time
        # (wall-clock, like the pages' own; `clock` stamps the alerts).
        self.started_ms = round(time.time() * 1000)
        now = state.snapshot()
        self.loss.stream(now.version)
        if now.trainer is not None:
            self.loss.report(now.trainer)
        for alert in now.alerts:
            self.alerts.raised(alert)
        state.subscribe(self._on_event)

    def state_message(self, snapshot: Snapshot | None = None) -> dict[str, Any]:
        """Everything the tiles show except the images; the pages render it as text only.

        Built from `snapshot` (default: the state now).
        """
        now = snapshot or self.state.snapshot()
        trainer, driver = now.trainer, now.driver
        return {
            "type": "state",
            "model": {
                "version": now.version,
                "created": now.version_created,
                "batch": now.streamed_batch(),
            },
            "trainer": (
                {
                    "version": trainer.version,
                    "status": trainer.status,
                    "batch": trainer.batch,
                    "loss": dict(trainer.loss),
                    "samples_per_s": trainer.samples_per_s,
                    "buffers": {
                        name: {"fill": fill.fill, "capacity": fill.capacity, "needed": fill.needed}
                        for name, fill in trainer.buffers.items()
                    },
                }
                if trainer
                else None
            ),
            "driver": (
                {
                    "version": driver.version,
                    "batch": driver.batch,
                    "predictions": dict(driver.predictions),
                    "pad": dict(driver.pad),
                    "fps": driver.fps,
                    "pps": driver.pps,
                    "unstucks": driver.unstucks,
                    "distance_m": driver.distance_m,
                    "offroad_events": driver.offroad_events,
                    # The loop's p50/p95 per stage, ms, in loop order (as /api/status has them).
                    "stages": {
                        stage: {"p50_ms": took.p50_ms, "p95_ms": took.p95_ms}
                        for stage, took in driver.stages.items()
                    },
                    # The Convcam tile's caption: which layer(s) it shows and how many kernels.
                    "convcam": {
                        "layers": list(driver.convcam_layers),
                        "kernels": driver.convcam_kernels,
                    },
                }
                if driver
                else None
            ),
            # Cameras say "no signal" by this, not by time since the last frame: a car standing
            # still sends the same JPEG again, which is not sent on to the pages.
            "driver_connected": "driver" in now.nodes.values(),
            "processes": {
                name: {"state": process.state, "restarts": process.restarts}
                for name, process in now.processes.items()
            },
            "connections": dict(now.connections),
            # Nodes on other PCs, "collector-5 on pc-b": the Trainer Console names the machines.
            "elsewhere": [f"{name} {where}" for name, where in nodes_elsewhere(now).items()],
            "events": list(now.events[-EVENTS_SHOWN:]),
            "alerts": self.alerts.as_json(),
            "started_ms": self.started_ms,
            "loss": self.loss.tail(),
        }

    def _on_event(self, event: Event) -> None:
        if isinstance(event, VersionStreamed):
            self.loss.stream(event.version)
        elif isinstance(event, AlertRaised):
            self.alerts.raised(event.alert)
        elif isinstance(event, Received):
            if isinstance(event.message, TrainerStatus):
                self.loss.report(event.message)
            elif isinstance(event.message, Alert):
                self.alerts.raised(event.message)


@dataclass(frozen=True)
class LossPoint:
    """The trainer's mean losses at one reported batch."""

    seq: int
    batch: int
    losses: dict[str, float]

    def as_json(self) -> list[Any]:
        """[seq, batch, {name: loss}]: compact, the chart's wire form."""
        return [self.seq, self.batch, self.losses]


class LossHistory:
    """The streamed version's loss curve since the app started or switched, at most `limit` points.

    `generation` changes whenever the curve is restarted (a switch, or a trainer
    that resumed from an older checkpoint), so a page knows to reload it.
    """

    def __init__(self, limit: int) -> None:
        self.version = ""
        self.generation = 0
        self._points: collections.deque[LossPoint] = collections.deque(maxlen=limit)
        self._next_seq = 1

    def stream(self, version: str) -> None:
        """The app streams `version` now: a different one starts a new curve."""
        if version != self.version:
            self.version = version
            self._restart()

    def report(self, report: TrainerStatus) -> bool:
        """Add a trainer report as a point if it is a new batch of the streamed version."""
        if report.version != self.version or not report.loss:
            return False
        if self._points and report.batch == self._points[-1].batch:
            return False  # no step since the previous report: nothing new to draw
        if self._points and report.batch < self._points[-1].batch:
            # The trainer went back to an older checkpoint: those batches are trained again.
            self._restart()
        self._points.append(LossPoint(self._next_seq, report.batch, dict(report.loss)))
        self._next_seq += 1
        return True

    def tail(self) -> dict[str, Any]:
        """The newest points and the generation: what every state message carries."""
        points = list(self._points)[-LOSS_TAIL:]
        return {"generation": self.generation, "tail": [point.as_json() for point in points]}

    def as_json(self) -> dict[str, Any]:
        """The whole curve, for a page that (re)loads it."""
        return {
            "version": self.version,
            "generation": self.generation,
            "points": [point.as_json() for point in self._points],
        }

    def __len__(self) -> int:
        return len(self._points)

    def _restart(self) -> None:
        self._points.clear()
        self.generation += 1


class AlertFeed:
    """Numbers every alert as it is raised, keeping the last ALERTS_KEPT."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._shown: collections.deque[list[Any]] = collections.deque(maxlen=ALERTS_KEPT)
        self._clock = clock
        self._next_seq = 1

    def raised(self, alert: Alert) -> None:
        """Number an alert, stamped with the wall-clock time now."""
        self._shown.append([self._next_seq, alert.kind, alert.text, round(self._clock() * 1000)])
        self._next_seq += 1

    def as_json(self) -> list[list[Any]]:
        """[[seq, kind, text, at_ms], ...] oldest first."""
        return list(self._shown)
