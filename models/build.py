"""Spec -> Keras model: the one builder every model line goes through.

Example::

    from models.build import build_model, compile_model, parameter_counts
    spec = load_spec("model_0003_xception")
    model = build_architecture(spec)           # random weights: summaries, plots, checkpoints
    parameter_counts(model)                    # ParameterCounts(23519466, 23464938, 54528)
    model = build_model(spec, config.models.imagenet_weights)   # a new version's starting point
    compile_model(model, spec)                 # optimizer and per-output losses from the spec

The model takes raw 0-255 pixels (float32, frames stacked as channels) and
normalizes them itself, so the trainer and the driver feed frames as they are.
It returns a dict of outputs, one (batch, 1) tensor per spec output, keyed by
output name. TensorFlow is imported here, so only processes that build or run
models (trainer, driver, `models` CLI) import this module.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import keras
from keras import layers

from engine.core.errors import ConfigError, DeviceError, ModelError
from models.backbones import IMAGENET_FILE_NAMES, build_backbone, load_imagenet_weights
from models.spec import ModelSpec, ParameterCounts

_POOLING = {
    "avg": layers.GlobalAveragePooling2D,
    "max": layers.GlobalMaxPooling2D,
    "flatten": layers.Flatten,
}
_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
_LOSSES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber": "huber"}


class GraphvizMissingError(DeviceError):
    """`--plot` needs Graphviz's `dot` program, which is not installed."""


def build_model(spec: ModelSpec, imagenet_weights: Mapping[str, str]) -> keras.Model:
    """A new version's starting point: the architecture, plus ImageNet weights if the spec asks.

    `imagenet_weights` is config `[models.imagenet_weights]` (backbone -> local file);
    it is only read when the spec says `weights = "imagenet"`.
    """
    if spec.weights == "none":
        return build_architecture(spec)
    weights_path = _imagenet_weights_path(spec, imagenet_weights)
    model = build_architecture(spec)
    load_imagenet_weights(model, spec.backbone, weights_path)
    return model


def build_architecture(spec: ModelSpec) -> keras.Model:
    """The spec's model with freshly initialized weights (no pretrained file is read)."""
    frames = keras.Input(
        shape=(spec.input.height, spec.input.width, spec.input.channels), name="frames"
    )
    # Xception and InceptionResNetV2 were trained on [-1, 1] pixels ("tf" preprocessing).
    normalized = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(frames)
    features = build_backbone(spec.backbone, normalized)
    pooled = _POOLING[spec.pooling](name="pool")(features)
    common = layers.Dense(spec.common.units, activation=spec.common.activation, name="common")(
        pooled
    )
    outputs = {}
    for output in spec.outputs:
        x = common
        for depth, width in enumerate(spec.heads.widths(spec.common.units), start=1):
            x = layers.Dense(
                width, activation=spec.heads.activation, name=f"{output.name}_dense{depth}"
            )(x)
        outputs[output.name] = layers.Dense(1, activation=output.activation, name=output.name)(x)
    model = keras.Model(frames, outputs, name=spec.line or "model")
    _check_convcam_layer(model, spec)
    return model


def compile_model(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """Attach the spec's optimizer and each output's loss; returns the same model."""
    optimizer = _OPTIMIZERS[spec.training.optimizer](learning_rate=spec.training.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss={output.name: _LOSSES[output.loss] for output in spec.outputs},
    )
    return model


def parameter_counts(model: keras.Model) -> ParameterCounts:
    """Total, trainable and non-trainable parameters, as Keras' model.summary() counts them."""
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    non_trainable = sum(math.prod(weight.shape) for weight in model.non_trainable_weights)
    return ParameterCounts(trainable + non_trainable, trainable, non_trainable)


def plot_architecture(model: keras.Model, path: str | Path) -> Path:
    """Draw the model graph to an image (the seed page's "Model architecture")."""
    if shutil.which("dot") is None:
        raise GraphvizMissingError(
            "drawing the architecture needs Graphviz's 'dot' program, which is not on PATH; "
            "install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = keras.utils.model_to_dot(model, show_shapes=True, show_layer_names=True)
    # plot_model's orthogonal edges abort Graphviz 2.43 (Debian 12, Ubuntu 22.04) on graphs
    # as big as Xception's ("newtrap: Trapezoid-table overflow"); polylines draw them all.
    graph.set("splines", "polyline")
    graph.write(str(path), format=path.suffix.removeprefix(".") or "png")
    return path


def _imagenet_weights_path(spec: ModelSpec, imagenet_weights: Mapping[str, str]) -> Path:
    """The configured local weights file, checked before minutes of model building."""
    file_name = IMAGENET_FILE_NAMES[spec.backbone]
    configured = imagenet_weights.get(spec.backbone)
    if not configured:
        raise ConfigError(
            f"{spec.source}: weights = 'imagenet' needs a local weights file for backbone "
            f"{spec.backbone!r} (nothing is downloaded); set it in config.toml: "
            f'[models.imagenet_weights] {spec.backbone} = "/path/to/{file_name}"'
        )
    path = Path(configured)
    if not path.is_file():
        raise ConfigError(
            f"models.imagenet_weights.{spec.backbone} = '{configured}': no such file; "
            f"accepted: a local copy of Keras' {file_name}"
        )
    return path


def _check_convcam_layer(model: keras.Model, spec: ModelSpec) -> None:
    """Fail at build time, not mid-stream, when the spec names a layer the model lacks."""
    names = {layer.name for layer in model.layers}
    if spec.convcam not in names:
        feature_maps = [layer.name for layer in model.layers if len(layer.output.shape) == 4]
        raise ModelError(
            f"{spec.source}: 'convcam_layer' = {spec.convcam!r} is not a layer of this model; "
            f"accepted: a feature-map layer such as {', '.join(feature_maps[-5:])}"
        )
