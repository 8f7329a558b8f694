"""Model line specs: one TOML file per line under `models/`, read without TensorFlow.

Example::

    from models.spec import load_spec
    spec = load_spec("model_0003_xception")
    spec.backbone, spec.input.height, spec.output_names   # 'xception', 270, ('steering', ...)
    spec.heads.widths(spec.common.units)                  # (256, 64, 16)
    cheaper = spec.with_overrides(backbone="small_cnn", frames=3)

A spec says everything needed to build and train a line's models: the backbone,
the input (height, width and `frames`, the number of frames stacked as input
channels, newest first), one common dense layer, one head per output (dense
layers whose widths shrink by `heads.shrink`, then a one-unit regression layer
named after the output), each output's loss and optional balancing-bins override,
and the optimizer. `models/build.py` turns a spec into a Keras model.

Spec files are validated like config.toml: a mistake raises `ConfigError` naming
the file, the key, the bad value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.core.config import ImagenetBackbone, OutputBinsConfig, build_section
from engine.core.errors import ConfigError, ModelError, UsageError

SPEC_DIR = Path(__file__).resolve().parent

BackboneName = Literal["xception", "inception_resnet_v2", "small_cnn"]
BACKBONES: tuple[str, ...] = typing.get_args(BackboneName)
# Backbones Keras publishes ImageNet weights for (the file comes from config, never a download).
IMAGENET_BACKBONES: tuple[str, ...] = typing.get_args(ImagenetBackbone)
# Keras refuses smaller inputs for its applications; the small CNN needs 3 halvings to stay >= 1.
MIN_INPUT_SIZE = {"xception": 71, "inception_resnet_v2": 75, "small_cnn": 8}
# The layer Convcam shows unless a spec names another: each backbone's last conv activation.
DEFAULT_CONVCAM_LAYER = {
    "xception": "block14_sepconv2_act",
    "inception_resnet_v2": "conv_7b_ac",
    "small_cnn": "convcam",
}

Activation = Literal["relu", "elu", "selu", "gelu", "swish", "tanh"]
OutputActivation = Literal["linear", "tanh", "sigmoid"]
Loss = Literal["mse", "mae", "huber"]
Optimizer = Literal["adam", "sgd", "rmsprop"]

# Line and output names become file, layer and dict-key names: keep them plain identifiers.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# A line name may not look like a version (`<line>_v3`), so the two never collide.
VERSION_SUFFIX = re.compile(r"_v[0-9]+$")

_REQUIRED_KEYS = ("backbone", "input", "common", "heads", "outputs", "training")


def _range(low: float, high: float) -> dict[str, Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class ParameterCounts:
    """A model's parameter summary, as the seed page shows it (total, trainable, non-trainable)."""

    total: int
    trainable: int
    non_trainable: int

    def as_dict(self) -> dict[str, int]:
        """The JSON shape `models summary --json` prints."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InputSpec:
    """The model's input: `frames` RGB frames of height x width stacked as 3*frames channels."""

    height: int = field(default=270, metadata=_range(8, 4320))
    width: int = field(default=480, metadata=_range(8, 7680))
    frames: int = field(default=1, metadata=_range(1, 16))

    @property
    def channels(self) -> int:
        """Input channels: RGB per stacked frame."""
        return 3 * self.frames


@dataclass(frozen=True)
class CommonDenseSpec:
    """The one dense layer every head shares, on the pooled backbone features."""

    units: int = field(default=1024, metadata=_range(1, 65536))
    activation: Activation = "relu"


@dataclass(frozen=True)
class HeadsSpec:
    """Each output's head: `layers` dense layers, each `shrink` times narrower than the last."""

    layers: int = field(default=3, metadata=_range(0, 8))
    shrink: int = field(default=4, metadata=_range(1, 64))
    activation: Activation = "relu"

    def widths(self, common_units: int) -> tuple[int, ...]:
        """Widths of a head's dense layers, starting from the common layer's width."""
        return tuple(common_units // self.shrink**i for i in range(1, self.layers + 1))


@dataclass(frozen=True)
class OutputSpec:
    """One regression output: its head ends in a one-unit layer of this name."""

    name: str
    loss: Loss = "mse"
    activation: OutputActivation = "linear"
    # None: balance with data.bins[name] from config.toml; a table here overrides it.
    bins: OutputBinsConfig | None = None


@dataclass(frozen=True)
class TrainingSpec:
    """How the trainer optimises this line."""

    optimizer: Optimizer = "adam"
    learning_rate: float = field(default=1e-4, metadata=_range(1e-8, 1.0))
    batch_size: int = field(default=32, metadata=_range(1, 65536))


@dataclass(frozen=True)
class ModelSpec:
    """One model line: everything needed to build, train and describe its versions."""

    backbone: BackboneName
    input: InputSpec
    common: CommonDenseSpec
    heads: HeadsSpec
    outputs: tuple[OutputSpec, ...]
    training: TrainingSpec
    description: str = ""
    # "imagenet": start the backbone from the file in config [models.imagenet_weights].
    weights: Literal["none", "imagenet"] = "none"
    # "flatten" keeps where features are (the small CNN needs it); "avg"/"max" pool them away.
    pooling: Literal["avg", "max", "flatten"] = "avg"
    # "" means the backbone's default (DEFAULT_CONVCAM_LAYER).
    convcam_layer: str = ""
    line: str = field(default="", metadata={"internal": True})
    source: str = field(default="<spec>", metadata={"internal": True})

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs in head order."""
        return tuple(output.name for output in self.outputs)

    @property
    def convcam(self) -> str:
        """The layer whose activations the Convcam shows."""
        return self.convcam_layer or DEFAULT_CONVCAM_LAYER[self.backbone]

    def with_overrides(
        self,
        *,
        backbone: str | None = None,
        frames: int | None = None,
        outputs: Sequence[str] | None = None,
    ) -> ModelSpec:
        """This line with another backbone, frame stack or output list ("what would it cost?").

        New outputs get default settings; outputs the line already has keep theirs.
        A backbone override drops a spec-chosen Convcam layer (it names the old backbone's layer).
        """
        spec = self
        given = {"--backbone": backbone, "--frames": frames, "--outputs": outputs}
        flags = " ".join(
            f"{flag} {','.join(value) if flag == '--outputs' else value}"
            for flag, value in given.items()
            if value is not None
        )
        source = f"{self.source} with {flags}" if flags else self.source
        if backbone is not None:
            if backbone not in BACKBONES:
                raise UsageError(
                    f"--backbone {backbone!r} is not a backbone; accepted: {', '.join(BACKBONES)}"
                )
            spec = dataclasses.replace(spec, backbone=backbone, convcam_layer="")
        if frames is not None:
            low, high = _field_range(InputSpec, "frames")
            if not low <= frames <= high:
                raise UsageError(f"--frames {frames} is out of range; accepted: {low} to {high}")
            spec = dataclasses.replace(spec, input=dataclasses.replace(spec.input, frames=frames))
        if outputs is not None:
            existing = {output.name: output for output in spec.outputs}
            spec = dataclasses.replace(
                spec, outputs=tuple(existing.get(name, OutputSpec(name)) for name in outputs)
            )
        spec = dataclasses.replace(spec, source=source)
        try:
            _check_spec(spec, file=source)
        except ModelError as error:  # the flags made it so: a usage problem, named with them
            raise UsageError(str(error)) from None
        return spec


def available_lines(spec_dir: Path = SPEC_DIR) -> list[str]:
    """The model lines that have a spec file, sorted."""
    return sorted(path.stem for path in spec_dir.glob("*.toml"))


def spec_path(line: str, spec_dir: Path = SPEC_DIR) -> Path:
    """The spec file of a line; `UsageError` listing the known lines if there is none."""
    path = spec_dir / f"{line}.toml"
    if not NAME.match(line) or not path.is_file():
        known = ", ".join(available_lines(spec_dir)) or "none"
        raise UsageError(f"unknown model line {line!r}; spec files in {spec_dir}: {known}")
    return path


def load_spec(line_or_path: str | Path, spec_dir: Path = SPEC_DIR) -> ModelSpec:
    """Read and validate a line's spec, by line name (`models/<line>.toml`) or file path."""
    text_path = str(line_or_path)
    path = Path(text_path) if text_path.endswith(".toml") else spec_path(text_path, spec_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelError(f"{path}: cannot read spec file: {error}") from None
    return parse_spec(text, line=path.stem, source=str(path))


def parse_spec(text: str, *, line: str, source: str) -> ModelSpec:
    """Validate spec TOML text (a file's, or a version's stored copy) into a `ModelSpec`."""
    if not NAME.match(line) or VERSION_SUFFIX.search(line):
        raise ModelError(
            f"{source}: {line!r} is not a usable line name; use lowercase letters, digits "
            "and '_', starting with a letter and not ending in _v<number>"
        )
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ModelError(f"{source}: not valid TOML: {error}") from None
    missing = [key for key in _REQUIRED_KEYS if key not in table]
    if missing:
        raise ModelError(
            f"{source}: missing key(s) {', '.join(missing)}; a spec needs: "
            f"{', '.join(_REQUIRED_KEYS)}"
        )
    for index, output in enumerate(table["outputs"] if isinstance(table["outputs"], list) else []):
        if isinstance(output, dict) and "name" not in output:
            raise ModelError(f"{source}: 'outputs[{index}]' has no 'name'")
    try:
        spec = build_section(ModelSpec, table, file=source, prefix="")
    except ConfigError as error:  # same wording as config.toml's, but it is the spec that is bad
        raise ModelError(str(error)) from None
    spec = dataclasses.replace(spec, line=line, source=source)
    _check_spec(spec, file=source)
    return spec


def _field_range(cls: type, name: str) -> tuple[float, float]:
    """The range a field's metadata declares, so overrides obey the same limits as files."""
    (spec_field,) = (f for f in dataclasses.fields(cls) if f.name == name)
    return spec_field.metadata["range"]


def _check_spec(spec: ModelSpec, *, file: str) -> None:
    """Rules that span keys, which the per-key schema cannot express."""
    if not spec.outputs:
        raise ModelError(f"{file}: 'outputs' is empty; a model needs at least one output")
    seen: set[str] = set()
    for index, output in enumerate(spec.outputs):
        if not NAME.match(output.name):
            raise ModelError(
                f"{file}: 'outputs[{index}].name' = {output.name!r} is not accepted; use "
                "lowercase letters, digits and '_', starting with a letter"
            )
        if output.name in seen:
            raise ModelError(f"{file}: 'outputs[{index}].name' = {output.name!r} is a duplicate")
        seen.add(output.name)
    minimum = MIN_INPUT_SIZE[spec.backbone]
    for key in ("height", "width"):
        value = getattr(spec.input, key)
        if value < minimum:
            raise ModelError(
                f"{file}: 'input.{key}' = {value} is too small for backbone {spec.backbone!r}; "
                f"accepted: {minimum} or more"
            )
    widths = spec.heads.widths(spec.common.units)
    if widths and widths[-1] < 1:
        raise ModelError(
            f"{file}: 'heads' = {spec.heads.layers} layers shrinking by {spec.heads.shrink} from "
            f"common.units = {spec.common.units} leaves a layer of width 0; accepted: "
            f"common.units >= {spec.heads.shrink**spec.heads.layers} or fewer layers / less shrink"
        )
    if spec.weights == "imagenet" and spec.backbone not in IMAGENET_BACKBONES:
        raise ModelError(
            f"{file}: 'weights' = 'imagenet' is not available for backbone {spec.backbone!r}; "
            f"accepted: 'none', or a backbone among {', '.join(IMAGENET_BACKBONES)}"
        )
