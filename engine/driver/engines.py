"""Inference engines for the driver's one-pass model: TensorFlow, OpenVINO, ONNX Runtime.

Example::

    name = resolve_engine(config.driver.engine)          # "auto" -> the fastest installed
    runner = compile_engine(name, one_pass_fn, example, threads=2)
    results = runner(frames)                             # [heads..., Convcam maps...] as numpy
    check_parity(reference(frames), results, heads=2)    # raises EngineMismatch when they differ

TensorFlow stays the training engine and the reference for correctness: the
traced one-pass `tf.function` (`engine.driver.inference.OnePassModel`) is what
the other engines convert, and every converted model is compared with it on
a probe frame before it drives (`check_parity`, tolerances below). A reduced
precision (`[driver] precision`, `engine.driver.precision`) is made from the
f32 OpenVINO model only after that check, and has a gate of its own.

"auto" is a fixed preference order, from the issue 18 measurements of
model_0003_xception at 270x480 on two CPU cores (TensorFlow 80.9 ms, ONNX
Runtime 61.7 ms, OpenVINO 31.0 ms a pass): a GPU ONNX Runtime provider (CUDA,
DirectML) first, then TensorFlow when it sees a GPU (Linux with CUDA), then
OpenVINO, then ONNX Runtime on the CPU, then TensorFlow. The GPU rows cannot
be measured here; they are ordered so a GPU is never passed over for a CPU.

OpenVINO and ONNX Runtime are extras (`pip install charles-stream[openvino]`,
`charles-stream[onnxruntime]`); asking for one that is not installed is an
`EngineUnavailable` naming the extra. Both are imported only here, on first
use, so the default install runs with TensorFlow alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from engine.core.config import Config, DriverConfig
from engine.core.errors import DeviceError, ModelError
from engine.core.priority import lower_priority

log = logging.getLogger("charles.engines")

EngineName = Literal["tensorflow", "openvino", "onnxruntime"]
ENGINES: tuple[EngineName, ...] = ("tensorflow", "openvino", "onnxruntime")
ENGINE_CHOICES = ("auto", *ENGINES)
# The Python module each engine imports and the extra that installs it.
_MODULES = {"tensorflow": "tensorflow", "openvino": "openvino", "onnxruntime": "onnxruntime"}
_EXTRAS = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
# ONNX Runtime's providers in the order "auto" prefers them (the CPU one is always there).
ORT_GPU_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider")
# tf2onnx's opset: ONNX Runtime >= 1.14 and every DirectML build in use run opset 17.
ONNX_OPSET = 17

# Tolerances of an engine against TensorFlow on the same frame. A head: 1e-3 absolute, 0.05% of
# the pad's full lock (issue 18 measured 2e-6 on Xception). A Convcam layer: 1e-3 of its largest
# activation, under half a level of the 0-255 tile it becomes (measured 3e-4 raw on Xception,
# whose activations reach ~10).
HEAD_TOLERANCE = 1e-3
CONVCAM_TOLERANCE = 1e-3

Runner = Callable[[np.ndarray], list[np.ndarray]]


class EngineUnavailable(DeviceError):
    """An engine that was asked for by name is not installed (or cannot run here)."""


class EngineMismatch(ModelError):
    """A converted model whose outputs differ from TensorFlow's beyond the tolerance."""


@dataclass(frozen=True)
class Tolerance:
    """How far an engine may be from TensorFlow: heads absolute, Convcam relative to its peak."""

    heads: float = HEAD_TOLERANCE
    convcam: float = CONVCAM_TOLERANCE


@dataclass(frozen=True)
class CompiledEngine:
    """One compiled one-pass model: `run(frames)` -> [heads..., maps...]; `label` for people."""

    name: EngineName
    device: str
    run: Runner
    seconds_to_build: float
    # OpenVINO's model object (what a reduced precision is made from); None elsewhere.
    model: object = None
    # "f32", or the reduced precision it runs at ([driver] precision, engine.driver.precision).
    precision: str = "f32"
    # The driving loop's call ([driver] predictions_in_flight): `run` itself, or with two in
    # flight the outputs of the frame given one call earlier (`Pipeline`). `run` stays the
    # synchronous call every check uses.
    stream: Runner | None = None

    @property
    def drive(self) -> Runner:
        """What the driving loop calls once per frame: `stream` where there is one, else `run`."""
        return self.stream if self.stream is not None else self.run

    @property
    def label(self) -> str:
        """What the Player Console shows, e.g. "openvino CPU", "openvino CPU int8" or
        "openvino CPU int8, 2 in flight"."""
        label = f"{self.name} {self.device}"
        if self.precision != "f32":
            label = f"{label} {self.precision}"
        if isinstance(self.stream, Pipeline):
            label = f"{label}, {self.stream.in_flight} in flight"
        return label


def installed_engines() -> tuple[EngineName, ...]:
    """The engines whose Python package is importable here."""
    return tuple(name for name in ENGINES if _importable(_MODULES[name]))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or half-removed package
        return False


def resolve_engine(requested: str) -> EngineName:
    """The engine for `requested` ("auto" or a name); a refusal naming the extra if absent."""
    if requested not in ENGINE_CHOICES:
        raise EngineUnavailable(
            f"inference engine {requested!r} is unknown; accepted: {', '.join(ENGINE_CHOICES)}"
        )
    installed = installed_engines()
    if requested != "auto":
        if requested not in installed:
            raise EngineUnavailable(
                f"inference engine {requested!r} is not installed: "
                f"pip install 'charles-stream[{_EXTRAS.get(requested, requested)}]' "
                f'(or set [driver] engine = "auto"; installed: {", ".join(installed)})'
            )
        return requested  # type: ignore[return-value]
    return _fastest(installed)


def _fastest(installed: Sequence[EngineName]) -> EngineName:
    """The preference order of the module docstring, over what is installed."""
    if set(installed) <= {"tensorflow"}:
        return "tensorflow"
    if "onnxruntime" in installed and ort_providers()[0] in ORT_GPU_PROVIDERS:
        return "onnxruntime"
    if "tensorflow" in installed and _tensorflow_sees_gpu():
        return "tensorflow"
    for name in ("openvino", "onnxruntime"):
        if name in installed:
            return name  # type: ignore[return-value]
    return "tensorflow"


def _tensorflow_sees_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def ort_providers(available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime's providers to ask for, best first: a GPU one if built in, then the CPU.

    `available` defaults to what the installed onnxruntime package offers
    (onnxruntime-gpu: CUDA; onnxruntime-directml on Windows: DirectML).
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    chosen = [name for name in ORT_GPU_PROVIDERS if name in available]
    return [*chosen, "CPUExecutionProvider"]


def ort_session_options(providers: Sequence[str], intra_threads: int, inter_threads: int):
    """SessionOptions for the driver: its thread counts (0 = ORT's default, one per core).

    DirectML cannot run with memory patterns or parallel execution (its documented
    requirement), so those are off whenever it is among the providers.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = inter_threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if "DmlExecutionProvider" in providers:
        options.enable_mem_pattern = False
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return options


def compile_engine(
    name: EngineName,
    function: Callable,
    example: np.ndarray,
    *,
    intra_threads: int = 0,
    inter_threads: int = 0,
    in_flight: int = 1,
) -> CompiledEngine:
    """Convert and compile a traced one-pass `tf.function` for `name`, inputs like `example`.

    `function` (a `tf.function` with an input signature) takes a (1, H, W, C) float32
    batch and returns the heads then the Convcam maps; the compiled runner returns the
    same list as numpy arrays. Conversion freezes the weights the model holds now.
    """
    started = time.perf_counter()
    converted = None
    stream = None
    if name == "tensorflow":
        device = "GPU" if _tensorflow_sees_gpu() else "CPU"

        def run(frames: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(value) for value in function(frames)]
    elif name in ("openvino", "onnxruntime"):
        converted = _converted(name, function, example)
        device, run, stream = _compiled(name, converted, intra_threads, inter_threads, in_flight)
    else:
        raise EngineUnavailable(
            f"inference engine {name!r} is unknown; accepted: {', '.join(ENGINES)}"
        )
    run(example)  # the first call allocates; not on the first frame the car waits for
    kept = converted if name == "openvino" else None
    return CompiledEngine(
        name, device, run, time.perf_counter() - started, model=kept, stream=stream
    )


def export_engine_model(
    name: EngineName, function: Callable, example: np.ndarray, directory: Path
) -> Path:
    """Convert like `compile_engine`, but write the engine's model file into `directory`.

    What a conversion child process hands back (`convert_checkpoint_in_child`): an
    OpenVINO IR (.xml beside its .bin) or an .onnx file.
    """
    converted = _converted(name, function, example)
    if name == "openvino":
        import openvino

        path = directory / "one_pass.xml"
        openvino.save_model(converted, str(path), compress_to_fp16=False)
        return path
    path = directory / "one_pass.onnx"
    path.write_bytes(converted)
    return path


def load_engine_model(
    name: EngineName,
    path: Path,
    example: np.ndarray,
    *,
    intra_threads: int,
    inter_threads: int,
    in_flight: int = 1,
) -> CompiledEngine:
    """Compile a model file `export_engine_model` wrote: a fraction of a second."""
    started = time.perf_counter()
    if name == "openvino":
        import openvino

        model: object = openvino.Core().read_model(str(path))
    else:
        model = path.read_bytes()
    device, run, stream = _compiled(name, model, intra_threads, inter_threads, in_flight)
    run(example)
    kept = model if name == "openvino" else None
    return CompiledEngine(
        name, device, run, time.perf_counter() - started, model=kept, stream=stream
    )


def compile_openvino(
    model: object, *, threads: int = 0, precision: str = "f32", in_flight: int = 1
) -> CompiledEngine:
    """Compile an OpenVINO model at `precision` ("f32", "bf16"; an int8-quantized model's
    remaining ops run at "int8"'s f32); warmed up with one call on zeros."""
    started = time.perf_counter()
    device, run, stream = _openvino(model, threads, precision, in_flight)
    shape = tuple(model.inputs[0].get_shape())  # type: ignore[attr-defined]
    run(np.zeros(shape, np.float32))
    return CompiledEngine(
        "openvino",
        device,
        run,
        time.perf_counter() - started,
        model=model,
        precision=precision,
        stream=stream,
    )


def _converted(name: EngineName, function: Callable, example: np.ndarray) -> object:
    """OpenVINO's model object, or the ONNX model's bytes."""
    if name == "openvino":
        import openvino

        return openvino.convert_model(function, example_input=example)
    import tensorflow as tf

    try:
        import tf2onnx

        # Its INFO lines (opset, optimiser passes) would fill the driver's log at every checkpoint.
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    except ImportError as error:
        raise EngineUnavailable(
            "inference engine 'onnxruntime' needs tf2onnx to convert the model: "
            "pip install 'charles-stream[onnxruntime]'"
        ) from error
    # A fresh trace with a named input: tf2onnx binds the signature by name.
    signature = [tf.TensorSpec(example.shape, tf.float32, name="frames")]
    proto, _ = tf2onnx.convert.from_function(
        tf.function(function.python_function), input_signature=signature, opset=ONNX_OPSET
    )
    return proto.SerializeToString()


def _compiled(
    name: EngineName, model: object, intra: int, inter: int, in_flight: int = 1
) -> tuple[str, Runner, Runner | None]:
    """(device, run, stream): `stream` is None unless OpenVINO runs `in_flight` = 2."""
    if name == "openvino":
        return _openvino(model, intra, in_flight=in_flight)
    if in_flight != 1:
        log.warning("%s runs one prediction at a time: predictions_in_flight = 1", name)
    return (*_onnxruntime(model, intra, inter), None)


def _openvino(
    model: object, threads: int, precision: str = "f32", in_flight: int = 1
) -> tuple[str, Runner, Runner | None]:
    import openvino

    core = openvino.Core()
    # An Intel GPU where OpenVINO finds one (untested here), else the CPU.
    device = "GPU" if "GPU" in core.available_devices else "CPU"
    # f32 unless bf16 is asked for: OpenVINO's own default on a bf16 CPU is bf16, which the
    # f32 tolerances of check_parity are not for. An int8 model's other ops stay in f32.
    hint = "bf16" if precision == "bf16" else "f32"
    properties: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint}
    if device == "CPU":
        # One stream using every thread for the newest frame (the least delay), or one stream
        # per frame in flight sharing the threads: fewer threads per convolution waste less
        # in synchronisation, so two streams finish more frames a second (BENCHMARKS.md).
        if in_flight == 1:
            properties["PERFORMANCE_HINT"] = "LATENCY"
        else:
            properties["PERFORMANCE_HINT"] = "THROUGHPUT"
            properties["NUM_STREAMS"] = in_flight
        if threads > 0:
            properties["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, device, properties)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(frames: np.ndarray) -> list[np.ndarray]:
        results = request.infer([frames])
        # The request reuses its output buffers: copy before the next call overwrites them.
        return [np.array(results[output]) for output in outputs]

    stream = Pipeline(compiled, in_flight) if in_flight > 1 else None
    return device, run, stream


class Pipeline:
    """Frames computing at once on an OpenVINO model compiled with as many streams.

    Each call starts the frame it is given and returns the outputs of the frame
    given one call earlier, so the next frame computes while the loop acts on the
    last one; the very first call waits for its own frame, the second returns that
    frame's outputs again while the pipeline fills.
    """

    def __init__(self, compiled: object, in_flight: int) -> None:
        if in_flight != 2:
            raise ValueError(f"in_flight = {in_flight!r}; accepted: 2")
        self.in_flight = in_flight
        self._requests = [compiled.create_infer_request() for _ in range(in_flight)]  # type: ignore[attr-defined]
        self._outputs = list(compiled.outputs)  # type: ignore[attr-defined]
        self._next = 0
        self._pending: object = None  # the request started one call earlier
        self._last: list[np.ndarray] = []

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        request = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        # share_inputs=False: OpenVINO copies the frame, so the caller may reuse its array.
        request.start_async([frames], share_inputs=False)  # type: ignore[attr-defined]
        older, self._pending = self._pending, request
        if older is None:  # nothing was in flight before this frame
            if self._last:
                return self._last  # the pipeline fills: the last outputs once more
            older, self._pending = request, None  # the very first frame: wait for it
        older.wait()  # type: ignore[attr-defined]
        self._last = [np.array(older.get_tensor(output).data) for output in self._outputs]  # type: ignore[attr-defined]
        return self._last


def _onnxruntime(model: object, intra: int, inter: int) -> tuple[str, Runner]:
    import onnxruntime

    providers = ort_providers()
    session = onnxruntime.InferenceSession(
        model, ort_session_options(providers, intra, inter), providers=providers
    )
    input_name = session.get_inputs()[0].name
    device = session.get_providers()[0].removesuffix("ExecutionProvider")

    def run(frames: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {input_name: frames})

    return device, run


# A conversion child that has not answered by then is killed and the checkpoint refused.
CONVERSION_TIMEOUT_S = 600.0
# Added to a conversion child's nice value: the driving loop's turns come first.
CONVERSION_NICE = 10
# What a conversion child asked to quantize writes beside the f32 model: the int8 model, or
# why it could not (the f32 model still drives: engine.driver.precision).
INT8_MODEL = "one_pass_int8.xml"
INT8_FAILURE = "int8_failure.txt"
_CALIBRATION = "calibration.npy"


def convert_checkpoint_in_child(
    name: EngineName,
    spec: object,
    checkpoints: Path,
    outputs: Sequence[str],
    layers: Sequence[str],
    directory: Path,
    *,
    calibration: np.ndarray | None = None,
) -> tuple[Path, int]:
    """Convert the newest checkpoint in `checkpoints` for `name` in a child process.

    A conversion is seconds of Python and C++ that would hold the driver's GIL
    (issue 18 measured turns of 300-600 ms while converting in a thread), so a
    fresh, niced interpreter builds the model from `spec`, loads the checkpoint,
    traces the one pass and writes the engine's model file into `directory`.
    Returns the file and the batch it holds; ModelError when the child fails.
    With `calibration` frames (OpenVINO, `[driver] precision = "int8"`) the child
    also quantizes the model on them and writes `INT8_MODEL` beside it (or
    `INT8_FAILURE`, a sentence): NNCF's seconds of Python stay out of the driver too.
    """
    import multiprocessing

    if calibration is not None:
        np.save(directory / _CALIBRATION, calibration)

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_convert_in_child,
        args=(send, name, spec, str(checkpoints), tuple(outputs), tuple(layers), str(directory)),
        name=f"convert-{name}",
        daemon=True,
    )
    child.start()
    send.close()
    try:
        if not receive.poll(CONVERSION_TIMEOUT_S):
            raise ModelError(f"converting for {name} took over {CONVERSION_TIMEOUT_S:g} s")
        try:
            answer = receive.recv()
        except EOFError:
            raise ModelError(f"the {name} conversion process died") from None
    finally:
        receive.close()
        if child.is_alive():
            child.join(timeout=10.0)
        if child.is_alive():
            child.kill()
            child.join()
    if isinstance(answer, str):
        raise ModelError(answer)
    path, batch = answer
    return Path(path), batch


def _convert_in_child(send, name, spec, checkpoints, outputs, layers, directory) -> None:
    """The child's side: build, load, trace, convert, write; send (path, batch) or an error."""
    try:
        lower_priority(CONVERSION_NICE)  # os.nice exists only on POSIX
        from engine.driver.inference import OnePassModel
        from models.build import build_architecture
        from models.checkpoints import load_latest_checkpoint

        model = build_architecture(spec)
        checkpoint = load_latest_checkpoint(model, checkpoints)
        if checkpoint is None:
            send.send(f"no checkpoint in {checkpoints}")
            return
        one_pass = OnePassModel(model, outputs, layers)
        example = np.zeros((1, *one_pass.input_shape), np.float32)
        path = export_engine_model(name, one_pass._forward, example, Path(directory))
        if (Path(directory) / _CALIBRATION).exists():
            _quantize_in_child(path)
        send.send((str(path), checkpoint.batch))
    # Whatever went wrong goes back as text: the driver refuses the checkpoint and drives on.
    except Exception as error:
        send.send(f"{type(error).__name__}: {error}")
    finally:
        send.close()


def _quantize_in_child(path: Path) -> None:
    """Write the int8 model of the f32 one at `path`, or the sentence saying why not."""
    try:
        import openvino

        from engine.driver.precision import quantize_int8

        calibration = np.load(path.with_name(_CALIBRATION))
        quantized = quantize_int8(openvino.Core().read_model(str(path)), calibration)
        openvino.save_model(quantized, str(path.with_name(INT8_MODEL)), compress_to_fp16=False)
    # Any failure here refuses int8 only: the f32 model was written and still drives.
    except Exception as error:
        text = f"int8 quantization failed: {type(error).__name__}: {error}"
        path.with_name(INT8_FAILURE).write_text(text, encoding="utf-8")


def check_parity(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    heads: int,
    tolerance: Tolerance = Tolerance(),
) -> tuple[float, float]:
    """Largest head and Convcam differences; EngineMismatch when over the tolerances.

    Heads are compared absolutely, each Convcam layer relative to its largest activation.
    """
    if len(reference) != len(candidate):
        raise EngineMismatch(
            f"the converted model has {len(candidate)} outputs, TensorFlow's {len(reference)}"
        )
    head_error, map_error = 0.0, 0.0
    for index, (expected, got) in enumerate(zip(reference, candidate, strict=True)):
        if expected.shape != got.shape:
            raise EngineMismatch(
                f"output {index} has shape {got.shape} on the engine, "
                f"{expected.shape} on TensorFlow"
            )
        difference = float(np.max(np.abs(expected - got))) if expected.size else 0.0
        if not np.isfinite(difference):
            difference = float("inf")
        if index < heads:
            head_error = max(head_error, difference)
        else:
            scale = max(1.0, float(np.max(np.abs(expected))))
            map_error = max(map_error, difference / scale)
    if head_error > tolerance.heads or map_error > tolerance.convcam:
        raise EngineMismatch(
            f"outputs differ from TensorFlow's: heads by {head_error:.2e} "
            f"(tolerance {tolerance.heads:g}), Convcam by {map_error:.2e} of its peak "
            f"(tolerance {tolerance.convcam:g})"
        )
    return head_error, map_error


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """`--engine`: the inference engine for this command, instead of `[driver] engine`."""
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=None,
        help="what runs the model (default: [driver] engine); openvino and onnxruntime are "
        "extras: pip install 'charles-stream[openvino]'",
    )


def driver_config_with_engine(config: Config, engine: str | None) -> DriverConfig:
    """`[driver]` for `eval` and `convcam`, with `--engine` applied when given.

    One prediction in flight whatever `predictions_in_flight` says: each frame's outputs
    are that frame's, so a score or an image measures the model, not the pipeline's delay.
    """
    driver = msgspec.structs.replace(config.driver, predictions_in_flight=1)
    if engine is None:
        return driver
    return msgspec.structs.replace(driver, engine=engine)
