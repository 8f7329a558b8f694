"""The one configuration schema of charles-stream, and its loader.

Example::

    from engine.core.config import load_config
    config = load_config("config.toml")
    config.sim.hood_width   # 480
    msgspec.structs.replace(config.sim, window="off")   # sections are frozen

Every section is a frozen msgspec Struct below: its keys, their types, ranges
(`Annotated[..., Meta(ge=, le=)]`) and choices (`Literal`), and the checks
that span keys (`__post_init__`), so a key exists in exactly one place.
msgspec validates the TOML table against them; `engine.core.schema` words a
refusal as `ConfigError` naming the file, the dotted key, the bad value and
what would be accepted; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from engine.core.errors import ConfigError
from engine.core.schema import convert, key_text, parse_toml
from engine.core.wire import MAX_MESSAGE_BYTES

DEFAULT_CONFIG_PATH = Path("config.toml")
# Config files already said to be empty (or only comments), so a process says it once.
_SAID_EMPTY: set[str] = set()

log = logging.getLogger("charles.config")


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A config section: immutable, and a key it does not declare is an error."""


class AppConfig(Section):
    """Where runtime data lives and how much the app says."""

    data_dir: str = "data"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class SimConfig(Section):
    """The built-in driving game (the embedded default)."""

    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 1
    tick_hz: Annotated[float, Meta(ge=1.0, le=240.0)] = 30.0
    hood_width: Annotated[int, Meta(ge=32, le=3840)] = 480
    hood_height: Annotated[int, Meta(ge=18, le=2160)] = 270
    chase_width: Annotated[int, Meta(ge=64, le=3840)] = 1280
    chase_height: Annotated[int, Meta(ge=36, le=2160)] = 720
    # "auto" opens a window when a display is available, else runs headless.
    window: Literal["auto", "on", "off"] = "auto"
    deadman_ms: Annotated[float, Meta(ge=10.0, le=10_000.0)] = 250.0
    water_ponds: Annotated[int, Meta(ge=0, le=20)] = 3


class AutopilotConfig(Section):
    """The NPC driver that collectors record; noise makes the data varied."""

    cruise_speed_kmh: Annotated[float, Meta(ge=5.0, le=250.0)] = 80.0
    lateral_accel_limit: Annotated[float, Meta(ge=0.5, le=20.0)] = 4.0
    steering_noise: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.05
    throttle_noise: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.05
    # Mean seconds between deliberate drifts the autopilot then recovers from.
    perturbation_interval_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 6.0
    perturbation_strength: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.6


BinsKind = Literal["axis", "trigger", "trigger_pair"]
# How sample frames are stored and sent (engine/data/frames.py: every frame says which).
FrameCodec = Literal["jpeg", "raw"]
FRAME_CODECS: tuple[str, ...] = get_args(FrameCodec)


class OutputBinsConfig(Section):
    """How one output's values are cut into bins for balancing (see engine/data/bins.py)."""

    # "axis": [-1, 1] with exact 0 its own bin (steering, 21 bins at 10 divisions);
    # "trigger": [0, 1] with exact 0 and 1 their own bins (12 bins);
    # "trigger_pair": [-1, 1] combined triggers, exact -1, 0 and 1 their own bins (23 bins).
    kind: BinsKind = "axis"
    # Equal-width intervals between 0 and 1 (10 -> bins 0.1 wide, like the reference).
    divisions: Annotated[int, Meta(ge=1, le=100)] = 10

    def count(self) -> int:
        """How many bins (engine/data/bins.py): axis 2d+1, trigger d+2, trigger_pair 2d+3."""
        extra = {"axis": 1, "trigger": 2, "trigger_pair": 3}[self.kind]
        return (self.divisions if self.kind == "trigger" else 2 * self.divisions) + extra


def _default_bins() -> dict[str, OutputBinsConfig]:
    return {
        "steering": OutputBinsConfig("axis"),
        "throttle_brake": OutputBinsConfig("trigger_pair"),
        "acceleration": OutputBinsConfig("trigger"),
        "braking": OutputBinsConfig("trigger"),
    }


class DataConfig(Section):
    """Training samples: what they record, how they are balanced, stored and buffered."""

    # The frame size stored with every sample (cv2.INTER_AREA resize of the hood view).
    frame_width: Annotated[int, Meta(ge=16, le=3840)] = 480
    frame_height: Annotated[int, Meta(ge=9, le=2160)] = 270
    # "jpeg": small (a 480x270 frame 20-30 kB), ~65 us a 128x72 frame to decode; "raw": pixels
    # behind a tiny header, nothing to decode but 7x the bytes: for small frame sizes.
    frame_codec: FrameCodec = "jpeg"
    jpeg_quality: Annotated[int, Meta(ge=10, le=100)] = 90
    # Every sample keeps all of these outputs (the model's heads).
    outputs: tuple[str, ...] = ("steering", "throttle_brake")
    # One Balancing_v3 balancer, buffer and storage share per output listed here.
    balanced_outputs: tuple[str, ...] = ("steering", "throttle_brake")
    bins: dict[str, OutputBinsConfig] = msgspec.field(default_factory=_default_bins)
    # "v4" picks, among candidates for a bin, the one that best balances the other outputs.
    balancing: Literal["v3", "v4"] = "v3"
    v4_candidates: Annotated[int, Meta(ge=2, le=1000)] = 8
    # A set not completed within this much game time is dropped; its empty bins starve.
    set_window_s: Annotated[float, Meta(ge=1.0, le=86_400.0)] = 300.0
    # Samples per balanced output, in memory and on disk (the reference: 25,000).
    buffer_capacity: Annotated[int, Meta(ge=10, le=10_000_000)] = 25_000
    # Training runs only while every buffer is at least this full.
    ready_threshold: Annotated[float, Meta(ge=0.01, le=1.0)] = 0.9
    # Times each sample is trained on before it leaves the buffer. The reference: 1 (NPC
    # collectors make data faster than it is trained on). Recorded human play comes at 30 frames
    # a second and balanced sets keep a few per cent of them: reuse it, as epochs would.
    uses_per_sample: Annotated[int, Meta(ge=1, le=10_000)] = 1
    # The chance that a training frame is flipped left-right with its steering negated: a
    # second, mirrored track for every recorded one. Only where driving looks the same
    # mirrored (a race track without lanes, like TORCS's); 0 for a game that keeps to one side
    # of the road: the built-in game and GTA V keep right, and a mirrored frame teaches left.
    mirror: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.0
    prefetch_batches: Annotated[int, Meta(ge=1, le=64)] = 2

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ConfigError("'data.outputs' is empty; list at least one output")
        for name in self.balanced_outputs:
            if name not in self.outputs:
                raise ConfigError(
                    f"'data.balanced_outputs' names {name!r}, which is not in "
                    f"data.outputs; accepted: {', '.join(self.outputs)}"
                )
        if not self.balanced_outputs:
            raise ConfigError("'data.balanced_outputs' is empty; list at least one output")
        for name in self.outputs:
            if name not in self.bins:
                raise ConfigError(
                    f"'data.bins' has no entry for output {name!r}; add "
                    f'{name} = {{ kind = "axis" | "trigger" | "trigger_pair", divisions = 10 }}'
                )


class CollectorConfig(Section):
    """NPC data collectors: the built-in game driven by the autopilot, sampled and balanced."""

    collectors: Annotated[int, Meta(ge=1, le=64)] = 2
    # The reference grabbed a frame every 1/30 s of game time.
    sample_hz: Annotated[float, Meta(ge=1.0, le=240.0)] = 30.0
    # A new track (seed) after this much game time, so data covers many tracks.
    episode_s: Annotated[float, Meta(ge=5.0, le=86_400.0)] = 120.0
    # Respawn when slower than stuck_speed_kmh or off the road for stuck_s of game time.
    stuck_s: Annotated[float, Meta(ge=0.5, le=600.0)] = 3.0
    stuck_speed_kmh: Annotated[float, Meta(ge=0.0, le=100.0)] = 3.0
    # How often (game time) a collector reports its balancing counters.
    report_interval_s: Annotated[float, Meta(ge=0.5, le=3600.0)] = 10.0
    # Controls within this of -1, 0 or 1 are applied and recorded as exactly that value, like a
    # gamepad's dead zone: the autopilot's noisy controls are otherwise never exactly 0, and
    # Balancing's exact-value bins (steering 0.0; throttle_brake -1.0, 0.0, 1.0) would starve.
    dead_zone: Annotated[float, Meta(ge=0.0, le=0.2)] = 0.02


ImagenetBackbone = Literal["xception", "inception_resnet_v2"]


class ModelsConfig(Section):
    """Model lines' files outside git: pretrained weights and how many checkpoints to keep."""

    # Checkpoints kept per version under <data_dir>/models/<version>/; older ones are deleted.
    keep_checkpoints: Annotated[int, Meta(ge=1, le=1000)] = 3
    # Local Keras ImageNet "notop" weight files per backbone, for specs with weights = "imagenet";
    # nothing is ever downloaded. E.g.
    # xception = "weights/xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    imagenet_weights: dict[ImagenetBackbone, str] = msgspec.field(default_factory=dict)


class TrainerConfig(Section):
    """How the trainer process trains: devices, its CPU share, checkpoint and log cadence."""

    # "mirrored": tf.distribute.MirroredStrategy over every GPU (one CPU replica without GPUs).
    # "multi_worker": tf.distribute.MultiWorkerMirroredStrategy over the trainers in `workers`.
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    # multi_worker: every trainer of the cluster as "host:port" (the port its collectives listen
    # on), the chief first; the same list on every box. TF_CONFIG is not read.
    workers: tuple[str, ...] = ()
    # multi_worker: this trainer's place in `workers` (0 = the chief); `--worker-index` overrides.
    worker_index: Annotated[int, Meta(ge=0, le=1023)] = 0
    # multi_worker: seconds a collective waits for a peer before this trainer gives up (a dead
    # or cut-off worker); longer than the chief's slowest turn (a checkpoint save).
    collective_timeout_s: Annotated[float, Meta(ge=1.0, le=3600.0)] = 60.0
    # TensorFlow intra- and inter-op threads; 0 = TensorFlow's default (one per core).
    threads: Annotated[int, Meta(ge=0, le=1024)] = 0
    # Added to the process's nice value, so a driver on the same cores keeps its frame rate.
    nice: Annotated[int, Meta(ge=0, le=19)] = 0
    # A checkpoint (and a "new weights" event) every this many batches, and on shutdown.
    checkpoint_every: Annotated[int, Meta(ge=1, le=100_000_000)] = 500
    # Mean losses go to TensorBoard and a status report every this many batches.
    log_every: Annotated[int, Meta(ge=1, le=1_000_000)] = 20

    def __post_init__(self) -> None:
        if self.strategy != "multi_worker":
            return
        if len(self.workers) < 2:
            raise ConfigError(
                f"'trainer.workers' = {list(self.workers)} with 'trainer.strategy' = "
                '"multi_worker"; accepted: two or more "host:port" addresses, the chief first'
            )
        for address in self.workers:
            _check_worker_address(address)
        if len(set(self.workers)) != len(self.workers):
            raise ConfigError(
                f"'trainer.workers' = {list(self.workers)} names an address twice; accepted: "
                "one distinct host:port per trainer"
            )
        if self.worker_index >= len(self.workers):
            raise ConfigError(
                f"'trainer.worker_index' = {self.worker_index} is out of range; accepted: 0 to "
                f"{len(self.workers) - 1} (a place in 'trainer.workers')"
            )


def _check_worker_address(address: str) -> None:
    """Refuse a cluster address that is not host:port (a bracketed IPv6 host is allowed)."""
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (
        not colon
        or not host
        or any(c.isspace() or c in "/[]" for c in host)
        or not port.isdigit()
        or not 1 <= int(port) <= 65535
    ):
        raise ConfigError(
            f"'trainer.workers' holds {address!r}, which is not host:port; accepted: e.g. "
            '"10.0.0.2:12345" or "[fd00::2]:12345" (port 1-65535)'
        )


class ControllerConfig(Section):
    """How predictions become gamepad values (see engine/driver/controller.py)."""

    # "sim" drives the built-in game; "vgamepad" a virtual Xbox 360 pad for a real game;
    # "keyboard" taps a real game's keys through XTest (the keys: driver.game's profile).
    backend: Literal["sim", "vgamepad", "keyboard"] = "sim"
    # Fraction of stick / trigger travel the game ignores (GTA V: about 0.2 on the stick).
    steering_dead_zone: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0
    trigger_dead_zone: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0
    # Predictions smaller than this are read as "no input" rather than pushed past the dead zone.
    ignore_below: Annotated[float, Meta(ge=0.0, le=0.5)] = 0.01
    # 0 = raw predictions; closer to 1 = smoother, slower pad movement.
    smoothing: Annotated[float, Meta(ge=0.0, le=0.95)] = 0.0


# Xbox 360 buttons a real game's unstuck may press (vgamepad's XUSB_GAMEPAD_<name>).
GamepadButton = Literal[
    "A",
    "B",
    "X",
    "Y",
    "START",
    "BACK",
    "GUIDE",
    "LEFT_SHOULDER",
    "RIGHT_SHOULDER",
    "LEFT_THUMB",
    "RIGHT_THUMB",
    "DPAD_UP",
    "DPAD_DOWN",
    "DPAD_LEFT",
    "DPAD_RIGHT",
]


class CaptureConfig(Section):
    """Where the driver's frames come from (see engine/driver/capture.py)."""

    # "sim": the built-in game, run inside the driver; "mss": the screen (a real game's window).
    backend: Literal["sim", "mss"] = "sim"
    # mss: the monitor as mss numbers them (1 = the primary one, 0 = all monitors as one).
    monitor: Annotated[int, Meta(ge=0, le=32)] = 1
    # mss: [left, top, width, height] in pixels from the monitor's corner; [] = the whole monitor.
    region: tuple[int, ...] = ()
    # mss on Windows: the client area of the window with this title; "" = monitor / region.
    window_title: str = ""
    # Capturing faster than the model predicts only takes CPU from the trainer.
    max_fps: Annotated[float, Meta(ge=1.0, le=1000.0)] = 60.0
    # sim: third-person frames per second rendered for the overlay (about 18 ms each at 720p).
    chase_hz: Annotated[float, Meta(ge=0.0, le=60.0)] = 5.0

    def __post_init__(self) -> None:
        if self.region and (
            len(self.region) != 4 or min(self.region[:2]) < 0 or min(self.region[2:]) < 1
        ):
            raise ConfigError(
                f"'capture.region' = {list(self.region)} is not accepted; use [] (the whole "
                "monitor) or [left, top, width, height] with left, top >= 0 and width, height >= 1"
            )


class DriverConfig(Section):
    """The driver process: its inference engine and threads, reports, Convcam, weight reloads."""

    # What runs the one-pass model (engine/driver/engines.py): "auto" = the fastest installed
    # (OpenVINO, then ONNX Runtime, then TensorFlow on a CPU; a GPU engine first where there is
    # one). "openvino" and "onnxruntime" are extras: pip install 'charles-stream[openvino]'.
    engine: Literal["auto", "tensorflow", "openvino", "onnxruntime"] = "auto"
    # "bf16" / "int8": a faster OpenVINO model (engine/driver/precision.py), calibrated (int8)
    # and checked on frames recorded in samples.db; it drives only while its steering and
    # throttle stay within a stated tolerance of f32 on held-back frames, else f32 drives.
    precision: Literal["f32", "bf16", "int8"] = "f32"
    # One intra-op and one inter-op thread keep the demo line near 1 ms a prediction and leave
    # the other cores to the trainer; 0 = the engine's default (one per core). Every engine's
    # prediction threads (OpenVINO: inference_num_threads; ONNX Runtime: intra/inter op).
    intra_op_threads: Annotated[int, Meta(ge=0, le=1024)] = 1
    inter_op_threads: Annotated[int, Meta(ge=0, le=1024)] = 1
    # Frames computing at once (OpenVINO): 1 = each prediction is of the newest frame; 2 = two
    # streams sharing intra_op_threads, the car acting on the frame before the newest: more
    # predictions a second where one pass keeps every thread busy (Xception on 2 cores).
    predictions_in_flight: Annotated[int, Meta(ge=1, le=2)] = 1
    # Player Console reports (DriverStatus) per second.
    status_hz: Annotated[float, Meta(ge=0.1, le=60.0)] = 4.0
    # Overlay images (hood, Convcam, chase as JPEG) per second.
    frames_hz: Annotated[float, Meta(ge=0.0, le=60.0)] = 10.0
    jpeg_quality: Annotated[int, Meta(ge=10, le=100)] = 80
    # [] = the model line's Convcam layer; two names = two backbones, shown in two colours.
    convcam_layers: tuple[str, ...] = ()
    # Tiles per row; 0 = a near-square image.
    convcam_columns: Annotated[int, Meta(ge=0, le=4096)] = 0
    convcam_normalise: Literal["tile", "global"] = "tile"
    # Grad-CAM heat maps of the steering output per second; 0 = off. A second pass (it needs
    # gradients), so it runs at a low rate between predictions.
    gradcam_hz: Annotated[float, Meta(ge=0.0, le=30.0)] = 0.0
    # New weights from the trainer are applied at the next unstuck, or after this long.
    reload_interval_s: Annotated[float, Meta(ge=1.0, le=86_400.0)] = 300.0
    # A game profile (a name from `charles-stream games list`, or a .toml path): the driver
    # captures its window and drives it with its input backend, keys and unstuck sequence;
    # "" = capture and controller as configured above.
    game: str = ""

    def __post_init__(self) -> None:
        if len(self.convcam_layers) > 2:
            raise ConfigError(
                f"'driver.convcam_layers' = {list(self.convcam_layers)} names too many layers; "
                "accepted: [] (the line's default), one layer, or two (a two-backbone model)"
            )
        if self.precision != "f32" and self.engine not in ("auto", "openvino"):
            raise ConfigError(
                f"'driver.precision' = {self.precision!r} is OpenVINO's, but 'driver.engine' = "
                f'{self.engine!r}; accepted: precision "f32" on {self.engine}, or engine '
                '"openvino" (or "auto") with "bf16" or "int8"'
            )
        if self.predictions_in_flight != 1 and self.engine not in ("auto", "openvino"):
            raise ConfigError(
                f"'driver.predictions_in_flight' = {self.predictions_in_flight} needs OpenVINO's "
                f"streams, but 'driver.engine' = {self.engine!r}; accepted: 1 on "
                f'{self.engine}, or engine "openvino" (or "auto") with 1 or 2'
            )


class UnstuckConfig(Section):
    """When the driven car counts as stuck, and what is done about it (engine/driver/unstuck.py)."""

    # Stuck: the car moved less than min_distance_m within the last window_s seconds.
    window_s: Annotated[float, Meta(ge=0.5, le=600.0)] = 5.0
    min_distance_m: Annotated[float, Meta(ge=0.0, le=1000.0)] = 3.0
    # With telemetry (the built-in game) also: off the road for this long; 0 = never.
    offroad_s: Annotated[float, Meta(ge=0.0, le=600.0)] = 3.0
    # Without telemetry (a real game): the screen counts as still while the mean change between
    # frames stays below this many levels (0-255) of a small grey thumbnail.
    motion_threshold: Annotated[float, Meta(ge=0.0, le=255.0)] = 1.5
    # A real game's unstuck: press these buttons one after another; [] = only an alert.
    buttons: tuple[GamepadButton, ...] = ()
    button_hold_s: Annotated[float, Meta(ge=0.01, le=10.0)] = 0.15


class HubConfig(Section):
    """The app's aiohttp server: nodes on /ws/node, the API on /api/*, overlays on /overlay/*."""

    # 127.0.0.1 keeps it on this machine; a LAN address lets remote collectors and players join
    # (they need the token in <data_dir>/secrets/hub_token).
    host: str = "127.0.0.1"
    # 0 = any free port (tests); the chosen port is logged and handed to the subprocesses.
    port: Annotated[int, Meta(ge=0, le=65535)] = 8765
    # Larger node messages close the connection (a balanced set of 480x270 JPEGs is ~1 MB).
    max_message_mb: Annotated[float, Meta(ge=0.1, le=256.0)] = 8.0
    # Beyond loopback the hub serves TLS (engine/core/tls.py): with this PEM certificate and
    # key, or (both empty) a self-signed one made under <data_dir>/secrets on first start.
    tls_cert: str = ""
    tls_key: str = ""
    # With TLS, the app's own processes, OBS's overlay pages and the chat process reach the hub
    # in plain HTTP on 127.0.0.1 at this port (nothing leaves the machine); 0 = any free port.
    local_port: Annotated[int, Meta(ge=0, le=65535)] = 8766


# A recorder's player name: stored in every sample's source ("human:<player>") and shown.
PLAYER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MAX_RECORDERS = 8


class RecorderEntry(Section):
    """One recorder of human play the app starts: a person drives `game`, stored as `player`."""

    # A game profile: a name from `charles-stream games list`, or the path of a profile .toml.
    game: str
    # Samples are stored and sent as source "human:<player>".
    player: str


class StreamConfig(Section):
    """What `charles-stream` (run) streams: the model, and which processes it starts."""

    # A model line (its newest version is streamed; v1 is created if it has none) or a version.
    model: str = "model_0000_demo"
    # NPC collector processes started by the app; 0 = none (remote collectors, or train on
    # what is stored).
    collectors: Annotated[int, Meta(ge=0, le=64)] = 2
    trainer: bool = True
    driver: bool = True
    # Recorders of human play started by the app, e.g. [{ game = "builtin", player = "ada" }]:
    # each reads its profile's window and keys while the streamer drives, and sends its sets
    # to the trainer through the hub like a collector. [] = none.
    recorders: tuple[RecorderEntry, ...] = ()

    def __post_init__(self) -> None:
        # Checked here rather than per entry, so a refusal can say which entry is wrong.
        if len(self.recorders) > MAX_RECORDERS:
            raise ConfigError(
                f"'stream.recorders' lists {len(self.recorders)} recorders; accepted: 0 to "
                f"{MAX_RECORDERS} (one per person at a keyboard or pad)"
            )
        players: set[str] = set()
        for index, entry in enumerate(self.recorders):
            key = f"stream.recorders[{index}]"
            if not entry.game.strip():
                raise ConfigError(
                    f"'{key}.game' = {entry.game!r} is not accepted; name a game profile "
                    "(one of `charles-stream games list`, e.g. 'builtin') or a profile .toml path"
                )
            if not PLAYER_NAME.fullmatch(entry.player):
                raise ConfigError(
                    f"'{key}.player' = {entry.player!r} is not accepted; use 1 to 64 letters, "
                    "digits or _ . @ -"
                )
            if entry.player in players:
                raise ConfigError(
                    f"'{key}.player' = {entry.player!r} is already another recorder's player; "
                    "accepted: a different name for each recorder"
                )
            players.add(entry.player)


class SupervisorConfig(Section):
    """How the app restarts its processes and how long a clean shutdown may take."""

    # Restart delays double from backoff_s up to backoff_max_s; a run of backoff_reset_s
    # without a crash starts again from backoff_s.
    backoff_s: Annotated[float, Meta(ge=0.0, le=600.0)] = 0.5
    backoff_max_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 30.0
    backoff_reset_s: Annotated[float, Meta(ge=1.0, le=86_400.0)] = 60.0
    # More than crash_loop_restarts exits within crash_loop_window_s: stop it, raise an alert.
    crash_loop_restarts: Annotated[int, Meta(ge=1, le=1000)] = 5
    crash_loop_window_s: Annotated[float, Meta(ge=1.0, le=86_400.0)] = 60.0
    # SIGINT/SIGTERM: driver neutral first, trainer checkpoints, collectors stop; whatever
    # still runs after this is killed.
    shutdown_timeout_s: Annotated[float, Meta(ge=1.0, le=600.0)] = 10.0
    # Liveness (openpilot's watchdog): a process whose work loop reports no progress for this
    # long is killed and restarted like a crash; 0 turns it off for that kind. The trainer's
    # is generous: one batch of a big model on a slow CPU, or its first step's compile.
    liveness_trainer_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 120.0
    liveness_driver_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 20.0
    liveness_collector_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 30.0
    # A recorder polls the keys many times a second, paused or not, and while it waits for
    # the game's window: silence means a stuck capture or X connection.
    liveness_recorder_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 30.0
    # Before its first report a process may take this long (Python and TensorFlow imports,
    # the model build on a busy machine), or its own bound if that is longer.
    liveness_startup_s: Annotated[float, Meta(ge=1.0, le=86_400.0)] = 180.0
    # Every process's RSS, open files, threads and CPU, sampled this often (0: off), shown in
    # /api/status and the consoles.
    sample_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 5.0
    # A process whose RSS passes this many MB (2^20 bytes) is named once in an event line and
    # an alert; 0: off. The default stream's biggest processes sit near 1 GB (trainer, driver):
    # 3000 never fires in a healthy stream, and fires before a leak takes an 8 GB machine.
    memory_warn_mb: Annotated[int, Meta(ge=0, le=1_048_576)] = 3000
    # With the warning, also restart that process gracefully (SIGTERM: the trainer checkpoints,
    # the driver goes neutral); once per process in 10 minutes at most, so a bound below a
    # process's start-up size cannot restart it in a loop.
    memory_restart: bool = False
    # Every process (app and nodes) hands the heap memory it has freed back to the system this
    # often (glibc's malloc_trim, engine/core/memory.py; a few ms on a thread of its own); 0:
    # never. Without it the driver's RSS kept a few MB of each checkpoint reload (issue 19).
    release_memory_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 60.0
    # Each process's output file (<data_dir>/logs/<name>.log) past this many MB is moved to
    # <name>.log.1 (replacing the older one) and started afresh: at most twice this per
    # process on disk. Checked at each start and each sample; 0: no cap.
    log_max_mb: Annotated[int, Meta(ge=0, le=100_000)] = 50

    def __post_init__(self) -> None:
        # Below a second a busy machine's scheduling alone would look like a hang.
        for kind in ("trainer", "driver", "collector", "recorder"):
            value = getattr(self, f"liveness_{kind}_s")
            if 0.0 < value < 1.0:
                raise ConfigError(
                    f"'supervisor.liveness_{kind}_s' = {value!r} is not accepted; use 0 (off) "
                    "or 1 to 86400 seconds"
                )
        # Sampling costs a few /proc reads per process: more often than 5 times a second is waste.
        if 0.0 < self.sample_s < 0.2:
            raise ConfigError(
                f"'supervisor.sample_s' = {self.sample_s!r} is not accepted; use 0 (off) "
                "or 0.2 to 3600 seconds"
            )
        if self.memory_restart and (self.memory_warn_mb == 0 or self.sample_s == 0):
            raise ConfigError(
                "'supervisor.memory_restart' = true needs a bound: set 'supervisor.memory_warn_mb' "
                "(1 to 1048576 MB) and 'supervisor.sample_s' (0.2 to 3600 s) above 0"
            )


# Command, alias and named-moment names: what a viewer types after the prefix.
CHAT_NAME = re.compile(r"[a-z0-9_]{1,25}")
# Twitch login names (channel, bot account).
TWITCH_LOGIN = re.compile(r"[A-Za-z0-9_]{3,25}")
MAX_MOMENT_TEXT = 200


class CooldownConfig(Section):
    """How often one chat command runs: once per global_s for everyone, once per user_s per user."""

    global_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 0.0
    user_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 0.0


class ChatConfig(Section):
    """Chat commands, from Twitch or the console: prefix, aliases, cooldowns, votes, moments."""

    prefix: str = "!"
    # Other names for commands or moments: { m = "model" } makes !m answer like !model.
    aliases: dict[str, str] = msgspec.field(default_factory=dict)
    # Per command (or named moment); "default" for the rest. Entries given here replace the
    # commands' declared defaults (bot/declarations.py). The broadcaster and moderators have
    # no cooldowns.
    cooldowns: dict[str, CooldownConfig] = msgspec.field(default_factory=dict)
    # The first !vote opens a window of vote_window_s; the model with the most votes is then
    # switched to if it has at least vote_threshold votes (one vote per viewer).
    vote_window_s: Annotated[float, Meta(ge=5.0, le=3600.0)] = 60.0
    vote_threshold: Annotated[int, Meta(ge=1, le=1_000_000)] = 3
    # Named moments: !water tags a moment named "water" with this text (and an overlay alert).
    moments: dict[str, str] = msgspec.field(
        default_factory=lambda: {"water": "Charles went for a swim"}
    )
    # Twitch's chat limit: 20 messages per 30 s, 100 when the bot is a moderator or the
    # broadcaster. Replies over it wait (a few) or are dropped.
    replies_per_30s: Annotated[int, Meta(ge=1, le=100)] = 20
    # Without Twitch, lines typed in the app's terminal are chat from the broadcaster.
    console: bool = True

    def __post_init__(self) -> None:
        # Which names are commands only the bot knows (bot/chat_config.py checks those); the
        # format of every name and the moments' text are checked here.
        if not 1 <= len(self.prefix) <= 3 or not self.prefix.isprintable() or " " in self.prefix:
            raise ConfigError(
                f"'chat.prefix' = {self.prefix!r} is not accepted; use 1-3 printable characters "
                "without spaces (e.g. '!')"
            )
        for name, text in self.moments.items():
            _check_chat_name("chat.moments", name)
            if not text.strip() or len(text) > MAX_MOMENT_TEXT:
                raise ConfigError(
                    f"'chat.moments.{name}' = {text!r} is not accepted; use 1-{MAX_MOMENT_TEXT} "
                    "characters"
                )
        for alias in self.aliases:
            _check_chat_name("chat.aliases", alias)
        for name in self.cooldowns:
            _check_chat_name("chat.cooldowns", name)


class TwitchConfig(Section):
    """Twitch chat: channel, your app's client ID, the bot account; tokens are in data/secrets/."""

    # The channel's login name; "" = no Twitch (chat from the console and `charles-stream chat`).
    channel: str = ""
    # Your application's Client ID (dev.twitch.tv/console, client type "Public": the device
    # code flow of `charles-stream twitch auth` needs no client secret).
    client_id: str = ""
    # The account the bot chats as, signed in by `charles-stream twitch auth`; "" = the channel.
    bot: str = ""
    # Twitch's endpoints; point them at the Twitch CLI's mock servers or a local test server.
    helix_url: str = "https://api.twitch.tv/helix/"
    auth_url: str = "https://id.twitch.tv/"
    eventsub_url: str = "wss://eventsub.wss.twitch.tv/ws"

    def __post_init__(self) -> None:
        for key in ("channel", "bot"):
            value = getattr(self, key)
            if value and not TWITCH_LOGIN.fullmatch(value):
                raise ConfigError(
                    f"'twitch.{key}' = {value!r} is not a Twitch login name; accepted: 3-25 "
                    "letters, digits or '_' (or \"\")"
                )
        if self.client_id and not self.client_id.isalnum():
            raise ConfigError(
                f"'twitch.client_id' = {self.client_id!r} is not accepted; use the letters and "
                "digits of your application's Client ID"
            )
        if self.channel and not self.client_id:
            raise ConfigError(
                f"'twitch.channel' = {self.channel!r} needs 'twitch.client_id': register an "
                "application (client type Public) at dev.twitch.tv/console and copy its Client ID"
            )
        for key, schemes in (
            ("helix_url", ("https://", "http://")),
            ("auth_url", ("https://", "http://")),
            ("eventsub_url", ("wss://", "ws://")),
        ):
            value = getattr(self, key)
            if not value.startswith(schemes) or len(value) <= len(value.split("//")[0]) + 2:
                raise ConfigError(
                    f"'twitch.{key}' = {value!r} is not accepted; use a URL starting with "
                    f"{' or '.join(schemes)}"
                )

    @property
    def configured(self) -> bool:
        """Whether the bot should talk to Twitch (a channel is set)."""
        return bool(self.channel)

    @property
    def bot_login(self) -> str:
        """The account the bot chats as: `bot`, or the channel's own account."""
        return (self.bot or self.channel).lower()


def _check_chat_name(section: str, name: str) -> None:
    if not CHAT_NAME.fullmatch(name):
        raise ConfigError(
            f"'{section}.{key_text(name)}' is not accepted as a name; use 1-25 lowercase letters, "
            "digits or '_'"
        )


class OverlayConfig(Section):
    """The overlay pages the hub serves at /overlay/ and pushes to over /ws/overlay."""

    # Camera frames pushed to each page per second at most (the driver sends [driver] frames_hz).
    max_fps: Annotated[float, Meta(ge=1.0, le=60.0)] = 30.0
    # State pushes (consoles, model, alerts, loss chart) per second.
    state_hz: Annotated[float, Meta(ge=1.0, le=30.0)] = 10.0
    # Loss chart points kept for the streamed version (since the app started or switched).
    loss_points: Annotated[int, Meta(ge=10, le=100_000)] = 2000
    # More page connections at once are refused (503): each costs a copy of every frame.
    max_clients: Annotated[int, Meta(ge=1, le=1000)] = 32
    # Seconds an alert card stays on screen (a page's ?alert_s= overrides it).
    alert_s: Annotated[float, Meta(ge=1.0, le=120.0)] = 8.0
    # The same alert (kind and text) again within this many seconds joins its card as a count
    # ("x3") instead of adding a card; 0 = every alert its own card.
    alert_coalesce_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 30.0
    # Alert cards cover at most this share of the main camera's area; lower-priority and older
    # cards give way first (a chat tag, switch or vote outranks an unstuck).
    alert_share: Annotated[float, Meta(ge=0.05, le=0.5)] = 0.15


class ObsConfig(Section):
    """OBS through obs-websocket: the scene `obs setup` builds, labels and replays while live.

    The password is never here: `charles-stream obs password` stores it in
    <data_dir>/secrets/obs_password (0600), or set CHARLES_OBS_PASSWORD.
    """

    # Connect while streaming; OBS absent or restarting never stops the app.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 4455
    scene: str = "Charles"
    # How OBS reaches the overlay pages; "" = http://<[hub] host>:<[hub] port>.
    overlay_url: str = ""
    # A tagged moment saves OBS's replay buffer (when it is running) and records the file.
    save_replays: bool = True
    timeout_s: Annotated[float, Meta(ge=0.1, le=60.0)] = 3.0
    # Reconnect delays double from reconnect_min_s up to reconnect_max_s. The cap is how late
    # a restarted OBS is noticed at worst; an attempt on an OBS that is away is a refused
    # connect, next to free, so a few seconds (not 30) puts the labels and replays back at once.
    reconnect_min_s: Annotated[float, Meta(ge=0.1, le=600.0)] = 1.0
    reconnect_max_s: Annotated[float, Meta(ge=0.1, le=3600.0)] = 2.0

    def __post_init__(self) -> None:
        if not self.scene.strip():
            raise ConfigError("'obs.scene' = '' is not accepted; name the scene, e.g. 'Charles'")
        if self.overlay_url and not self.overlay_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"'obs.overlay_url' = {self.overlay_url!r} is not accepted; use \"\" (the hub's "
                "address) or an http:// or https:// URL, e.g. 'http://192.168.1.10:8765'"
            )


class Config(Section):
    """The whole configuration; `source` is the file it came from."""

    app: AppConfig = msgspec.field(default_factory=AppConfig)
    sim: SimConfig = msgspec.field(default_factory=SimConfig)
    autopilot: AutopilotConfig = msgspec.field(default_factory=AutopilotConfig)
    data: DataConfig = msgspec.field(default_factory=DataConfig)
    collector: CollectorConfig = msgspec.field(default_factory=CollectorConfig)
    models: ModelsConfig = msgspec.field(default_factory=ModelsConfig)
    trainer: TrainerConfig = msgspec.field(default_factory=TrainerConfig)
    controller: ControllerConfig = msgspec.field(default_factory=ControllerConfig)
    capture: CaptureConfig = msgspec.field(default_factory=CaptureConfig)
    driver: DriverConfig = msgspec.field(default_factory=DriverConfig)
    unstuck: UnstuckConfig = msgspec.field(default_factory=UnstuckConfig)
    hub: HubConfig = msgspec.field(default_factory=HubConfig)
    stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    chat: ChatConfig = msgspec.field(default_factory=ChatConfig)
    twitch: TwitchConfig = msgspec.field(default_factory=TwitchConfig)
    overlay: OverlayConfig = msgspec.field(default_factory=OverlayConfig)
    obs: ObsConfig = msgspec.field(default_factory=ObsConfig)
    # Set by the loader, never by the file.
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        data = self.data
        if data.frame_codec != "raw":
            return
        # A raw frame is its pixels: the largest balanced set of them must fit one hub message
        # (hub.max_message_mb, and the wire's own limit whatever the hub allows).
        most = max(data.bins[name].count() for name in data.balanced_outputs)
        set_mb = most * data.frame_width * data.frame_height * 3 / 2**20
        limit_mb = min(self.hub.max_message_mb, MAX_MESSAGE_BYTES / 2**20)
        if set_mb > limit_mb:
            raise ConfigError(
                f"'data.frame_codec' = 'raw' at {data.frame_width}x{data.frame_height} makes a "
                f"balanced set of {most} frames {set_mb:.1f} MB, over the {limit_mb:g} MB a "
                f"hub message may carry; accepted: 'jpeg' at this size, or a smaller frame size"
            )


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate a TOML config file; raise `ConfigError` if it is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    table = parse_toml(text, where=str(path), error=ConfigError)
    if not table and str(path.resolve()) not in _SAID_EMPTY:
        # An empty file is valid, but someone who wrote one likely expected it to change things.
        _SAID_EMPTY.add(str(path.resolve()))
        log.warning("%s sets no keys: running on every default", path)
    config = convert(table, Config, where=str(path), error=ConfigError, internal=("source",))
    return msgspec.structs.replace(config, source=str(path))


def default_config() -> Config:
    """The configuration with every value at its default."""
    return Config()
