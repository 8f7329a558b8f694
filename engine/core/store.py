"""The app's state: one store, changed only through `apply`, read as frozen snapshots.

Example::

    state = AppState()
    state.subscribe(lambda event: print(type(event).__name__))    # told of every applied event
    state.apply(VersionStreamed("model_0000_demo_v1", created="2024-05-01T10:00:00"))
    state.apply(Received(TrainerStatus("model_0000_demo_v1", "training", batch=7), "trainer"))
    state.trainer.batch                              # 7
    snapshot = state.snapshot()                      # frozen: what every view is built from
    encode_json(status_view(snapshot))               # the /api/status body; NaN -> null

Every writer says what happened as an event and nothing else touches the
state: the hub applies what nodes send (`Received`, with the sender's name)
and who is connected (`NodesChanged`), the supervisor its children
(`ProcessChanged`, `Noted`; the app's own resources: `AppSampled`), the
actions the streamed version (`VersionStreamed`) and alerts (`AlertRaised`),
chat and OBS their links (`ConnectionChanged`). Where a wire message is kept (the newest, the newest
per sender, a bounded history, or not at all) is the `kept` column of
`engine.core.services`: the table the hub and the node client read too, so a
new message type needs no code here.

Readers take `snapshot()` (an immutable value; the current one costs
nothing, since `apply` builds a new one) or read the same names on the store.
Subscribers are called with each applied event, once, right after it is
applied: the overlay's loss chart takes every trainer report this way instead
of sampling the newest, and its publisher wakes on new frames. Everything
runs on the app's one event loop, so there are no locks; subscribers must be
quick and must not block.

`/api/status` and the overlay's state message are two views of one snapshot
(`status_view` here, `overlays.feed`), both written by `encode_json`, the
one JSON encoder: a diverged loss (NaN, inf) becomes null, never invalid JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from engine.core.services import service
from engine.core.wire import (
    Alert,
    Checkpointed,
    CollectorReport,
    DriverStatus,
    Frames,
    Message,
    TrainerStatus,
    message_type,
)

log = logging.getLogger("charles.store")

ProcessPhase = Literal["starting", "running", "backoff", "crash_loop", "stopped"]
Link = Literal["obs", "twitch"]

# Enough for the Trainer Console and an overlay ticker; old entries are only history.
HISTORY_LENGTH = 50

_NOTHING: Mapping[str, Any] = types.MappingProxyType({})


def _empty() -> Any:
    # A snapshot's mappings start as the one shared empty, read-only mapping.
    return field(default_factory=lambda: _NOTHING)


@dataclass(frozen=True)
class ProcessState:
    """One supervised child as the supervisor last saw it."""

    name: str
    state: ProcessPhase
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    since: float = 0.0
    # Its resources as last sampled (`[supervisor] sample_s`); None before the first sample and
    # while it does not run. fds: open file descriptors (handles on Windows); cpu_percent: of
    # one core, since the previous sample.
    rss_bytes: int | None = None
    fds: int | None = None
    threads: int | None = None
    cpu_percent: float | None = None


# -- events: everything that changes the state ------------------------------------------


@dataclass(frozen=True)
class Received:
    """A wire message a node sent; `sender` is the node's name from its Hello."""

    message: Message
    sender: str


@dataclass(frozen=True)
class VersionStreamed:
    """The app streams `version` from now on (`created`: when the version was made, ISO 8601).

    A different version drops the trainer's last report: the old version's
    numbers are not the new one's.
    """

    version: str
    created: str = ""


@dataclass(frozen=True)
class ProcessChanged:
    """A supervised child's new state."""

    process: ProcessState


@dataclass(frozen=True)
class AppSampled:
    """The app process's own resources, sampled with its children's (`state` is "running")."""

    process: ProcessState


@dataclass(frozen=True)
class ConnectionChanged:
    """The state of the app's link to OBS or Twitch, as a line for people ("connected ...").

    `event`, when given, is also added to the event lines.
    """

    link: Link
    text: str
    event: str = ""


@dataclass(frozen=True)
class NodesChanged:
    """The hub's connections now (node name -> role), and the line that says what changed."""

    nodes: Mapping[str, str]
    event: str
    # Node name -> where it runs and what its link lost: {"host", "peer", "reconnects",
    # "sets_lost", "bytes_lost"} (the node's Hello; engine.node.client.LinkStats).
    links: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class AlertRaised:
    """An alert of the app itself (a switch, a moment, a vote, a crash loop) for the viewers."""

    alert: Alert


@dataclass(frozen=True)
class Noted:
    """An event line for the Trainer Console (a start, an exit, a saved replay)."""

    text: str


Event = (
    Received
    | VersionStreamed
    | ProcessChanged
    | AppSampled
    | ConnectionChanged
    | NodesChanged
    | AlertRaised
    | Noted
)
Subscriber = Callable[[Event], None]


# -- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The newest status of every part of the app at one moment; never changes once made.

    Wire messages sit by their wire type name, as the services table keeps
    them; the properties below name the ones the views use.
    """

    version: str = ""  # the streamed model version
    version_created: str = ""
    # Wire type -> newest message ("latest"), sender -> newest ("per_sender"), oldest first.
    latest: Mapping[str, Message] = _empty()
    per_sender: Mapping[str, Mapping[str, Message]] = _empty()
    history: Mapping[str, tuple[Message, ...]] = _empty()
    # Node name -> role of every connection the hub holds now.
    nodes: Mapping[str, str] = _empty()
    # Node name -> its host, address and link losses (NodesChanged.links).
    node_links: Mapping[str, Mapping[str, Any]] = _empty()
    processes: Mapping[str, ProcessState] = _empty()
    app_process: ProcessState | None = None  # the app's own pid and resources, once sampled
    connections: Mapping[str, str] = _empty()  # "obs"/"twitch" -> "connected ..."/"off ..."
    # Connection, restart and replay lines, newest last, for the Trainer Console.
    events: tuple[str, ...] = ()

    @property
    def trainer(self) -> TrainerStatus | None:
        """The trainer's newest report (None before the first, and after a switch)."""
        return self.latest.get("trainer_status")  # type: ignore[return-value]

    @property
    def driver(self) -> DriverStatus | None:
        """The driver's newest status."""
        return self.latest.get("driver_status")  # type: ignore[return-value]

    @property
    def frames(self) -> Frames | None:
        """The newest overlay images."""
        return self.latest.get("frames")  # type: ignore[return-value]

    @property
    def checkpoint(self) -> Checkpointed | None:
        """The newest weights the trainer saved."""
        return self.latest.get("checkpointed")  # type: ignore[return-value]

    @property
    def collectors(self) -> Mapping[str, CollectorReport]:
        """The newest report of each collector, by node name."""
        return self.per_sender.get("collector_report", _NOTHING)  # type: ignore[return-value]

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """The newest HISTORY_LENGTH alerts, from nodes and from the app, oldest first."""
        return self.history.get("alert", ())  # type: ignore[return-value]

    def streamed_batch(self) -> int | None:
        """The streamed version's batch: the trainer's newest report, else its last checkpoint."""
        if self.trainer is not None and self.trainer.version == self.version:
            return self.trainer.batch
        if self.checkpoint is not None and self.checkpoint.version == self.version:
            return self.checkpoint.batch
        return None


# -- the store ----------------------------------------------------------------------------


class AppState:
    """The app's state: `apply` an event to change it, `snapshot()` or the properties to read it."""

    def __init__(self) -> None:
        self._now = Snapshot()
        self._subscribers: list[Subscriber] = []

    def apply(self, event: Event) -> None:
        """Change the state by one event, then tell every subscriber.

        A wire message the services table does not keep (sample sets, hello)
        changes nothing and is not passed on.
        """
        if isinstance(event, Received) and not self._keep(event):
            return
        if not isinstance(event, Received):
            self._now = _applied(self._now, event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                # A view's bug must not cost the writer (the hub reading a node) its work, nor
                # the other subscribers the event.
                log.exception("a state subscriber failed on %s", type(event).__name__)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event applied from now on; returns the unsubscribe."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def snapshot(self) -> Snapshot:
        """The state now, as an immutable value."""
        return self._now

    # Read-only names of the snapshot now, for readers that want one value.

    @property
    def version(self) -> str:
        """The streamed model version ("" before the first switch)."""
        return self._now.version

    @property
    def version_created(self) -> str:
        """When the streamed version was created (ISO 8601)."""
        return self._now.version_created

    @property
    def trainer(self) -> TrainerStatus | None:
        """The trainer's newest report."""
        return self._now.trainer

    @property
    def driver(self) -> DriverStatus | None:
        """The driver's newest status."""
        return self._now.driver

    @property
    def frames(self) -> Frames | None:
        """The newest overlay images."""
        return self._now.frames

    @property
    def checkpoint(self) -> Checkpointed | None:
        """The newest weights the trainer saved."""
        return self._now.checkpoint

    @property
    def collectors(self) -> Mapping[str, CollectorReport]:
        """The newest report of each collector, by node name."""
        return self._now.collectors

    @property
    def nodes(self) -> Mapping[str, str]:
        """Node name -> role of every connection the hub holds now."""
        return self._now.nodes

    @property
    def processes(self) -> Mapping[str, ProcessState]:
        """Every supervised child by name."""
        return self._now.processes

    @property
    def connections(self) -> Mapping[str, str]:
        """The state of the links to OBS and Twitch in words, by "obs" and "twitch"."""
        return self._now.connections

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """The newest alerts, oldest first."""
        return self._now.alerts

    @property
    def events(self) -> tuple[str, ...]:
        """The newest event lines, oldest first."""
        return self._now.events

    def _keep(self, event: Received) -> bool:
        kind = message_type(event.message)
        kept = service(kind).kept
        now = self._now
        if kept == "latest":
            self._now = dataclasses.replace(now, latest=_with(now.latest, kind, event.message))
        elif kept == "per_sender":
            senders = _with(now.per_sender.get(kind, _NOTHING), event.sender, event.message)
            self._now = dataclasses.replace(now, per_sender=_with(now.per_sender, kind, senders))
        elif kept == "history":
            kept_ones = (*now.history.get(kind, ()), event.message)[-HISTORY_LENGTH:]
            self._now = dataclasses.replace(now, history=_with(now.history, kind, kept_ones))
        else:
            return False
        return True


def _applied(now: Snapshot, event: Event) -> Snapshot:
    """The snapshot after one app event (wire messages go through `AppState._keep`)."""
    if isinstance(event, VersionStreamed):
        latest = now.latest
        if event.version != now.version:
            latest = types.MappingProxyType(
                {kind: message for kind, message in latest.items() if kind != "trainer_status"}
            )
        return dataclasses.replace(
            now, version=event.version, version_created=event.created, latest=latest
        )
    if isinstance(event, ProcessChanged):
        process = event.process
        return dataclasses.replace(now, processes=_with(now.processes, process.name, process))
    if isinstance(event, AppSampled):
        return dataclasses.replace(now, app_process=event.process)
    if isinstance(event, ConnectionChanged):
        changed = dataclasses.replace(
            now, connections=_with(now.connections, event.link, event.text)
        )
        return _noted(changed, event.event) if event.event else changed
    if isinstance(event, NodesChanged):
        nodes = dataclasses.replace(
            now,
            nodes=types.MappingProxyType(dict(event.nodes)),
            node_links=types.MappingProxyType({k: dict(v) for k, v in event.links.items()}),
        )
        return _noted(nodes, event.event)
    if isinstance(event, AlertRaised):
        alerts = (*now.alerts, event.alert)[-HISTORY_LENGTH:]
        return dataclasses.replace(now, history=_with(now.history, "alert", alerts))
    if isinstance(event, Noted):
        return _noted(now, event.text)
    raise TypeError(f"{type(event).__name__} is not a state event")


def _noted(now: Snapshot, text: str) -> Snapshot:
    return dataclasses.replace(now, events=(*now.events, text)[-HISTORY_LENGTH:])


def _with(mapping: Mapping[str, Any], key: str, value: Any) -> Mapping[str, Any]:
    # A new read-only mapping: snapshots already handed out keep what they held.
    return types.MappingProxyType({**mapping, key: value})


# -- views and the one JSON encoder ---------------------------------------------------------


def status_view(snapshot: Snapshot) -> dict[str, Any]:
    """The `/api/status` body: model, training and driving numbers, processes, links."""
    trainer, driver, checkpoint = snapshot.trainer, snapshot.driver, snapshot.checkpoint
    return {
        "version": snapshot.version,
        "created": snapshot.version_created,
        "batch": trainer.batch if trainer else None,
        "trainer_status": trainer.status if trainer else None,
        "loss": dict(trainer.loss) if trainer else {},
        "samples_per_s": trainer.samples_per_s if trainer else None,
        "buffers": (
            {name: _plain(fill) for name, fill in trainer.buffers.items()} if trainer else {}
        ),
        "checkpoint": (
            {"version": checkpoint.version, "batch": checkpoint.batch} if checkpoint else None
        ),
        "driver_version": driver.version if driver else None,
        "driver_batch": driver.batch if driver else None,
        # What runs the driver's predictions, e.g. "openvino CPU" ([driver] engine).
        "driver_engine": driver.engine if driver else None,
        "pps": driver.pps if driver else None,
        "fps": driver.fps if driver else None,
        "predictions": dict(driver.predictions) if driver else {},
        "pad": dict(driver.pad) if driver else {},
        "unstucks": driver.unstucks if driver else None,
        "distance_m": driver.distance_m if driver else None,
        # The driver loop's p50/p95 per stage, ms: {"predict": {"p50_ms": ..., ...}, ...}.
        "stages": {name: _plain(took) for name, took in driver.stages.items()} if driver else {},
        "processes": {
            name: {
                "state": process.state,
                "pid": process.pid,
                "restarts": process.restarts,
                "last_exit": process.last_exit,
                "since": process.since,
                **usage_view(process),
            }
            for name, process in snapshot.processes.items()
        },
        # The app process itself: pid and resources (null until the supervisor's first sample).
        "app_process": (
            {"pid": snapshot.app_process.pid, **usage_view(snapshot.app_process)}
            if snapshot.app_process
            else None
        ),
        "nodes": dict(snapshot.nodes),
        "node_links": {name: dict(link) for name, link in snapshot.node_links.items()},
        "collectors": {name: _plain(report) for name, report in snapshot.collectors.items()},
        "connections": dict(snapshot.connections),
        "alerts": [{"kind": alert.kind, "text": alert.text} for alert in snapshot.alerts],
        "events": list(snapshot.events),
    }


def nodes_elsewhere(snapshot: Snapshot) -> dict[str, str]:
    """Node name -> "on HOST" (and its link's troubles) for each node on another machine.

    The consoles and the overlay name the PCs that joined the stream. Another
    machine is a peer address that is not loopback: the app's own processes
    (and OBS, chat) connect to 127.0.0.1, a node on another PC over the LAN.
    """
    shown = {}
    for name, link in sorted(snapshot.node_links.items()):
        address = str(link.get("peer", "")).rsplit(":", 1)[0].strip("[]")
        try:
            if ipaddress.ip_address(address).is_loopback:
                continue
        except ValueError:
            pass  # not an address: shown, with what the node said of itself
        troubles = [
            f"{count} {one if count == 1 else many}"
            for count, one, many in (
                (int(link.get("reconnects") or 0), "reconnect", "reconnects"),
                (int(link.get("sets_lost") or 0), "set lost", "sets lost"),
            )
            if count
        ]
        shown[name] = f"on {link.get('host') or 'an unnamed host'}" + (
            f" ({', '.join(troubles)})" if troubles else ""
        )
    return shown


MIB = 1 << 20  # "MB" in the views and in [supervisor] memory_warn_mb: 2^20 bytes


def usage_view(process: ProcessState) -> dict[str, Any]:
    """A process's sampled resources for /api/status: RSS in MB, fds, threads, CPU % of a core."""
    rss = process.rss_bytes
    return {
        "rss_mb": round(rss / MIB, 1) if rss is not None else None,
        "fds": process.fds,
        "threads": process.threads,
        "cpu_percent": process.cpu_percent,
    }


def encode_json(view: Any) -> str:
    """Compact JSON of a view; NaN and infinities become null (a diverged loss is a gap).

    Python's json writes NaN, which no browser and no strict parser accepts.
    """
    return _JSON.encode(view).decode()


_JSON = msgspec.json.Encoder()


def _plain(value: Any) -> Any:
    # Wire records (dataclasses or msgspec Structs) as dicts and lists.
    return msgspec.to_builtins(value)
