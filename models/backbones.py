"""The CNN backbones a spec can name: two Keras applications and a small CNN for CPUs.

Example::

    features = build_backbone("xception", normalized_frames)   # (None, 9, 15, 2048) at 270x480

Every backbone takes the normalized input tensor ([-1, 1], what Xception and
InceptionResNetV2 were trained on) and returns its last feature map, with its
layers joined into the caller's graph so any of them (the Convcam layer) can be
read in the same forward pass. Keras applications are always built with
`weights=None`: pretrained weights come only from a local file (see
`load_imagenet_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from keras import layers

from engine.core.errors import ConfigError

# The names Keras publishes its "notop" ImageNet files under, for the error that asks for one.
IMAGENET_FILE_NAMES = {
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_resnet_v2": "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


def build_backbone(name: str, normalized: keras.KerasTensor) -> keras.KerasTensor:
    """The last feature map of backbone `name` applied to `normalized`."""
    return _BUILDERS[name](normalized)


def load_imagenet_weights(model: keras.Model, backbone: str, path: Path) -> None:
    """Copy ImageNet weights from a local Keras file into the backbone layers of `model`.

    The file is loaded into a standalone 3-channel backbone, then copied layer by
    layer, in order, into `model` (whose first layers are the backbone). With
    stacked frames the first conv has 3*frames input channels; its RGB kernel is
    repeated for every frame and divided by the frame count, so a stack of
    identical frames starts out seeing exactly what one frame would.
    """
    application = _APPLICATIONS[backbone]
    standalone = application(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        standalone.load_weights(str(path))
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(
            f"models.imagenet_weights.{backbone} = '{path}': cannot load it as Keras "
            f"{backbone} notop weights ({IMAGENET_FILE_NAMES[backbone]}): {error}"
        ) from None
    source_layers = [layer for layer in standalone.layers if layer.weights]
    target_layers = [layer for layer in model.layers if layer.weights][: len(source_layers)]
    for source, target in zip(source_layers, target_layers, strict=True):
        weights = [
            _fit_input_channels(value, target_weight.shape)
            for value, target_weight in zip(source.get_weights(), target.weights, strict=True)
        ]
        target.set_weights(weights)


def _fit_input_channels(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A conv kernel for 3 channels spread over 3*frames channels; other weights unchanged."""
    if tuple(kernel.shape) == tuple(shape):
        return kernel
    frames = shape[2] // kernel.shape[2]
    return np.concatenate([kernel] * frames, axis=2) / frames


def _xception(normalized: keras.KerasTensor) -> keras.KerasTensor:
    return keras.applications.Xception(
        include_top=False, weights=None, input_tensor=normalized
    ).output


def _inception_resnet_v2(normalized: keras.KerasTensor) -> keras.KerasTensor:
    return keras.applications.InceptionResNetV2(
        include_top=False, weights=None, input_tensor=normalized
    ).output


def _small_cnn(normalized: keras.KerasTensor) -> keras.KerasTensor:
    """A PilotNet-sized CNN: under 1.5 ms per frame at 72x128 on one CPU core.

    Three stride-2 convs shrink the image 8x; the last conv keeps stride 1 so
    its 64 maps stay big enough (9x16 at 72x128) to read as a Convcam.
    """
    x = layers.Conv2D(24, 5, strides=2, padding="same", activation="relu", name="conv1")(normalized)
    x = layers.Conv2D(36, 5, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Conv2D(48, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    return layers.Conv2D(64, 3, padding="same", activation="relu", name="convcam")(x)


_BUILDERS: dict[str, Callable[[keras.KerasTensor], keras.KerasTensor]] = {
    "xception": _xception,
    "inception_resnet_v2": _inception_resnet_v2,
    "small_cnn": _small_cnn,
}
_APPLICATIONS = {
    "xception": keras.applications.Xception,
    "inception_resnet_v2": keras.applications.InceptionResNetV2,
}
