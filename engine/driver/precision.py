"""Reduced precision for the driver's OpenVINO model: bf16 or int8, only where steering agrees.

Example::

    frames = recorded_frames(samples_db, (270, 480, 3))   # the stream's own frames
    split = split_frames(frames)                          # calibration / held-back, disjoint
    reduced = reduce_precision("int8", f32_engine, split.calibration, threads=2)
    agreement = check_steering(f32_engine.run, reduced.run, split.held_back, ("steering",
                               "throttle_brake"))          # PrecisionRefused when over
    str(agreement)      # "steering mean 3.1e-03 max 1.2e-02, throttle_brake ..."
    OnePassModel(..., precision="int8", frames=stream_frames(config, shape))  # the driver's way

`[driver] precision = "bf16" | "int8"` asks for a faster model than full
precision (f32) on OpenVINO, the issue 18 engine: on this 2-core EPYC an
Xception pass at 270x480 took 133 ms in f32 and ~67 ms in bf16.

- bf16: the same OpenVINO model compiled with `INFERENCE_PRECISION_HINT`
  "bf16"; only on a CPU that lists BF16 among OpenVINO's
  OPTIMIZATION_CAPABILITIES (AVX-512 BF16, AMX), else refused with that reason.
- int8: NNCF's post-training quantization (`nncf.quantize`) of the OpenVINO
  model's convolutions, calibrated on recorded frames (`samples.db`); the
  dense layers and the remaining ops stay in f32 (`quantize_int8` says why).

A reduced model drives only if, on held-back frames (recorded frames the
calibration never saw: the newest quarter, the calibration took the older
ones, so they are other moments of the drive, not neighbours of a calibration
frame), every head (steering, throttle) stays within `SteeringTolerance` of the
full-precision model that has itself passed the f32 parity check against
TensorFlow (`engines.check_parity`). Otherwise the f32 model drives and the
reason is logged and alerted (`OnePassModel.precision_note`). The Convcam is
not gated: it is a picture for viewers, not an input to the pad.

Why those tolerances: a head's output scale is the pad's axis, -1 to 1 (full
lock to full lock, full brake to full throttle). A mean difference of 0.01
(0.5% of the range) is the controller's default `ignore_below`, the smallest
prediction the translator acts on at all; one frame off by up to 0.05 (2.5% of
the range) lasts one prediction (33 ms at 30 PPS) before the next corrects it.
A reduced model over either keeps driving at f32.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engine.core.config import Config
from engine.core.errors import ModelError
from engine.data.frames import FrameError, decode_frame
from engine.data.storage import SampleStorage, default_storage_path
from engine.driver.engines import CompiledEngine, EngineUnavailable, Runner, compile_openvino

log = logging.getLogger("charles.precision")

Precision = Literal["f32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("f32", "bf16", "int8")
# Recorded frames read for a reduced model: calibration and held-back together.
RECORDED_FRAMES = 400
# The newest share of them is held back for the check; the older rest calibrates int8.
HELD_BACK_SHARE = 0.25
# Fewer than this many held-back frames say too little to let a reduced model drive.
MIN_HELD_BACK = 4


@dataclass(frozen=True)
class SteeringTolerance:
    """How far a reduced model's heads may be from f32's on held-back frames (output scale)."""

    mean: float = 0.01
    max: float = 0.05


class PrecisionRefused(ModelError):
    """A reduced-precision model that may not drive: no frames, no bf16, or over tolerance."""


@dataclass(frozen=True)
class FrameSplit:
    """Recorded frames split in two disjoint sets: int8 calibrates on one, the gate checks on
    the other. Each is an (N, H, W, 3) uint8 array (400 Xception frames at 270x480: 155 MB
    as uint8, 4x that as float32; each frame is cast when it is used)."""

    calibration: np.ndarray
    held_back: np.ndarray


@dataclass(frozen=True)
class Agreement:
    """Per head: (mean, max) absolute difference from f32 over `frames` held-back frames."""

    heads: dict[str, tuple[float, float]]
    frames: int

    @property
    def steering(self) -> tuple[float, float]:
        """The steering head's (mean, max), or the first head's when none is called so."""
        return self.heads.get("steering", next(iter(self.heads.values())))

    def __str__(self) -> str:
        parts = [
            f"{name} mean {mean:.1e} max {top:.1e}" for name, (mean, top) in self.heads.items()
        ]
        return f"{', '.join(parts)} on {self.frames} held-back frames"


def recorded_frames(
    samples_db: Path, shape: tuple[int, ...], limit: int = RECORDED_FRAMES
) -> np.ndarray:
    """The newest `limit` frames of `samples_db` at the model's (H, W, 3), uint8, newest first.

    Frames that cannot be decoded are left out. PrecisionRefused when there is no file.
    """
    if not samples_db.is_file():
        raise PrecisionRefused(
            f"no recorded frames to calibrate and check a reduced precision on: {samples_db} "
            "does not exist (collect or record first)"
        )
    height, width = shape[:2]
    # Only read here: the capacity matters to inserts alone.
    with SampleStorage(samples_db, capacity=limit) as storage:
        stored = storage.newest_frames(limit)
    frames = []
    for blob, stored_width, stored_height in stored:
        try:
            frames.append(decode_frame(blob, (stored_width, stored_height), (width, height)))
        except FrameError as error:
            log.debug("a recorded frame left out: %s", error)
    if not frames:
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack(frames)


def recorded_split(
    samples_db: Path, shape: tuple[int, ...], limit: int = RECORDED_FRAMES
) -> FrameSplit:
    """`recorded_frames` split by `split_frames`: what `OnePassModel(frames=...)` calls."""
    return split_frames(recorded_frames(samples_db, shape, limit))


def stream_frames(
    config: Config, shape: tuple[int, ...], data_dir: str | Path | None = None
) -> Callable[[], FrameSplit]:
    """The stream's recorded frames (`<data_dir>/samples/samples.db`) for `OnePassModel(frames=)`:
    read when a reduced model is made, so each reloaded checkpoint gets the newest."""
    return functools.partial(recorded_split, default_storage_path(config, data_dir), shape)


def split_frames(frames: np.ndarray, held_back_share: float = HELD_BACK_SHARE) -> FrameSplit:
    """The newest `held_back_share` of `frames` (newest first) held back; the rest calibrates.

    PrecisionRefused with fewer than `MIN_HELD_BACK` held-back frames or no calibration.
    """
    if not 0.0 < held_back_share < 1.0:
        raise ValueError(f"held_back_share = {held_back_share!r}; accepted: between 0 and 1")
    held = int(np.ceil(len(frames) * held_back_share))
    if held < MIN_HELD_BACK or held >= len(frames):
        raise PrecisionRefused(
            f"{len(frames)} recorded frames are too few to check a reduced precision on; "
            f"accepted: at least {int(np.ceil(MIN_HELD_BACK / held_back_share)) + 1} "
            "(collect or record more)"
        )
    return FrameSplit(calibration=frames[held:], held_back=frames[:held])


def reduce_precision(
    precision: Precision,
    full: CompiledEngine,
    calibration: np.ndarray,
    *,
    threads: int = 0,
    quantized: object = None,
    in_flight: int = 1,
) -> CompiledEngine:
    """`full` (an f32 OpenVINO model) compiled at `precision`: bf16, or int8 from `calibration`
    (or the already `quantized` model a conversion child made from it).

    PrecisionRefused for an engine other than OpenVINO or a CPU without bf16;
    EngineUnavailable when int8 is asked for and NNCF is not installed.
    """
    if precision not in PRECISIONS or precision == "f32":
        raise ValueError(f"precision {precision!r}; accepted: 'bf16', 'int8'")
    if full.name != "openvino" or full.model is None:
        raise PrecisionRefused(
            f"precision {precision!r} is OpenVINO's; {full.label} runs f32 "
            '(set [driver] engine = "openvino")'
        )
    started = time.perf_counter()
    model = full.model
    if precision == "bf16":
        if full.device == "CPU" and not cpu_supports_bf16():
            raise PrecisionRefused(
                "this CPU has no bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES lack BF16: no "
                'AVX-512 BF16 or AMX); accepted here: precision = "f32" or "int8"'
            )
    else:
        model = quantized if quantized is not None else quantize_int8(model, calibration)
    reduced = compile_openvino(model, threads=threads, precision=precision, in_flight=in_flight)
    return dataclasses.replace(reduced, seconds_to_build=time.perf_counter() - started)


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX)."""
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


def quantize_int8(model: object, calibration: np.ndarray) -> object:
    """NNCF's post-training int8 quantization of an OpenVINO model on `calibration` frames."""
    try:
        import nncf
    except ImportError as error:
        raise EngineUnavailable(
            "precision 'int8' needs NNCF to quantize the model: "
            "pip install 'charles-stream[openvino]'"
        ) from error
    if len(calibration) == 0:
        raise PrecisionRefused("int8 needs calibration frames; none were recorded")
    # NNCF logs every step at INFO: the driver's log would fill at every checkpoint.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    dataset = nncf.Dataset(calibration, lambda frame: frame[np.newaxis].astype(np.float32))
    # The dense layers (MatMul) stay in f32: with them in int8 the briefly trained demo line's
    # heads moved by 0.057 mean / 0.32 max on held-back frames (refused), with them in f32 by
    # 0.0035 / 0.014 (BENCHMARKS.md, issue 18); they are a small share of a conv net's time.
    keep = nncf.IgnoredScope(types=["MatMul"], validate=False)
    return nncf.quantize(model, dataset, subset_size=len(calibration), ignored_scope=keep)


def check_steering(
    reference: Runner,
    candidate: Runner,
    frames: np.ndarray,
    names: Sequence[str],
    tolerance: SteeringTolerance = SteeringTolerance(),
) -> Agreement:
    """Each head's mean and max |candidate - reference| over `frames`; PrecisionRefused when
    any head is over `tolerance` (or not finite)."""
    if len(frames) == 0:
        raise PrecisionRefused("no held-back frames to check a reduced precision on")
    count = len(names)
    differences = np.zeros((len(frames), count))
    for index, frame in enumerate(frames):
        batch = frame[np.newaxis].astype(np.float32)
        expected, got = reference(batch)[:count], candidate(batch)[:count]
        pairs = zip(expected, got, strict=True)
        differences[index] = [float(np.max(np.abs(want - have))) for want, have in pairs]
    differences = np.where(np.isfinite(differences), differences, np.inf)
    agreement = Agreement(
        {
            name: (float(differences[:, head].mean()), float(differences[:, head].max()))
            for head, name in enumerate(names)
        },
        len(frames),
    )
    over = [
        name
        for name, (mean, top) in agreement.heads.items()
        if not (mean <= tolerance.mean and top <= tolerance.max)
    ]
    if over:
        raise PrecisionRefused(
            f"{', '.join(over)} off f32 by more than mean {tolerance.mean:g} / max "
            f"{tolerance.max:g}: {agreement}"
        )
    return agreement
