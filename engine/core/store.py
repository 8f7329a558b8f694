"""What the stream app knows right now, in one place.

Example::

    state = AppState(version="model_0000_demo_v1")
    state.record(TrainerStatus(version="model_0000_demo_v1", status="training", batch=7), "trainer")
    state.status_json()["batch"]    # -> 7

Plain dataclasses without I/O: the hub and the supervisor write them, the
terminal view, `/api/status` and the overlays read them. Everything runs in
the app's one event loop, so no locks are needed.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core.wire import (
    Alert,
    Checkpointed,
    CollectorReport,
    DriverStatus,
    Frames,
    Message,
    TrainerStatus,
)

ProcessPhase = Literal["starting", "running", "backoff", "crash_loop", "stopped"]

# Enough for the Trainer Console and an overlay ticker; old entries are only history.
HISTORY_LENGTH = 50


@dataclass
class ProcessState:
    """One supervised child as the supervisor last saw it."""

    name: str
    state: ProcessPhase
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    since: float = 0.0


@dataclass
class AppState:
    """The newest status of every part of the app: model, trainer, driver, processes, links."""

    version: str = ""  # the streamed model version
    version_created: str = ""
    trainer: TrainerStatus | None = None
    driver: DriverStatus | None = None
    frames: Frames | None = None  # newest overlay images
    checkpoint: Checkpointed | None = None  # newest weights the trainer saved
    # The newest report of each collector, by node name.
    collectors: dict[str, CollectorReport] = field(default_factory=dict)
    # Node name -> role of every connection the hub holds now.
    nodes: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ProcessState] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)  # "obs"/"twitch" -> "connected"/"off"
    alerts: collections.deque[Alert] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_LENGTH)
    )
    # Connection and restart events, newest last, for the Trainer Console.
    events: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_LENGTH)
    )
    # Called with every message `record` keeps, after it is kept (e.g. the overlay publisher
    # wakes on new frames instead of polling). Quick, non-blocking callables only.
    listeners: list[Callable[[Message], None]] = field(default_factory=list)

    def record(self, message: Message, sender: str) -> None:
        """Keep what a node reported; messages that carry no state are ignored.

        `sender` is the node's name from its Hello, so each collector's stats
        are kept apart.
        """
        if isinstance(message, TrainerStatus):
            self.trainer = message
        elif isinstance(message, DriverStatus):
            self.driver = message
        elif isinstance(message, Frames):
            self.frames = message
        elif isinstance(message, Checkpointed):
            self.checkpoint = message
        elif isinstance(message, Alert):
            self.alerts.append(message)
        elif isinstance(message, CollectorReport):
            self.collectors[sender] = message
        else:
            return
        for listener in self.listeners:
            listener(message)

    def status_json(self) -> dict[str, Any]:
        """The `/api/status` body: model, training and driving numbers, processes, links."""
        trainer, driver = self.trainer, self.driver
        return {
            "version": self.version,
            "created": self.version_created,
            "batch": trainer.batch if trainer else None,
            "trainer_status": trainer.status if trainer else None,
            "loss": dict(trainer.loss) if trainer else {},
            "samples_per_s": trainer.samples_per_s if trainer else None,
            "buffers": (
                {name: dataclasses.asdict(fill) for name, fill in trainer.buffers.items()}
                if trainer
                else {}
            ),
            "checkpoint": (
                {"version": self.checkpoint.version, "batch": self.checkpoint.batch}
                if self.checkpoint
                else None
            ),
            "driver_version": driver.version if driver else None,
            "driver_batch": driver.batch if driver else None,
            "pps": driver.pps if driver else None,
            "fps": driver.fps if driver else None,
            "predictions": dict(driver.predictions) if driver else {},
            "pad": dict(driver.pad) if driver else {},
            "unstucks": driver.unstucks if driver else None,
            "distance_m": driver.distance_m if driver else None,
            "processes": {
                name: {
                    "state": process.state,
                    "pid": process.pid,
                    "restarts": process.restarts,
                    "last_exit": process.last_exit,
                    "since": process.since,
                }
                for name, process in self.processes.items()
            },
            "nodes": dict(self.nodes),
            "collectors": {
                name: dataclasses.asdict(report) for name, report in self.collectors.items()
            },
            "connections": dict(self.connections),
            "alerts": [{"kind": alert.kind, "text": alert.text} for alert in self.alerts],
            "events": list(self.events),
        }
