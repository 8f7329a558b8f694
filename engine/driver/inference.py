"""The driver's model: predictions and Convcam activations from ONE forward pass.

Example::

    set_tensorflow_threads(config.driver)                 # before anything touches TensorFlow
    loaded = load_version(config.app.data_dir, "model_0000_demo_v1")
    model = OnePassModel(loaded.model, loaded.spec.output_names, [loaded.spec.convcam])
    result = model.predict(frame)          # frame: (H, W, C) raw 0-255 pixels
    result.outputs["steering"]             # a float
    result.activations[0]                  # (h, w, kernels): what the Convcam tiles

The trained model is wrapped in a multi-output Keras model whose outputs are
the heads plus the chosen Convcam layer(s), traced once into a `tf.function`
with a fixed input signature (on Keras' JAX or PyTorch backends, Keras' own
compiled `predict_on_batch` of the same wrapper). The Convcam therefore costs nothing but copying
activations out: there is no second pass, ever. The wrapper shares the trained
model's layers, so loading new weights into the trained model (a reload at an
unstuck) changes what the next prediction uses without rebuilding anything.

`GradCam` (optional, off by default) does need gradients, so it is a separate
pass; the driver runs it a few times a second at most.

Only the driver, `convcam` and `eval` import this module. TensorFlow is imported
where it is used, so the one-pass model also runs where only another Keras
backend is installed (`bench/driver.py --gpu` on a machine without TensorFlow);
`GradCam` needs TensorFlow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import keras
import numpy as np

from engine.core.config import DriverConfig
from engine.core.errors import ModelError
from models.build import build_architecture, parameter_counts
from models.checkpoints import Checkpoint, load_latest_checkpoint
from models.registry import Registry, version_dir
from models.spec import ModelSpec

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("charles.inference")


@dataclass(frozen=True)
class Prediction:
    """One forward pass: each head's value and each Convcam layer's (h, w, kernels) maps."""

    outputs: dict[str, float]
    activations: tuple[np.ndarray, ...]


@dataclass
class LoadedModel:
    """A version's model with the newest checkpoint it could load (batch 0: none yet)."""

    version: str
    spec: ModelSpec
    model: keras.Model
    directory: Path
    batch: int

    def reload_latest(self) -> Checkpoint | None:
        """Load the newest checkpoint of this version into the same model; None if there is none."""
        checkpoint = load_latest_checkpoint(self.model, self.directory)
        if checkpoint is not None:
            self.batch = checkpoint.batch
        return checkpoint


def set_tensorflow_threads(config: DriverConfig) -> None:
    """Limit TensorFlow's thread pools, so a driver and a trainer can share a small machine.

    Must run before TensorFlow executes anything; later it cannot change and a
    warning says so.
    """
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    except RuntimeError as error:
        log.warning("TensorFlow threads already fixed, driver thread settings ignored: %s", error)


def load_version(data_dir: str | Path, version: str) -> LoadedModel:
    """Build a version's model from its stored spec and load its newest checkpoint, if any."""
    with Registry(data_dir) as registry:
        stored = registry.version(version)
    spec = stored.spec()
    model = build_architecture(spec)
    if stored.parameters is None:  # created by the app, which builds no model
        with Registry(data_dir) as registry:
            registry.record_parameters(version, parameter_counts(model))
    loaded = LoadedModel(version, spec, model, version_dir(data_dir, version), batch=0)
    if loaded.reload_latest() is None:
        log.warning("%s has no checkpoint yet: driving with untrained weights", version)
    return loaded


def feature_map_layers(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    """Every layer with a (batch, h, w, channels) output: the layers a Convcam can show."""
    return [
        (layer.name, tuple(layer.output.shape[1:]))
        for layer in model.layers
        if len(layer.output.shape) == 4 and not isinstance(layer, keras.layers.InputLayer)
    ]


class OnePassModel:
    """Predictions and Convcam activations from one compiled forward pass per frame."""

    def __init__(
        self, model: keras.Model, outputs: Sequence[str], convcam_layers: Sequence[str]
    ) -> None:
        self.output_names = tuple(outputs)
        self.convcam_layers = tuple(convcam_layers)
        heads = model.output
        missing = [name for name in self.output_names if name not in heads]
        if missing:
            raise ModelError(
                f"model {model.name!r} has no output(s) {', '.join(missing)}; "
                f"it has: {', '.join(heads)}"
            )
        maps = [_convcam_layer(model, name).output for name in self.convcam_layers]
        self._inference = keras.Model(
            model.inputs,
            [heads[name] for name in self.output_names] + maps,
            name=f"{model.name}_one_pass",
        )
        self.input_shape = tuple(model.inputs[0].shape[1:])
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            signature = [tf.TensorSpec((1, *self.input_shape), tf.float32)]
            self._forward = tf.function(self._call, input_signature=signature)
        else:
            self._forward = self._inference.predict_on_batch
        # Trace now, not on the first frame: tracing takes far longer than a frame lasts.
        self._forward(np.zeros((1, *self.input_shape), np.float32))

    def predict(self, frame: np.ndarray) -> Prediction:
        """Run the model on one (H, W, C) frame of raw 0-255 pixels."""
        if frame.shape != self.input_shape:
            raise ValueError(f"frame of shape {frame.shape}; the model takes {self.input_shape}")
        results = self._forward(frame[np.newaxis].astype(np.float32))
        count = len(self.output_names)
        results = [np.asarray(value) for value in results]
        outputs = {
            name: float(value[0, 0])
            for name, value in zip(self.output_names, results[:count], strict=True)
        }
        return Prediction(outputs, tuple(value[0] for value in results[count:]))

    def _call(self, frames: tf.Tensor) -> list[tf.Tensor]:
        return self._inference(frames, training=False)


class GradCam:
    """Where the model looks when it steers: Grad-CAM of one output over the input frame.

    For a regression output the sign says left or right, so the heat map
    follows what makes the prediction *larger in magnitude* (|output|): the
    features behind a hard steer either way.
    """

    def __init__(self, model: keras.Model, output: str, layer: str) -> None:
        if output not in model.output:
            raise ModelError(f"Grad-CAM: model {model.name!r} has no output {output!r}")
        self._model = keras.Model(
            model.inputs, [_convcam_layer(model, layer).output, model.output[output]]
        )
        self.input_shape = tuple(model.inputs[0].shape[1:])
        import tensorflow as tf

        signature = [tf.TensorSpec((1, *self.input_shape), tf.float32)]
        self._heat = tf.function(self._call, input_signature=signature)

    def heat_map(self, frame: np.ndarray) -> np.ndarray:
        """A float32 (h, w) map in [0, 1] at the layer's resolution."""
        return self._heat(frame[np.newaxis].astype(np.float32)).numpy()

    def overlay(self, frame: np.ndarray, image: np.ndarray, opacity: float = 0.45) -> np.ndarray:
        """The heat map of `frame` (model input) drawn over `image` (any size RGB uint8)."""
        heat = cv2.resize(self.heat_map(frame), (image.shape[1], image.shape[0]))
        coloured = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
        return cv2.addWeighted(image, 1.0 - opacity, coloured, opacity, 0.0)

    def _call(self, frames: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            maps, value = self._model(frames, training=False)
            target = tf.abs(value[:, 0])
        gradients = tape.gradient(target, maps)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[0]
        return cam / (tf.reduce_max(cam) + 1e-6)


def _convcam_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """A feature-map layer by name; ConfigError listing the ones that exist otherwise."""
    names = [layer for layer, _ in feature_map_layers(model)]
    if name not in names:
        raise ModelError(
            f"{name!r} is not a feature-map layer of {model.name!r}; accepted: "
            f"{', '.join(names[-8:])} (`charles-stream convcam --list-layers` lists all)"
        )
    return model.get_layer(name)
