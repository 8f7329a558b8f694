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

Spec files are validated like config.toml (msgspec Structs, worded by
`engine.core.schema`): a mistake raises `ModelError` naming the file, the key,
the bad value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from engine.core.config import ImagenetBackbone, OutputBinsConfig
from engine.core.errors import ModelError, UsageError
from engine.core.schema import convert, field_range, parse_toml

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


@dataclass(frozen=True)
class ParameterCounts:
    """A model's parameter summary, as the seed page shows it (total, trainable, non-trainable)."""

    total: int
    trainable: int
    non_trainable: int

    def as_dict(self) -> dict[str, int]:
        """The JSON shape `models summary --json` prints."""
        return dataclasses.asdict(self)


class InputSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The model's input: `frames` RGB frames of height x width stacked as 3*frames channels."""

    height: Annotated[int, Meta(ge=8, le=4320)] = 270
    width: Annotated[int, Meta(ge=8, le=7680)] = 480
    frames: Annotated[int, Meta(ge=1, le=16)] = 1

    @property
    def channels(self) -> int:
        """Input channels: RGB per stacked frame."""
        return 3 * self.frames


class CommonDenseSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The one dense layer every head shares, on the pooled backbone features."""

    units: Annotated[int, Meta(ge=1, le=65536)] = 1024
    activation: Activation = "relu"


class HeadsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Each output's head: `layers` dense layers, each `shrink` times narrower than the last."""

    layers: Annotated[int, Meta(ge=0, le=8)] = 3
    shrink: Annotated[int, Meta(ge=1, le=64)] = 4
    activation: Activation = "relu"

    def widths(self, common_units: int) -> tuple[int, ...]:
        """Widths of a head's dense layers, starting from the common layer's width."""
        return tuple(common_units // self.shrink**i for i in range(1, self.layers + 1))


class OutputSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One regression output: its head ends in a one-unit layer of this name."""

    name: str
    loss: Loss = "mse"
    activation: OutputActivation = "linear"
    # None: balance with data.bins[name] from config.toml; a table here overrides it.
    bins: OutputBinsConfig | None = None


class TrainingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the trainer optimises this line."""

    optimizer: Optimizer = "adam"
    learning_rate: Annotated[float, Meta(ge=1e-8, le=1.0)] = 1e-4
    batch_size: Annotated[int, Meta(ge=1, le=65536)] = 32


class ModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
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
    # Set by the loader, never by the file.
    line: str = ""
    source: str = "<spec>"

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
            spec = msgspec.structs.replace(spec, backbone=backbone, convcam_layer="")
        if frames is not None:
            low, high = field_range(InputSpec, "frames")  # the limits files obey
            if not low <= frames <= high:
                raise UsageError(f"--frames {frames} is out of range; accepted: {low} to {high}")
            stacked = msgspec.structs.replace(spec.input, frames=frames)
            spec = msgspec.structs.replace(spec, input=stacked)
        if outputs is not None:
            existing = {output.name: output for output in spec.outputs}
            spec = msgspec.structs.replace(
                spec, outputs=tuple(existing.get(name, OutputSpec(name)) for name in outputs)
            )
        spec = msgspec.structs.replace(spec, source=source)
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
    table = parse_toml(text, where=source, error=ModelError)
    missing = [key for key in _REQUIRED_KEYS if key not in table]
    if missing:
        raise ModelError(
            f"{source}: missing key(s) {', '.join(missing)}; a spec needs: "
            f"{', '.join(_REQUIRED_KEYS)}"
        )
    for index, output in enumerate(table["outputs"] if isinstance(table["outputs"], list) else []):
        if isinstance(output, dict) and "name" not in output:
            raise ModelError(f"{source}: 'outputs[{index}]' has no 'name'")
    # Same wording as config.toml's, but it is the spec that is bad: ModelError.
    spec = convert(table, ModelSpec, where=source, error=ModelError, internal=("line", "source"))
    spec = msgspec.structs.replace(spec, line=line, source=source)
    _check_spec(spec, file=source)
    return spec


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
