"""The driver's model: predictions and Convcam activations from ONE forward pass.

Example::

    set_tensorflow_threads(config.driver)                 # before anything touches TensorFlow
    loaded = load_version(config.app.data_dir, "model_0000_demo_v1")
    model = one_pass_model(config.driver, loaded.model, loaded.spec.output_names,
                           [loaded.spec.convcam])       # on [driver] engine
    result = model.predict(frame)          # frame: (H, W, C) raw 0-255 pixels
    result.outputs["steering"]             # a float
    result.activations[0]                  # (h, w, kernels): what the Convcam tiles
    model.engine                           # "openvino CPU": what the Player Console names

The trained model is wrapped in a multi-output Keras model whose outputs are
the heads plus the chosen Convcam layer(s), traced once into a `tf.function`
with a fixed input signature (on Keras' JAX or PyTorch backends, Keras' own
compiled `predict_on_batch` of the same wrapper). The Convcam therefore costs nothing but copying
activations out: there is no second pass, ever. The wrapper shares the trained
model's layers, so loading new weights into the trained model (a reload at an
unstuck) changes what the next prediction uses without rebuilding anything.

On another engine (`[driver] engine`: OpenVINO, ONNX Runtime; see
`engine.driver.engines`) that trace is converted and compiled once, and must
agree with TensorFlow on a probe frame before it drives. Its weights are
frozen in, so new weights mean a new conversion: `reload_in_background`
loads them and has a child process convert them while the car drives on the
old model, and swaps only a converted model that agrees with TensorFlow on a
frame the car saw (else the old weights stay, and the caller alerts).

`GradCam` (optional, off by default) does need gradients, so it is a separate
pass on TensorFlow whatever the engine; the driver runs it a few times a
second at most.

Only the driver, `convcam` and `eval` import this module. TensorFlow is imported
where it is used, so the one-pass model also runs where only another Keras
backend is installed (`bench/driver.py --gpu` on a machine without TensorFlow);
`GradCam` and the other engines need TensorFlow.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import keras
import numpy as np

from engine.core.config import DriverConfig
from engine.core.errors import ModelError
from engine.driver.engines import (
    CONVERSION_NICE,
    INT8_FAILURE,
    INT8_MODEL,
    CompiledEngine,
    EngineMismatch,
    EngineName,
    EngineUnavailable,
    Tolerance,
    check_parity,
    compile_engine,
    convert_checkpoint_in_child,
    load_engine_model,
    resolve_engine,
)
from engine.driver.precision import (
    PRECISIONS,
    Agreement,
    FrameSplit,
    PrecisionRefused,
    SteeringTolerance,
    check_steering,
    reduce_precision,
)
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


@dataclass(frozen=True)
class ReloadOutcome:
    """How a background reload went: the batch now driven, and why not when it was refused."""

    version: str
    batch: int
    before: int
    seconds: float
    refused: str | None = None
    # Why the new weights drive at f32 and not at [driver] precision (they were taken).
    precision_note: str | None = None


class OnePassModel:
    """Predictions and Convcam activations from one compiled forward pass per frame.

    On an engine other than TensorFlow the traced pass is converted and
    compiled for it, then checked against TensorFlow on a probe frame
    (`engine.driver.engines.check_parity`) before it serves a prediction.
    At a reduced `precision` (OpenVINO: "bf16", "int8") the checked f32 model
    is reduced and must steer like it on held-back recorded frames (`frames`,
    called each time: a reload takes the newest; `engine.driver.precision`);
    otherwise f32 drives and `precision_note` says why.
    """

    def __init__(
        self,
        model: keras.Model,
        outputs: Sequence[str],
        convcam_layers: Sequence[str],
        *,
        engine: str = "tensorflow",
        intra_threads: int = 0,
        inter_threads: int = 0,
        precision: str = "f32",
        frames: Callable[[], FrameSplit] | None = None,
        precision_tolerance: SteeringTolerance | None = None,
        in_flight: int = 1,
    ) -> None:
        if precision not in PRECISIONS:
            raise ModelError(
                f"precision {precision!r} is unknown; accepted: {', '.join(PRECISIONS)}"
            )
        self.precision = precision
        self._frames = frames
        # How far a reduced model's heads may be from f32's on held-back frames.
        self.precision_tolerance = precision_tolerance or SteeringTolerance()
        # Why [driver] precision is not what drives (None when it is); the driver alerts it.
        self.precision_note: str | None = None
        # The last reduced model's agreement with f32 (None at f32).
        self.agreement: Agreement | None = None
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
        self._model = model
        self._inference = keras.Model(
            model.inputs,
            [heads[name] for name in self.output_names] + maps,
            name=f"{model.name}_one_pass",
        )
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self._threads = (intra_threads, inter_threads)
        self.in_flight = in_flight
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            signature = [tf.TensorSpec((1, *self.input_shape), tf.float32)]
            self._forward = tf.function(self._call, input_signature=signature)
        else:
            self._forward = self._inference.predict_on_batch
        # Trace now, not on the first frame: tracing takes far longer than a frame lasts.
        self._forward(np.zeros((1, *self.input_shape), np.float32))
        # How far a converted model may be from TensorFlow before it is refused.
        self.tolerance = Tolerance()
        self._engine = self._compile(engine)
        self._reloading = threading.Lock()

    @property
    def engine(self) -> str:
        """The engine the predictions run on, and its device (e.g. "openvino CPU")."""
        return self._engine.label

    @property
    def converts_checkpoints(self) -> bool:
        """Whether new weights need a conversion (every engine but TensorFlow)."""
        return self._engine.name != "tensorflow"

    def predict(self, frame: np.ndarray) -> Prediction:
        """Run the model on one (H, W, C) frame of raw 0-255 pixels."""
        if frame.shape != self.input_shape:
            raise ValueError(f"frame of shape {frame.shape}; the model takes {self.input_shape}")
        results = self._engine.drive(frame[np.newaxis].astype(np.float32))
        count = len(self.output_names)
        outputs = {
            name: float(value[0, 0])
            for name, value in zip(self.output_names, results[:count], strict=True)
        }
        return Prediction(outputs, tuple(value[0] for value in results[count:]))

    def reload_in_background(
        self,
        weights: LoadedModel,
        probe: np.ndarray,
        done: Callable[[ReloadOutcome], None],
    ) -> bool:
        """Load the newest checkpoint and convert it beside the loop while the old one drives.

        A thread loads it into TensorFlow; a child process converts it
        (`engines.convert_checkpoint_in_child`: no GIL shared with the loop); the
        thread compiles the result. It replaces the driving model only once it
        agrees with TensorFlow on `probe` (a frame the car saw); otherwise the
        old weights are put back, so TensorFlow (Grad-CAM, the next check) and
        the engine stay the same model. `done` gets the outcome on that thread.
        Returns False, starting nothing, while an earlier reload still runs.
        """
        if not self._reloading.acquire(blocking=False):
            return False
        threading.Thread(
            target=self._reload, args=(weights, probe, done), name="engine-reload", daemon=True
        ).start()
        return True

    def _reload(
        self, weights: LoadedModel, probe: np.ndarray, done: Callable[[ReloadOutcome], None]
    ) -> None:
        _lower_this_threads_priority()
        started = time.perf_counter()
        before = weights.batch
        kept = self._model.get_weights()
        try:
            try:
                if weights.reload_latest() is None:
                    raise ModelError(f"no checkpoint of {weights.version} to load")
                split = self._recorded_split() if self.precision != "f32" else None
                candidate, quantized = self._convert_checkpoint(weights, split)
                frames = probe[np.newaxis].astype(np.float32)
                check_parity(
                    self._reference(frames),
                    candidate.run(frames),
                    len(self.output_names),
                    self.tolerance,
                )
                candidate = self._reduced(candidate, split, quantized)
            # A failed conversion must never stop the car: anything raised here keeps it driving.
            except Exception as error:
                self._model.set_weights(kept)
                weights.batch = before
                refused = f"{type(error).__name__}: {error}" if str(error) else repr(error)
                done(ReloadOutcome(weights.version, before, before, _since(started), refused))
                return
            self._engine = candidate  # one store: the next predict() uses it
            done(
                ReloadOutcome(
                    weights.version,
                    weights.batch,
                    before,
                    _since(started),
                    precision_note=self.precision_note,
                )
            )
        finally:
            self._reloading.release()

    def _convert_checkpoint(
        self, weights: LoadedModel, split: FrameSplit | Exception | None
    ) -> tuple[CompiledEngine, object]:
        """The checkpoint TensorFlow just loaded, converted in a child process and compiled here;
        with it, at precision "int8", the model the child quantized on `split`'s calibration
        frames (or why it could not), else None."""
        name = self._engine.name
        calibration = None
        if self.precision == "int8" and name == "openvino" and isinstance(split, FrameSplit):
            calibration = split.calibration
        intra, inter = self._threads
        example = np.zeros((1, *self.input_shape), np.float32)
        # ignore_cleanup_errors: on Windows a compiled model may keep its file open.
        with tempfile.TemporaryDirectory(
            prefix="charles-convert-", ignore_cleanup_errors=True
        ) as directory:
            path, batch = convert_checkpoint_in_child(
                name,
                weights.spec,
                weights.directory,
                self.output_names,
                self.convcam_layers,
                Path(directory),
                calibration=calibration,
            )
            if batch != weights.batch:
                raise ModelError(
                    f"the conversion holds batch {batch} but TensorFlow loaded {weights.batch} "
                    "(a newer checkpoint came meanwhile; the next reload takes it)"
                )
            compiled = load_engine_model(
                name,
                path,
                example,
                intra_threads=intra,
                inter_threads=inter,
                in_flight=self.in_flight,
            )
            return compiled, quantized_in_child(path) if calibration is not None else None

    def _compile(self, requested: str) -> CompiledEngine:
        """The engine for `requested`, checked; "auto" falls back to TensorFlow on a failure."""
        if keras.backend.backend() != "tensorflow":
            if requested not in ("auto", "tensorflow"):
                raise EngineUnavailable(
                    f"inference engine {requested!r} converts TensorFlow graphs; Keras runs on "
                    f"{keras.backend.backend()} here: accepted: 'auto' or 'tensorflow'"
                )
            return CompiledEngine("tensorflow", keras.backend.backend(), self._reference, 0.0)
        name = resolve_engine(requested)
        if name == "tensorflow":
            return self._reduced(self._convert(name))
        probe = probe_frame(self.input_shape)
        try:
            compiled = self._convert(name)
            check_parity(
                self._reference(probe), compiled.run(probe), len(self.output_names), self.tolerance
            )
        except EngineUnavailable:
            raise
        # A converter's own failure (any type) is a refusal here, or TensorFlow for "auto".
        except Exception as error:
            why = f"{name} cannot drive {self._model.name}: {type(error).__name__}: {error}"
            if requested != "auto":
                kind = EngineMismatch if isinstance(error, EngineMismatch) else ModelError
                raise kind(f'{why} (set [driver] engine = "tensorflow")') from error
            log.warning("%s; driving on TensorFlow", why)
            return self._reduced(self._convert("tensorflow"))
        log.info(
            "%s: %s compiled in %.1f s, agrees with TensorFlow",
            self._model.name,
            compiled.label,
            compiled.seconds_to_build,
        )
        return self._reduced(compiled)

    def _recorded_split(self) -> FrameSplit | Exception:
        """The recorded frames a reduced precision is made and checked on, or what stopped
        reading them (the reduced model is then refused, not the checkpoint)."""
        if self._frames is None:
            return PrecisionRefused("no recorded frames were given to check it on")
        try:
            return self._frames()
        except Exception as error:  # any reader failure leaves f32 driving, see _reduced
            return error

    def _reduced(
        self,
        full: CompiledEngine,
        split: FrameSplit | Exception | None = None,
        quantized: object = None,
    ) -> CompiledEngine:
        """`full` (checked against TensorFlow) at `precision` if it steers like `full` on
        held-back frames of `split` (read now when None); else `full`, with `precision_note`
        saying why. `quantized`: the int8 model a conversion child made, or its failure.

        EngineUnavailable (int8 without NNCF installed) is raised: an install to fix.
        """
        self.agreement = None
        if self.precision == "f32":
            self.precision_note = None
            return full
        try:
            split = self._recorded_split() if split is None else split
            for failure in (split, quantized):
                if isinstance(failure, Exception):
                    raise failure
            intra, _ = self._threads
            reduced = reduce_precision(
                self.precision,
                full,
                split.calibration,
                threads=intra,
                quantized=quantized,
                in_flight=self.in_flight,
            )
            agreement = check_steering(
                full.run, reduced.run, split.held_back, self.output_names, self.precision_tolerance
            )
        except EngineUnavailable:
            raise
        # Anything that stops a reduced model leaves the checked f32 one driving.
        except Exception as error:
            self.precision_note = (
                f"precision {self.precision!r} not taken, driving {self._model.name} at f32: "
                f"{type(error).__name__}: {error}"
            )
            log.warning("%s", self.precision_note)
            return full
        self.precision_note, self.agreement = None, agreement
        log.info(
            "%s: %s made in %.1f s, steers like f32: %s",
            self._model.name,
            reduced.label,
            reduced.seconds_to_build,
            agreement,
        )
        return reduced

    def _convert(self, name: EngineName) -> CompiledEngine:
        intra, inter = self._threads
        example = np.zeros((1, *self.input_shape), np.float32)
        return compile_engine(
            name,
            self._forward,
            example,
            intra_threads=intra,
            inter_threads=inter,
            in_flight=self.in_flight,
        )

    def _reference(self, frames: np.ndarray) -> list[np.ndarray]:
        """TensorFlow's outputs for a batch: what every engine is checked against."""
        return [np.asarray(value) for value in self._forward(frames)]

    def _call(self, frames: tf.Tensor) -> list[tf.Tensor]:
        return self._inference(frames, training=False)


def one_pass_model(
    config: DriverConfig,
    model: keras.Model,
    outputs: Sequence[str],
    layers: Sequence[str],
    frames: Callable[[], FrameSplit] | None = None,
) -> OnePassModel:
    """The one-pass model on `[driver] engine` and `precision` with the driver's thread counts;
    `frames`: recorded frames for a reduced precision (`precision.stream_frames`)."""
    return OnePassModel(
        model,
        outputs,
        layers,
        engine=config.engine,
        intra_threads=config.intra_op_threads,
        inter_threads=config.inter_op_threads,
        precision=config.precision,
        frames=frames,
        in_flight=config.predictions_in_flight,
    )


def quantized_in_child(path: Path) -> object:
    """The int8 model a conversion child wrote beside the f32 one at `path`, or why it did not."""
    import openvino

    failure = path.with_name(INT8_FAILURE)
    if failure.exists():
        return PrecisionRefused(failure.read_text(encoding="utf-8"))
    return openvino.Core().read_model(str(path.with_name(INT8_MODEL)))


def probe_frame(shape: tuple[int, ...], seed: int = 18) -> np.ndarray:
    """A (1, *shape) float32 batch of random 0-255 pixels: the probe before any game frame."""
    return np.random.default_rng(seed).uniform(0, 255, (1, *shape)).astype(np.float32)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _lower_this_threads_priority() -> None:
    """Make the calling thread (and the threads it starts) yield the CPU to the driving loop.

    On Linux a thread is a task with its own nice value, inherited by the threads it
    creates (a converter's workers); elsewhere the conversion runs at the driver's priority.
    """
    native_id = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        os.setpriority(os.PRIO_PROCESS, native_id, min(19, current + CONVERSION_NICE))
    except (AttributeError, OSError) as error:
        log.debug("conversion thread keeps the driver's priority: %s", error)


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
