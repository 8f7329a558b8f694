"""Every message between charles-stream processes and the hub: one schema, msgpack on the wire.

Example::

    data = encode(TrainerStatus(version="model_0000_demo_v1", status="training", batch=120))
    message = decode(data)          # -> TrainerStatus, validated; ProtocolError if not

A message is a msgpack map with a "type" key and the fields of one dataclass
below; images travel inside it as JPEG bytes. `decode` validates every field
with the same walker that validates config.toml, so a type, range or unknown
key is rejected with the field's name, and the hub can close just that
connection. Samples travel as `engine.data.samples.Sample`, the very class
storage and buffers use: there is no second definition to drift.

A process on another machine (a remote collector next to a game instance, a
second player) speaks exactly this protocol to `/ws/node` with the hub token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from engine.core.config import build_section
from engine.core.errors import ConfigError, ProtocolError
from engine.data.balance import BalanceStats
from engine.data.samples import Sample, SampleSet

# Large enough for a balanced set of 23 samples at 480x270, small enough that a
# hostile peer cannot make the hub buffer gigabytes.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Role = Literal["collector", "trainer", "driver", "sim", "chat", "observer"]
TrainerState = Literal["starting", "waiting_for_data", "training", "saving", "stopped"]


@dataclass(frozen=True)
class Hello:
    """First message on a connection: who is speaking."""

    role: Role
    name: str
    pid: int = 0


@dataclass(frozen=True)
class SampleSets:
    """Balanced sample sets from a collector, for the trainer's buffers."""

    sets: tuple[SampleSet, ...]


@dataclass(frozen=True)
class BufferFill:
    """How full one balanced output's buffer is, against what training needs and what it holds."""

    fill: int = field(metadata={"range": (0, None)})
    capacity: int = field(metadata={"range": (0, None)})
    # Samples every buffer must hold before a step runs (data.ready_threshold of capacity).
    needed: int = field(default=0, metadata={"range": (0, None)})


@dataclass(frozen=True)
class TrainerStatus:
    """The reference's Server/Trainer console numbers, sent a few times a second.

    `loss` holds the mean losses since the previous report ("total" and one per
    output; empty before the first); `samples_per_s` is 0.0 while not training.
    """

    version: str
    status: TrainerState
    batch: int = field(default=0, metadata={"range": (0, None)})
    loss: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0
    buffers: dict[str, BufferFill] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpointed:
    """The trainer saved new weights; players load them at their next unstuck."""

    version: str
    batch: int = field(metadata={"range": (0, None)})
    path: str


@dataclass(frozen=True)
class DriverStatus:
    """The reference's Player console: predictions, pad values, FPS, PPS, loaded weights."""

    version: str
    batch: int = field(default=0, metadata={"range": (0, None)})
    predictions: dict[str, float] = field(default_factory=dict)
    pad: dict[str, float] = field(default_factory=dict)
    fps: float = 0.0
    pps: float = 0.0
    unstucks: int = 0
    distance_m: float = 0.0
    offroad_events: int = 0


@dataclass(frozen=True)
class Frames:
    """JPEG images for the overlay: what the model sees, its Convcam, the chase camera."""

    hood: bytes = b""
    convcam: bytes = b""
    chase: bytes = b""


@dataclass(frozen=True)
class SwitchModel:
    """Hub to trainer and drivers: continue with this version from now on."""

    version: str


@dataclass(frozen=True)
class CollectorReport:
    """A collector's cumulative counters (`engine.collector.collector.CollectorStats.as_dict()`).

    Collectors send one every `collector.report_interval_s` of game time; the hub
    hands it to the trainer, which stores it next to the samples, so `charles-stream
    data stats` shows starving bins of a running stream too. Counters are cumulative
    since the collector started: a lost report costs nothing.
    """

    source: str
    balance: BalanceStats
    episodes: int = field(default=0, metadata={"range": (0, None)})
    respawns: int = field(default=0, metadata={"range": (0, None)})
    game_seconds: float = field(default=0.0, metadata={"range": (0.0, None)})
    wall_seconds: float = field(default=0.0, metadata={"range": (0.0, None)})
    sets_sent: int = field(default=0, metadata={"range": (0, None)})
    samples_sent: int = field(default=0, metadata={"range": (0, None)})


@dataclass(frozen=True)
class Alert:
    """Something viewers should see: an unstuck, a crash loop, a tagged moment."""

    kind: str
    text: str


Message = (
    Hello
    | SampleSets
    | TrainerStatus
    | Checkpointed
    | DriverStatus
    | Frames
    | SwitchModel
    | CollectorReport
    | Alert
)

MESSAGE_TYPES: dict[str, type] = {
    "hello": Hello,
    "sample_sets": SampleSets,
    "trainer_status": TrainerStatus,
    "checkpointed": Checkpointed,
    "driver_status": DriverStatus,
    "frames": Frames,
    "switch_model": SwitchModel,
    "collector_report": CollectorReport,
    "alert": Alert,
}
_TYPE_NAMES = {cls: name for name, cls in MESSAGE_TYPES.items()}


def encode(message: Message) -> bytes:
    """Serialise a message for the wire."""
    try:
        name = _TYPE_NAMES[type(message)]
    except KeyError:
        raise ProtocolError(f"{type(message).__name__} is not a protocol message") from None
    return msgpack.packb({"type": name, **_plain(message)}, use_bin_type=True)


def decode(data: bytes) -> Message:
    """Parse and validate one message; raise ProtocolError naming what is wrong."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        table = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated exception types
        raise ProtocolError(f"not msgpack: {error}") from None
    if not isinstance(table, dict):
        raise ProtocolError(f"a message must be a map, got {type(table).__name__}")
    name = table.pop("type", None)
    if not isinstance(name, str) or name not in MESSAGE_TYPES:
        accepted = ", ".join(sorted(MESSAGE_TYPES))
        raise ProtocolError(f"unknown message type {name!r}; accepted: {accepted}")
    try:
        return build_section(MESSAGE_TYPES[name], table, file="message", prefix=f"{name}.")
    except ConfigError as error:
        raise ProtocolError(str(error)) from None
    except (TypeError, ValueError) as error:  # a required field missing, or a Sample invariant
        raise ProtocolError(f"message {name!r}: {error}") from None


def collector_report(stats: Mapping[str, Any]) -> CollectorReport:
    """A collector's `CollectorStats.as_dict()` as its message, validated like a received one."""
    try:
        return build_section(CollectorReport, dict(stats), file="collector stats", prefix="")
    except ConfigError as error:
        raise ProtocolError(str(error)) from None
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"collector stats: {error}") from None


def message_type(message: Message) -> str:
    """The wire name of a message's type (e.g. 'trainer_status')."""
    return _TYPE_NAMES[type(message)]


def _plain(message: Any) -> dict[str, Any]:
    # dataclasses.asdict deep-copies bytes and recurses for us; tuples become lists in msgpack.
    return dataclasses.asdict(message)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "Alert",
    "BufferFill",
    "Checkpointed",
    "CollectorReport",
    "DriverStatus",
    "Frames",
    "Hello",
    "Message",
    "ProtocolError",
    "Sample",
    "SampleSets",
    "SwitchModel",
    "TrainerStatus",
    "collector_report",
    "decode",
    "encode",
    "message_type",
]
