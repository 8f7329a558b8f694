"""Every message between charles-stream processes and the hub: one schema, msgpack on the wire.

Example::

    data = encode(TrainerStatus(version="model_0000_demo_v1", status="training", batch=120))
    message = decode(data)          # -> TrainerStatus, validated; ProtocolError if not
    header_type(data)               # -> "trainer_status", reading nothing else

A message is a msgpack map with a "type" key and the fields of one frozen
msgspec Struct below (a tagged union on "type"); images travel inside it as
msgpack bin (JPEG bytes). `decode` validates every field in msgspec's C
decoder; a wrong type, range or unknown key is refused as `ProtocolError`
worded by `engine.core.schema` ("message: 'checkpointed.batch' = -5 is out of
range; accepted: at least 0"), so the hub can close just that connection.
`header_type` reads only the type, for the hub's messages that it forwards
without keeping (a 1 MB sample set is never decoded on the hub's loop).
Samples travel as `engine.core.samples.Sample`, the very class storage and
buffers use: there is no second definition to drift.

What happens to each type (who sends it, where it goes, whether a newer one
replaces a waiting one) is `engine.core.services`' table; `Hello` carries its
`PROTOCOL_VERSION`. A process on another machine (a remote collector next to
a game instance, a second player) speaks exactly this protocol to `/ws/node`
with the hub token.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from engine.core.errors import ProtocolError
from engine.core.samples import BalanceStats, Sample, SampleSet
from engine.core.schema import Count, Finite, NonNegative, convert, explain, shown
from engine.core.services import PROTOCOL_VERSION, Role

# Large enough for a balanced set of 23 samples at 480x270, small enough that a
# hostile peer cannot make the hub buffer gigabytes.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# A Hello without a "protocol" field comes from a node of wave 1, before versions existed.
FIRST_PROTOCOL = 1

TrainerState = Literal["starting", "waiting_for_data", "training", "saving", "stopped"]


class WireMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """A message: its class's `tag` is its wire "type"."""


class Hello(WireMessage, tag="hello", forbid_unknown_fields=False):
    """First message on a connection: who is speaking, in which protocol version.

    Unknown fields are ignored (not refused) so that a newer node's Hello
    still decodes far enough for the hub to say "upgrade the hub".
    """

    role: Role
    name: str
    pid: int = 0
    # A Hello made here speaks this protocol; one decoded without the field is FIRST_PROTOCOL.
    protocol: int = PROTOCOL_VERSION
    # Optional, so a hub of this protocol ignores them from an older node and an older hub from a
    # newer one: the node's machine (socket.gethostname(), shown with its name), and what its
    # link lost so far (engine.node.client.LinkStats), said again on each reconnect.
    host: Annotated[str, msgspec.Meta(max_length=253)] = ""
    reconnects: Count = 0
    sets_lost: Count = 0
    bytes_lost: Count = 0
    # A multi-worker trainer other than the chief: the chief draws every batch and hands it its
    # slice, so the hub sends it no sample sets or collector reports (they would be dropped).
    follows_chief: bool = False


class SampleSets(WireMessage, tag="sample_sets"):
    """Balanced sample sets from a collector, for the trainer's buffers."""

    sets: tuple[SampleSet, ...]


class BufferFill(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How full one balanced output's buffer is, against what training needs and what it holds."""

    fill: Count
    capacity: Count
    # Samples every buffer must hold before a step runs (data.ready_threshold of capacity).
    needed: Count = 0


class TrainerStatus(WireMessage, tag="trainer_status"):
    """The reference's Server/Trainer console numbers, sent a few times a second.

    `loss` holds the mean losses since the previous report ("total" and one per
    output; empty before the first; NaN when training diverged, which viewers
    should see: the one float of a message that may be non-finite, with
    `DriverStatus.predictions`); `samples_per_s` is 0.0 while not training.
    """

    version: str
    status: TrainerState
    batch: Count = 0
    loss: dict[str, float] = msgspec.field(default_factory=dict)
    samples_per_s: NonNegative = 0.0
    buffers: dict[str, BufferFill] = msgspec.field(default_factory=dict)


# A checkpoint file's SHA-256, as lowercase hex.
Sha256Hex = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class CheckpointFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One file of a checkpoint: what a node that copies it checks on arrival."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    size: Count
    sha256: Sha256Hex


class Checkpointed(WireMessage, tag="checkpointed"):
    """The trainer saved new weights; players load them at their next unstuck.

    `path` is where the trainer saved them, in its own data directory; `files`
    (name, size, SHA-256 of each) lets a node whose data directory lacks the
    checkpoint fetch it through the hub and verify every byte
    (`models.transfer`). A receiver finds it in its own data directory under
    the same layout (`<data_dir>/models/<version>/batch-<N>/`).
    """

    version: str
    batch: Count
    path: str
    files: tuple[CheckpointFile, ...] = ()


# The driver loop's stages, in the order one turn runs them (engine/driver/driver.py).
DriverStage = Literal[
    "capture_wait", "preprocess", "predict", "translate", "controller", "convcam", "watch", "report"
]
DRIVER_STAGES: tuple[DriverStage, ...] = typing.get_args(DriverStage)


class StageTime(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How long one driver stage took over its recent turns (`engine.driver.stage_times`)."""

    p50_ms: NonNegative
    p95_ms: NonNegative
    # The turns these percentiles are over: the stage's window, or fewer since the start.
    turns: Annotated[int, msgspec.Meta(ge=1)]

    def __post_init__(self) -> None:
        if self.p95_ms < self.p50_ms:
            raise ValueError(
                f"a stage time's p95_ms = {self.p95_ms!r} is below its p50_ms = {self.p50_ms!r}; "
                "accepted: p95_ms >= p50_ms"
            )


class DriverStatus(WireMessage, tag="driver_status"):
    """The reference's Player console: predictions, pad values, FPS, PPS, loaded weights.

    Predictions are reported as the model made them, NaN included (viewers see a
    diverged model); every other number is finite, as the controller applies it.
    `stages` holds each loop stage the driver has run, with its p50/p95 duration.
    `convcam_layers` and `convcam_kernels` caption the Convcam image; `engine`
    names the inference engine and device ("" from a driver that predates it).
    """

    version: str
    batch: Count = 0
    predictions: dict[str, float] = msgspec.field(default_factory=dict)
    pad: dict[str, Finite] = msgspec.field(default_factory=dict)
    fps: NonNegative = 0.0
    pps: NonNegative = 0.0
    unstucks: Count = 0
    distance_m: Finite = 0.0
    offroad_events: Count = 0
    stages: dict[DriverStage, StageTime] = msgspec.field(default_factory=dict)
    # What the Convcam image shows, for its caption: the layer(s) and their kernels in all.
    convcam_layers: tuple[str, ...] = ()
    convcam_kernels: Count = 0
    # What runs the predictions and on which device, e.g. "openvino CPU" ([driver] engine).
    engine: str = ""


class Frames(WireMessage, tag="frames"):
    """JPEG images for the overlay: what the model sees, its Convcam, the chase camera."""

    hood: bytes = b""
    convcam: bytes = b""
    chase: bytes = b""


class SwitchModel(WireMessage, tag="switch_model"):
    """Hub to trainer and drivers: continue with this version from now on."""

    version: str


class CollectorReport(WireMessage, tag="collector_report"):
    """A collector's cumulative counters (`engine.collector.collector.CollectorStats.as_dict()`).

    Collectors send one every `collector.report_interval_s` of game time; the hub
    hands it to the trainer, which stores it next to the samples, so `charles-stream
    data stats` shows starving bins of a running stream too. Counters are cumulative
    since the collector started: a lost report costs nothing.
    """

    source: str
    balance: BalanceStats
    episodes: Count = 0
    respawns: Count = 0
    game_seconds: NonNegative = 0.0
    wall_seconds: NonNegative = 0.0
    sets_sent: Count = 0
    samples_sent: Count = 0
    # A recorder of human play (`engine.recorder.node`, source "human:<player>") reports with
    # the same counters, game_seconds being the time it recorded, and whether the player has
    # paused it (menus, loading screens); an NPC collector is never paused.
    paused: bool = False


class Alert(WireMessage, tag="alert"):
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

MESSAGE_TYPES: dict[str, type[WireMessage]] = {
    cls.__struct_config__.tag: cls
    for cls in (
        Hello,
        SampleSets,
        TrainerStatus,
        Checkpointed,
        DriverStatus,
        Frames,
        SwitchModel,
        CollectorReport,
        Alert,
    )
}


class _Header(msgspec.Struct):
    """What the hub reads of a message it only forwards; every other field is skipped."""

    type: Any = None


class _HelloVersion(msgspec.Struct):
    protocol: Any = FIRST_PROTOCOL


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Message)
_HEADER = msgspec.msgpack.Decoder(_Header)
_HELLO_VERSION = msgspec.msgpack.Decoder(_HelloVersion)
_ANY = msgspec.msgpack.Decoder()


def encode(message: Message) -> bytes:
    """Serialise a message for the wire."""
    if not isinstance(message, WireMessage):
        raise ProtocolError(f"{type(message).__name__} is not a protocol message")
    return _ENCODER.encode(message)


def decode(data: bytes) -> Message:
    """Parse and validate one message; raise ProtocolError naming what is wrong."""
    _check_size(data)
    try:
        message = _DECODER.decode(data)
    except msgspec.ValidationError as problem:
        raise ProtocolError(_explain(problem, data)) from None
    except msgspec.DecodeError as error:
        raise ProtocolError(f"not msgpack: {error}") from None
    except RecursionError:
        raise ProtocolError("message nested too deeply to be read") from None
    if isinstance(message, Hello):
        protocol = hello_protocol(data)
        if protocol != message.protocol:
            message = msgspec.structs.replace(message, protocol=protocol)
    return message


def header_type(data: bytes) -> str:
    """The wire type of an encoded message, reading nothing else (ProtocolError if unknown)."""
    _check_size(data)
    try:
        name = _HEADER.decode(data).type
    except msgspec.ValidationError:
        raise ProtocolError(f"a message must be a map, got {_kind_of(data)}") from None
    except msgspec.DecodeError as error:
        raise ProtocolError(f"not msgpack: {error}") from None
    except RecursionError:
        raise ProtocolError("message nested too deeply to be read") from None
    if not isinstance(name, str) or name not in MESSAGE_TYPES:
        accepted = ", ".join(sorted(MESSAGE_TYPES))
        raise ProtocolError(f"unknown message type {shown(name)}; accepted: {accepted}")
    return name


def hello_protocol(data: bytes) -> int:
    """The protocol version an encoded Hello says, FIRST_PROTOCOL if it says none.

    Read on its own, before the Hello is validated, so a peer of another
    version hears "upgrade", not a complaint about a field it does not know.
    """
    try:
        protocol = _HELLO_VERSION.decode(data).protocol
    except (msgspec.DecodeError, RecursionError):
        return FIRST_PROTOCOL  # decode() says what is wrong with it
    if not isinstance(protocol, int) or isinstance(protocol, bool):
        raise ProtocolError(
            f"message: 'hello.protocol' = {shown(protocol)} has the wrong type; expected int"
        )
    return protocol


def collector_report(stats: Mapping[str, Any]) -> CollectorReport:
    """A collector's `CollectorStats.as_dict()` as its message, validated like a received one."""
    return convert(dict(stats), CollectorReport, where="collector stats", error=ProtocolError)


def message_type(message: Message) -> str:
    """The wire name of a message's type (e.g. 'trainer_status')."""
    return type(message).__struct_config__.tag


def message_fields(message: Message) -> dict[str, Any]:
    """A message's fields as plain values (nested Structs as dicts, bytes kept), without "type"."""
    fields = msgspec.to_builtins(message, builtin_types=(bytes, bytearray, memoryview))
    del fields["type"]
    return fields


def _check_size(data: bytes) -> None:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")


def _explain(problem: msgspec.ValidationError, data: bytes) -> str:
    """The sentence for a refused message: read again, untyped, to show the bad value."""
    try:
        name = header_type(data)  # an unknown or missing type, or not a map, is said here
    except ProtocolError as error:
        return str(error)
    try:
        table = _ANY.decode(data)
    except msgspec.DecodeError as error:
        return f"not msgpack: {error}"
    except RecursionError:
        return f"message {name!r} is nested too deeply to be read"
    table.pop("type", None)
    return "message: " + explain(problem, table, MESSAGE_TYPES[name], prefix=f"{name}.")


def _kind_of(data: bytes) -> str:
    try:
        value = _ANY.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return "something else"
    names = {list: "array", str: "str", bytes: "bin", int: "int", float: "float", bool: "bool"}
    return names.get(type(value), type(value).__name__)


__all__ = [
    "DRIVER_STAGES",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "Alert",
    "BufferFill",
    "CheckpointFile",
    "Checkpointed",
    "CollectorReport",
    "DriverStage",
    "DriverStatus",
    "Frames",
    "Hello",
    "Message",
    "ProtocolError",
    "Role",
    "Sample",
    "SampleSets",
    "StageTime",
    "SwitchModel",
    "TrainerStatus",
    "collector_report",
    "decode",
    "encode",
    "header_type",
    "hello_protocol",
    "message_fields",
    "message_type",
]
