"""What the overlay pages are told: a compact state, the loss history, numbered alerts.

Example::

    feed = OverlayFeed(state, loss_points=2000)
    feed.observe(time.time())       # call a few times a second: picks up new losses and alerts
    feed.state_message()            # {"type": "state", "model": {...}, "loss": {...}, ...}
    feed.loss.as_json()             # the whole chart, for /overlay/loss.json

`AppState` keeps only the newest trainer status and a short deque of alerts;
the pages need a loss *history* and alerts they can tell apart. The feed keeps
both on the overlay side, bounded: `loss_points` points of the streamed
version (reset when it switches) and the last ALERTS_KEPT alerts, each with a
sequence number so a page shows every alert once, also after a reconnect.
Everything here is plain data read by the server in the app's event loop.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from engine.core.store import AppState
from engine.core.wire import Alert

# The newest points ride along with every state message; a page that missed more (it was
# slow, or the history was reset) fetches /overlay/loss.json.
LOSS_TAIL = 32
ALERTS_KEPT = 20
EVENTS_SHOWN = 8


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

    def observe(self, state: AppState) -> bool:
        """Take the trainer's newest report if it is a new batch of the streamed version."""
        if state.version != self.version:
            self.version = state.version
            self._restart()
        trainer = state.trainer
        if trainer is None or trainer.version != state.version or not trainer.loss:
            return False
        if self._points and trainer.batch == self._points[-1].batch:
            return False
        if self._points and trainer.batch < self._points[-1].batch:
            # The trainer went back to an older checkpoint: those batches are trained again.
            self._restart()
        self._points.append(LossPoint(self._next_seq, trainer.batch, dict(trainer.loss)))
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
    """Numbers the alerts that appear in `AppState.alerts`, keeping the last ALERTS_KEPT."""

    def __init__(self) -> None:
        self._shown: collections.deque[list[Any]] = collections.deque(maxlen=ALERTS_KEPT)
        self._newest: Alert | None = None  # held, so its identity cannot be reused
        self._next_seq = 1

    def observe(self, state: AppState, now_s: float) -> bool:
        """Number the alerts added since the last call; True if there were any."""
        alerts = list(state.alerts)
        start = 0
        if self._newest is not None:
            # Alerts are only ever appended: everything after the newest one seen is new. If it
            # has left the deque, every alert there is newer than it.
            for index in range(len(alerts) - 1, -1, -1):
                if alerts[index] is self._newest:
                    start = index + 1
                    break
        fresh = alerts[start:]
        for alert in fresh:
            self._shown.append([self._next_seq, alert.kind, alert.text, round(now_s * 1000)])
            self._next_seq += 1
        if alerts:
            self._newest = alerts[-1]
        return bool(fresh)

    def as_json(self) -> list[list[Any]]:
        """[[seq, kind, text, at_ms], ...] oldest first."""
        return list(self._shown)


class OverlayFeed:
    """The state message the pages get, built from `AppState` plus the loss and alert history."""

    def __init__(self, state: AppState, *, loss_points: int) -> None:
        self.state = state
        self.loss = LossHistory(loss_points)
        self.alerts = AlertFeed()

    def observe(self, now_s: float) -> None:
        """Pick up new trainer losses and alerts (wall-clock `now_s` stamps the alerts)."""
        self.loss.observe(self.state)
        self.alerts.observe(self.state, now_s)

    def state_message(self) -> dict[str, Any]:
        """Everything the tiles show except the images; the pages render it as text only."""
        state = self.state
        trainer, driver = state.trainer, state.driver
        return {
            "type": "state",
            "model": {
                "version": state.version,
                "created": state.version_created,
                "batch": _streamed_batch(state),
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
                }
                if driver
                else None
            ),
            # Cameras say "no signal" by this, not by time since the last frame: a car standing
            # still sends the same JPEG again, which is not sent on to the pages.
            "driver_connected": "driver" in state.nodes.values(),
            "processes": {
                name: {"state": process.state, "restarts": process.restarts}
                for name, process in state.processes.items()
            },
            "connections": dict(state.connections),
            "events": list(state.events)[-EVENTS_SHOWN:],
            "alerts": self.alerts.as_json(),
            "loss": self.loss.tail(),
        }


def _streamed_batch(state: AppState) -> int | None:
    # The same rule as StreamActions.current_batch, without its records: trainer, else checkpoint.
    if state.trainer is not None and state.trainer.version == state.version:
        return state.trainer.batch
    if state.checkpoint is not None and state.checkpoint.version == state.version:
        return state.checkpoint.batch
    return None
