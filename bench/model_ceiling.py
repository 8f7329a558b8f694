"""The model lines' bare speed on any Keras backend: what a GPU could give the trainer and driver.

    KERAS_BACKEND=jax PYTHONPATH=. python bench/model_ceiling.py [--lines LINE,LINE]

For each line at its spec's input size (model_0003_xception: 270x480):

- train: Keras' own compiled train step (`train_on_batch`, the step the trainer
  runs) on one in-memory batch at the spec's batch size and at 32, samples/s;
- predict: the compiled forward pass on one frame (what the driver does per
  frame), predictions per second, and the same at batch 8 for reference.

This is the ceiling the full trainer and driver are measured against
(`bench/trainer.py`, `bench/driver.py` use the same models on TensorFlow). It
exists because a lent GPU machine may lack TensorFlow and be unable to fetch
it: Keras 3 runs the identical model definition on JAX or PyTorch, which such
a machine has. Each figure is the median of timed repeats after warm-up, with
the backend and device printed first.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import time

import keras
import numpy as np

from models.build import build_architecture, compile_model
from models.spec import load_spec

log = logging.getLogger("bench.model_ceiling")


def main() -> None:
    """Measure each line and print one line per figure."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="model_0003_xception,model_0000_demo")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per figure")
    args = parser.parse_args()
    log.info(
        "keras %s, backend %s, devices %s", keras.__version__, keras.backend.backend(), _devices()
    )
    for line in args.lines.split(","):
        spec = load_spec(line)
        model = compile_model(build_architecture(spec), spec)
        shape = (spec.input.height, spec.input.width, spec.input.channels)
        for batch in sorted({spec.training.batch_size, 32}):
            x, y = _batch(spec, shape, batch)
            # train_on_batch returns the loss as a number: the step has finished on the device.
            seconds = _median_seconds(functools.partial(model.train_on_batch, x, y), args.repeats)
            log.info(
                "%s %dx%d train batch %d: %.1f samples/s",
                line, shape[0], shape[1], batch, batch / seconds,
            )  # fmt: skip
        for batch in (1, 8):
            frames = np.random.default_rng(0).uniform(0, 255, (batch, *shape)).astype(np.float32)
            seconds = _median_seconds(
                functools.partial(model.predict_on_batch, frames), args.repeats
            )
            log.info(
                "%s %dx%d predict batch %d: %.2f ms, %.1f frames/s",
                line, shape[0], shape[1], batch, seconds * 1e3, batch / seconds,
            )  # fmt: skip


def _batch(spec, shape: tuple[int, ...], batch: int) -> tuple[np.ndarray, dict]:
    """Random raw-pixel frames and targets: speed does not depend on the values."""
    rng = np.random.default_rng(batch)
    x = rng.uniform(0, 255, (batch, *shape)).astype(np.float32)
    y = {o.name: rng.uniform(-1, 1, (batch, 1)).astype(np.float32) for o in spec.outputs}
    return x, y


def _median_seconds(call, repeats: int) -> float:
    for _ in range(3):  # compile and warm up
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _devices() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(str(d) for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return ", ".join(d.name for d in tf.config.list_logical_devices())


if __name__ == "__main__":
    main()
