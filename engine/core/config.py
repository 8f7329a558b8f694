"""The one configuration schema of charles-stream, and its loader.

Example::

    from engine.core.config import load_config
    config = load_config("config.toml")
    config.sim.hood_width   # 480

Every section is a frozen dataclass below; the loader walks the TOML file
against them, so a key exists in exactly one place. A bad file raises
`ConfigError` naming the file, the dotted key, the bad value and what would be
accepted; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")


def _range(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Field metadata: the inclusive range a number must lie in."""
    return {"range": (low, high)}


@dataclass(frozen=True)
class AppConfig:
    """Where runtime data lives and how much the app says."""

    data_dir: str = "data"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True)
class SimConfig:
    """The built-in driving game (the embedded default)."""

    seed: int = field(default=1, metadata=_range(0, 2**31 - 1))
    tick_hz: float = field(default=30.0, metadata=_range(1.0, 240.0))
    hood_width: int = field(default=480, metadata=_range(32, 3840))
    hood_height: int = field(default=270, metadata=_range(18, 2160))
    chase_width: int = field(default=1280, metadata=_range(64, 3840))
    chase_height: int = field(default=720, metadata=_range(36, 2160))
    # "auto" opens a window when a display is available, else runs headless.
    window: Literal["auto", "on", "off"] = "auto"
    deadman_ms: float = field(default=250.0, metadata=_range(10.0, 10_000.0))
    water_ponds: int = field(default=3, metadata=_range(0, 20))


@dataclass(frozen=True)
class AutopilotConfig:
    """The NPC driver that collectors record; noise makes the data varied."""

    cruise_speed_kmh: float = field(default=80.0, metadata=_range(5.0, 250.0))
    lateral_accel_limit: float = field(default=4.0, metadata=_range(0.5, 20.0))
    steering_noise: float = field(default=0.05, metadata=_range(0.0, 1.0))
    throttle_noise: float = field(default=0.05, metadata=_range(0.0, 1.0))
    # Mean seconds between deliberate drifts the autopilot then recovers from.
    perturbation_interval_s: float = field(default=6.0, metadata=_range(0.0, 3600.0))
    perturbation_strength: float = field(default=0.6, metadata=_range(0.0, 1.0))


BinsKind = Literal["axis", "trigger", "trigger_pair"]


@dataclass(frozen=True)
class OutputBinsConfig:
    """How one output's values are cut into bins for balancing (see engine/data/bins.py)."""

    # "axis": [-1, 1] with exact 0 its own bin (steering, 21 bins at 10 divisions);
    # "trigger": [0, 1] with exact 0 and 1 their own bins (12 bins);
    # "trigger_pair": [-1, 1] combined triggers, exact -1, 0 and 1 their own bins (23 bins).
    kind: BinsKind = "axis"
    # Equal-width intervals between 0 and 1 (10 -> bins 0.1 wide, like the reference).
    divisions: int = field(default=10, metadata=_range(1, 100))


def _default_bins() -> dict[str, OutputBinsConfig]:
    return {
        "steering": OutputBinsConfig("axis"),
        "throttle_brake": OutputBinsConfig("trigger_pair"),
        "acceleration": OutputBinsConfig("trigger"),
        "braking": OutputBinsConfig("trigger"),
    }


@dataclass(frozen=True)
class DataConfig:
    """Training samples: what they record, how they are balanced, stored and buffered."""

    # The frame size stored with every sample (cv2.INTER_AREA resize of the hood view).
    frame_width: int = field(default=480, metadata=_range(16, 3840))
    frame_height: int = field(default=270, metadata=_range(9, 2160))
    jpeg_quality: int = field(default=90, metadata=_range(10, 100))
    # Every sample keeps all of these outputs (the model's heads).
    outputs: tuple[str, ...] = ("steering", "throttle_brake")
    # One Balancing_v3 balancer, buffer and storage share per output listed here.
    balanced_outputs: tuple[str, ...] = ("steering", "throttle_brake")
    bins: dict[str, OutputBinsConfig] = field(default_factory=_default_bins)
    # "v4" picks, among candidates for a bin, the one that best balances the other outputs.
    balancing: Literal["v3", "v4"] = "v3"
    v4_candidates: int = field(default=8, metadata=_range(2, 1000))
    # A set not completed within this much game time is dropped; its empty bins starve.
    set_window_s: float = field(default=300.0, metadata=_range(1.0, 86_400.0))
    # Samples per balanced output, in memory and on disk (the reference: 25,000).
    buffer_capacity: int = field(default=25_000, metadata=_range(10, 10_000_000))
    # Training runs only while every buffer is at least this full.
    ready_threshold: float = field(default=0.9, metadata=_range(0.01, 1.0))
    prefetch_batches: int = field(default=2, metadata=_range(1, 64))

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


@dataclass(frozen=True)
class CollectorConfig:
    """NPC data collectors: the built-in game driven by the autopilot, sampled and balanced."""

    collectors: int = field(default=2, metadata=_range(1, 64))
    # The reference grabbed a frame every 1/30 s of game time.
    sample_hz: float = field(default=30.0, metadata=_range(1.0, 240.0))
    # A new track (seed) after this much game time, so data covers many tracks.
    episode_s: float = field(default=120.0, metadata=_range(5.0, 86_400.0))
    # Respawn when slower than stuck_speed_kmh or off the road for stuck_s of game time.
    stuck_s: float = field(default=3.0, metadata=_range(0.5, 600.0))
    stuck_speed_kmh: float = field(default=3.0, metadata=_range(0.0, 100.0))
    # How often (game time) a collector reports its balancing counters.
    report_interval_s: float = field(default=10.0, metadata=_range(0.5, 3600.0))
    # Controls within this of -1, 0 or 1 are applied and recorded as exactly that value, like a
    # gamepad's dead zone: the autopilot's noisy controls are otherwise never exactly 0, and
    # Balancing's exact-value bins (steering 0.0; throttle_brake -1.0, 0.0, 1.0) would starve.
    dead_zone: float = field(default=0.02, metadata=_range(0.0, 0.2))


ImagenetBackbone = Literal["xception", "inception_resnet_v2"]


@dataclass(frozen=True)
class ModelsConfig:
    """Model lines' files outside git: pretrained weights and how many checkpoints to keep."""

    # Checkpoints kept per version under <data_dir>/models/<version>/; older ones are deleted.
    keep_checkpoints: int = field(default=3, metadata=_range(1, 1000))
    # Local Keras ImageNet "notop" weight files per backbone, for specs with weights = "imagenet";
    # nothing is ever downloaded. E.g.
    # xception = "weights/xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    imagenet_weights: dict[ImagenetBackbone, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerConfig:
    """How the trainer process trains: devices, its CPU share, checkpoint and log cadence."""

    # "mirrored": tf.distribute.MirroredStrategy over every GPU (one CPU replica without GPUs).
    strategy: Literal["default", "mirrored"] = "default"
    # TensorFlow intra- and inter-op threads; 0 = TensorFlow's default (one per core).
    threads: int = field(default=0, metadata=_range(0, 1024))
    # Added to the process's nice value, so a driver on the same cores keeps its frame rate.
    nice: int = field(default=0, metadata=_range(0, 19))
    # A checkpoint (and a "new weights" event) every this many batches, and on shutdown.
    checkpoint_every: int = field(default=500, metadata=_range(1, 100_000_000))
    # Mean losses go to TensorBoard and a status report every this many batches.
    log_every: int = field(default=20, metadata=_range(1, 1_000_000))


@dataclass(frozen=True)
class ControllerConfig:
    """How predictions become gamepad values (see engine/driver/controller.py)."""

    # "sim" drives the built-in game; "vgamepad" a virtual Xbox 360 pad for a real game.
    backend: Literal["sim", "vgamepad"] = "sim"
    # Fraction of stick / trigger travel the game ignores (GTA V: about 0.2 on the stick).
    steering_dead_zone: float = field(default=0.0, metadata=_range(0.0, 0.95))
    trigger_dead_zone: float = field(default=0.0, metadata=_range(0.0, 0.95))
    # Predictions smaller than this are read as "no input" rather than pushed past the dead zone.
    ignore_below: float = field(default=0.01, metadata=_range(0.0, 0.5))
    # 0 = raw predictions; closer to 1 = smoother, slower pad movement.
    smoothing: float = field(default=0.0, metadata=_range(0.0, 0.95))


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


@dataclass(frozen=True)
class CaptureConfig:
    """Where the driver's frames come from (see engine/driver/capture.py)."""

    # "sim": the built-in game, run inside the driver; "mss": the screen (a real game's window).
    backend: Literal["sim", "mss"] = "sim"
    # mss: the monitor as mss numbers them (1 = the primary one, 0 = all monitors as one).
    monitor: int = field(default=1, metadata=_range(0, 32))
    # mss: [left, top, width, height] in pixels from the monitor's corner; [] = the whole monitor.
    region: tuple[int, ...] = ()
    # mss on Windows: the client area of the window with this title; "" = monitor / region.
    window_title: str = ""
    # Capturing faster than the model predicts only takes CPU from the trainer.
    max_fps: float = field(default=60.0, metadata=_range(1.0, 1000.0))
    # sim: third-person frames per second rendered for the overlay (about 18 ms each at 720p).
    chase_hz: float = field(default=5.0, metadata=_range(0.0, 60.0))

    def __post_init__(self) -> None:
        if self.region and (
            len(self.region) != 4 or min(self.region[:2]) < 0 or min(self.region[2:]) < 1
        ):
            raise ConfigError(
                f"'capture.region' = {list(self.region)} is not accepted; use [] (the whole "
                "monitor) or [left, top, width, height] with left, top >= 0 and width, height >= 1"
            )


@dataclass(frozen=True)
class DriverConfig:
    """The driver process: its TensorFlow threads, reporting rates, Convcam and weight reloads."""

    # One intra-op and one inter-op thread keep the demo line near 1 ms a prediction and leave
    # the other cores to the trainer; 0 = TensorFlow's default (one per core).
    intra_op_threads: int = field(default=1, metadata=_range(0, 1024))
    inter_op_threads: int = field(default=1, metadata=_range(0, 1024))
    # Player Console reports (DriverStatus) per second.
    status_hz: float = field(default=4.0, metadata=_range(0.1, 60.0))
    # Overlay images (hood, Convcam, chase as JPEG) per second.
    frames_hz: float = field(default=10.0, metadata=_range(0.0, 60.0))
    jpeg_quality: int = field(default=80, metadata=_range(10, 100))
    # [] = the model line's Convcam layer; two names = two backbones, shown in two colours.
    convcam_layers: tuple[str, ...] = ()
    # Tiles per row; 0 = a near-square image.
    convcam_columns: int = field(default=0, metadata=_range(0, 4096))
    convcam_normalise: Literal["tile", "global"] = "tile"
    # Grad-CAM heat maps of the steering output per second; 0 = off. A second pass (it needs
    # gradients), so it runs at a low rate between predictions.
    gradcam_hz: float = field(default=0.0, metadata=_range(0.0, 30.0))
    # New weights from the trainer are applied at the next unstuck, or after this long.
    reload_interval_s: float = field(default=300.0, metadata=_range(1.0, 86_400.0))

    def __post_init__(self) -> None:
        if len(self.convcam_layers) > 2:
            raise ConfigError(
                f"'driver.convcam_layers' = {list(self.convcam_layers)} names too many layers; "
                "accepted: [] (the line's default), one layer, or two (a two-backbone model)"
            )


@dataclass(frozen=True)
class UnstuckConfig:
    """When the driven car counts as stuck, and what is done about it (engine/driver/unstuck.py)."""

    # Stuck: the car moved less than min_distance_m within the last window_s seconds.
    window_s: float = field(default=5.0, metadata=_range(0.5, 600.0))
    min_distance_m: float = field(default=3.0, metadata=_range(0.0, 1000.0))
    # With telemetry (the built-in game) also: off the road for this long; 0 = never.
    offroad_s: float = field(default=3.0, metadata=_range(0.0, 600.0))
    # Without telemetry (a real game): the screen counts as still while the mean change between
    # frames stays below this many levels (0-255) of a small grey thumbnail.
    motion_threshold: float = field(default=1.5, metadata=_range(0.0, 255.0))
    # A real game's unstuck: press these buttons one after another; [] = only an alert.
    buttons: tuple[GamepadButton, ...] = ()
    button_hold_s: float = field(default=0.15, metadata=_range(0.01, 10.0))


@dataclass(frozen=True)
class HubConfig:
    """The app's aiohttp server: nodes on /ws/node, the API on /api/*, overlays on /overlay/*."""

    # 127.0.0.1 keeps it on this machine; a LAN address lets remote collectors and players join
    # (they need the token in <data_dir>/secrets/hub_token).
    host: str = "127.0.0.1"
    # 0 = any free port (tests); the chosen port is logged and handed to the subprocesses.
    port: int = field(default=8765, metadata=_range(0, 65535))
    # Larger node messages close the connection (a balanced set of 480x270 JPEGs is ~1 MB).
    max_message_mb: float = field(default=8.0, metadata=_range(0.1, 256.0))


@dataclass(frozen=True)
class StreamConfig:
    """What `charles-stream` (run) streams: the model, and which processes it starts."""

    # A model line (its newest version is streamed; v1 is created if it has none) or a version.
    model: str = "model_0000_demo"
    # NPC collector processes started by the app; 0 = none (remote collectors, or train on
    # what is stored).
    collectors: int = field(default=2, metadata=_range(0, 64))
    trainer: bool = True
    driver: bool = True


@dataclass(frozen=True)
class SupervisorConfig:
    """How the app restarts its processes and how long a clean shutdown may take."""

    # Restart delays double from backoff_s up to backoff_max_s; a run of backoff_reset_s
    # without a crash starts again from backoff_s.
    backoff_s: float = field(default=0.5, metadata=_range(0.0, 600.0))
    backoff_max_s: float = field(default=30.0, metadata=_range(0.0, 3600.0))
    backoff_reset_s: float = field(default=60.0, metadata=_range(1.0, 86_400.0))
    # More than crash_loop_restarts exits within crash_loop_window_s: stop it, raise an alert.
    crash_loop_restarts: int = field(default=5, metadata=_range(1, 1000))
    crash_loop_window_s: float = field(default=60.0, metadata=_range(1.0, 86_400.0))
    # SIGINT/SIGTERM: driver neutral first, trainer checkpoints, collectors stop; whatever
    # still runs after this is killed.
    shutdown_timeout_s: float = field(default=10.0, metadata=_range(1.0, 600.0))


# The chat commands every stream has; [chat] aliases, cooldowns and moments refer to them.
CHAT_COMMANDS = ("help", "model", "models", "stats", "switch", "tag", "timeline", "vote")
# Command, alias and named-moment names: what a viewer types after the prefix.
CHAT_NAME = re.compile(r"[a-z0-9_]{1,25}")
# Twitch login names (channel, bot account).
TWITCH_LOGIN = re.compile(r"[A-Za-z0-9_]{3,25}")
MAX_MOMENT_TEXT = 200


@dataclass(frozen=True)
class CooldownConfig:
    """How often one chat command runs: once per global_s for everyone, once per user_s per user."""

    global_s: float = field(default=0.0, metadata=_range(0.0, 3600.0))
    user_s: float = field(default=0.0, metadata=_range(0.0, 86_400.0))


def _default_cooldowns() -> dict[str, CooldownConfig]:
    return {
        "default": CooldownConfig(global_s=5.0, user_s=30.0),
        "help": CooldownConfig(global_s=30.0, user_s=60.0),
        "model": CooldownConfig(global_s=10.0, user_s=30.0),
        "models": CooldownConfig(global_s=15.0, user_s=60.0),
        "stats": CooldownConfig(global_s=10.0, user_s=30.0),
        "switch": CooldownConfig(),
        "tag": CooldownConfig(global_s=15.0, user_s=60.0),
        "timeline": CooldownConfig(global_s=30.0, user_s=60.0),
        "vote": CooldownConfig(global_s=0.0, user_s=2.0),
    }


@dataclass(frozen=True)
class ChatConfig:
    """Chat commands, from Twitch or the console: prefix, aliases, cooldowns, votes, moments."""

    prefix: str = "!"
    # Other names for commands or moments: { m = "model" } makes !m answer like !model.
    aliases: dict[str, str] = field(default_factory=dict)
    # Per command (or named moment); "default" for the rest. Entries given here replace the
    # built-in ones of the same name. The broadcaster and moderators have no cooldowns.
    cooldowns: dict[str, CooldownConfig] = field(default_factory=_default_cooldowns)
    # The first !vote opens a window of vote_window_s; the model with the most votes is then
    # switched to if it has at least vote_threshold votes (one vote per viewer).
    vote_window_s: float = field(default=60.0, metadata=_range(5.0, 3600.0))
    vote_threshold: int = field(default=3, metadata=_range(1, 1_000_000))
    # Named moments: !water tags a moment named "water" with this text (and an overlay alert).
    moments: dict[str, str] = field(default_factory=lambda: {"water": "Charles went for a swim"})
    # Twitch's chat limit: 20 messages per 30 s, 100 when the bot is a moderator or the
    # broadcaster. Replies over it wait (a few) or are dropped.
    replies_per_30s: int = field(default=20, metadata=_range(1, 100))
    # Without Twitch, lines typed in the app's terminal are chat from the broadcaster.
    console: bool = True

    def __post_init__(self) -> None:
        if not 1 <= len(self.prefix) <= 3 or not self.prefix.isprintable() or " " in self.prefix:
            raise ConfigError(
                f"'chat.prefix' = {self.prefix!r} is not accepted; use 1-3 printable characters "
                "without spaces (e.g. '!')"
            )
        for name, text in self.moments.items():
            _check_chat_name("chat.moments", name)
            if name in CHAT_COMMANDS:
                raise ConfigError(
                    f"'chat.moments.{name}' has the name of a built-in command; built-in: "
                    f"{', '.join(CHAT_COMMANDS)}"
                )
            if not text.strip() or len(text) > MAX_MOMENT_TEXT:
                raise ConfigError(
                    f"'chat.moments.{name}' = {text!r} is not accepted; use 1-{MAX_MOMENT_TEXT} "
                    "characters"
                )
        targets = (*CHAT_COMMANDS, *self.moments)
        for alias, target in self.aliases.items():
            _check_chat_name("chat.aliases", alias)
            if alias in targets:
                raise ConfigError(
                    f"'chat.aliases.{alias}' would hide the command or moment of that name; "
                    "pick another alias"
                )
            if target not in targets:
                raise ConfigError(
                    f"'chat.aliases.{alias}' = {target!r} names no command or moment; accepted: "
                    f"{', '.join(targets)}"
                )
        for name in self.cooldowns:
            if name != "default" and name not in targets:
                raise ConfigError(
                    f"'chat.cooldowns.{name}' names no command or moment; accepted: default, "
                    f"{', '.join(targets)}"
                )
        # Given entries replace the built-in ones; the rest keep their defaults.
        object.__setattr__(self, "cooldowns", {**_default_cooldowns(), **self.cooldowns})

    def cooldown(self, command: str) -> CooldownConfig:
        """The cooldown of a command or moment (its own entry, else "default")."""
        return self.cooldowns.get(command) or self.cooldowns["default"]


@dataclass(frozen=True)
class TwitchConfig:
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
            f"'{section}.{name}' is not accepted as a name; use 1-25 lowercase letters, digits "
            "or '_'"
        )


@dataclass(frozen=True)
class OverlayConfig:
    """The overlay pages the hub serves at /overlay/ and pushes to over /ws/overlay."""

    # Camera frames pushed to each page per second at most (the driver sends [driver] frames_hz).
    max_fps: float = field(default=30.0, metadata=_range(1.0, 60.0))
    # State pushes (consoles, model, alerts, loss chart) per second.
    state_hz: float = field(default=10.0, metadata=_range(1.0, 30.0))
    # Loss chart points kept for the streamed version (since the app started or switched).
    loss_points: int = field(default=2000, metadata=_range(10, 100_000))
    # More page connections at once are refused (503): each costs a copy of every frame.
    max_clients: int = field(default=32, metadata=_range(1, 1000))


@dataclass(frozen=True)
class ObsConfig:
    """OBS through obs-websocket: the scene `obs setup` builds, labels and replays while live.

    The password is never here: `charles-stream obs password` stores it in
    <data_dir>/secrets/obs_password (0600), or set CHARLES_OBS_PASSWORD.
    """

    # Connect while streaming; OBS absent or restarting never stops the app.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=4455, metadata=_range(1, 65535))
    scene: str = "Charles"
    # How OBS reaches the overlay pages; "" = http://<[hub] host>:<[hub] port>.
    overlay_url: str = ""
    # A tagged moment saves OBS's replay buffer (when it is running) and records the file.
    save_replays: bool = True
    timeout_s: float = field(default=3.0, metadata=_range(0.1, 60.0))
    # Reconnect delays double from reconnect_min_s up to reconnect_max_s.
    reconnect_min_s: float = field(default=1.0, metadata=_range(0.1, 600.0))
    reconnect_max_s: float = field(default=30.0, metadata=_range(0.1, 3600.0))

    def __post_init__(self) -> None:
        if not self.scene.strip():
            raise ConfigError("'obs.scene' = '' is not accepted; name the scene, e.g. 'Charles'")
        if self.overlay_url and not self.overlay_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"'obs.overlay_url' = {self.overlay_url!r} is not accepted; use \"\" (the hub's "
                "address) or an http:// or https:// URL, e.g. 'http://192.168.1.10:8765'"
            )


@dataclass(frozen=True)
class Config:
    """The whole configuration; `source` is the file it came from."""

    app: AppConfig = field(default_factory=AppConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    autopilot: AutopilotConfig = field(default_factory=AutopilotConfig)
    data: DataConfig = field(default_factory=DataConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    driver: DriverConfig = field(default_factory=DriverConfig)
    unstuck: UnstuckConfig = field(default_factory=UnstuckConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    twitch: TwitchConfig = field(default_factory=TwitchConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    obs: ObsConfig = field(default_factory=ObsConfig)
    source: str = field(default="<defaults>", metadata={"internal": True})


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate a TOML config file; raise `ConfigError` if it is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    config = build_section(Config, table, file=str(path), prefix="")
    return dataclasses.replace(config, source=str(path))


def default_config() -> Config:
    """The configuration with every value at its default."""
    return Config()


def build_section(cls: type, table: dict[str, Any], *, file: str, prefix: str) -> Any:
    """Build dataclass `cls` from a TOML table, validating every key and value."""
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in table:
        if key not in fields:
            accepted = ", ".join(sorted(fields))
            raise ConfigError(
                f"{file}: unknown key '{prefix}{key}'; accepted keys here: {accepted}"
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in fields.items():
        if name in table:
            values[name] = _check_value(
                hints[name], table[name], spec, file=file, key=f"{prefix}{name}"
            )
    try:
        return cls(**values)
    except ConfigError as error:
        # Checks that span several keys live in a section's __post_init__.
        raise ConfigError(f"{file}: {error}") from None


def _check_value(hint: Any, value: Any, spec: dataclasses.Field, *, file: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{key}' must be a table [{key}], got {value!r}")
        return build_section(hint, value, file=file, prefix=f"{key}.")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            accepted = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{file}: '{key}' = {value!r} is not accepted; use one of {accepted}")
        return value
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check_value(option, value, spec, file=file, key=key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{file}: '{key}' = {value!r} fits none of: " + " | ".join(errors))
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{key}' must be a table, got {value!r}")
        return {
            _check_value(key_type, k, spec, file=file, key=f"{key} key"): _check_value(
                value_type, v, spec, file=file, key=f"{key}.{k}"
            )
            for k, v in value.items()
        }
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{file}: '{key}' must be a list, got {value!r}")
        items = [
            _check_value(item_type, item, spec, file=file, key=f"{key}[{i}]")
            for i, item in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    return _check_scalar(hint, value, spec, file=file, key=key)


def _check_scalar(hint: type, value: Any, spec: dataclasses.Field, *, file: str, key: str) -> Any:
    # TOML integers are fine where a float is wanted; bools are never numbers.
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"{file}: '{key}' = {value!r} has the wrong type; expected {hint.__name__}"
        )
    low, high = spec.metadata.get("range", (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(
            f"{file}: '{key}' = {value!r} is out of range; accepted: {_describe_range(low, high)}"
        )
    return value


def _describe_range(low: float | None, high: float | None) -> str:
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"
