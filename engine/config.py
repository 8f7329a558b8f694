"""The one configuration schema of charles-stream, and its loader.

Example::

    from engine.config import load_config
    config = load_config("config.toml")
    config.sim.hood_width   # 480

Every section is a frozen dataclass below; the loader walks the TOML file
against them, so a key exists in exactly one place. A bad file raises
`ConfigError` naming the file, the dotted key, the bad value and what would be
accepted; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_CONFIG_PATH = Path("config.toml")


class ConfigError(ValueError):
    """A configuration file (or value) that cannot be used, with the reason."""


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
    set_window_s: float = field(default=60.0, metadata=_range(1.0, 86_400.0))
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
class Config:
    """The whole configuration; `source` is the file it came from."""

    app: AppConfig = field(default_factory=AppConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    autopilot: AutopilotConfig = field(default_factory=AutopilotConfig)
    data: DataConfig = field(default_factory=DataConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
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
        raise ConfigError(f"{file}: '{key}' = {value!r} is out of range; accepted: {low} to {high}")
    return value
