"""Benchmark the model lines: demo prediction latency, demo training speed, checkpoint cost.

    .venv/bin/python bench/model_lines.py [--xception]

1. Demo line, one forward pass at batch 1 returning the predictions AND the
   Convcam layer (what the driver runs per frame), as a compiled tf.function,
   against the 1.5 ms budget: ratio = latency / budget (target <= 1.0).
2. Demo line, train steps at its batch size: samples/s, and how many batches
   fit in 15 minutes of training on this machine.
3. Checkpoints: `save_checkpoint` (staging dir, fsync, checksum, rename,
   prune) against a bare `model.save_weights` of the same compiled model in the
   same run: ratio = atomic / bare. `--xception` adds model_0003_xception
   (a ~270 MB file with Adam's state).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.build import build_architecture, compile_model
from models.checkpoints import load_latest_checkpoint, save_checkpoint
from models.spec import load_spec

PREDICTION_BUDGET_MS = 1.5
TRAINING_WINDOW_S = 15 * 60


def main() -> None:
    """Run every measurement and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xception", action="store_true", help="also checkpoint Xception")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    demo = load_spec("model_0000_demo")
    bench_prediction(demo)
    bench_training(demo)
    bench_checkpoint(demo, repeats=10)
    if args.xception:
        bench_checkpoint(load_spec("model_0003_xception"), repeats=3)


def bench_prediction(spec) -> None:
    """Latency of the driver's one pass (outputs + Convcam) at batch 1."""
    model = build_architecture(spec)
    one_pass = keras.Model(
        model.input, {**model.output, "convcam": model.get_layer(spec.convcam).output}
    )
    predict = tf.function(lambda frames: one_pass(frames, training=False))
    shape = (1, spec.input.height, spec.input.width, spec.input.channels)
    frame = tf.constant(np.random.default_rng(0).uniform(0, 255, shape).astype("float32"))
    for _ in range(50):
        predict(frame)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            {name: value.numpy() for name, value in predict(frame).items()}
        rounds.append((time.perf_counter() - start) / 200 * 1000)
    latency = statistics.median(rounds)
    print(
        f"{spec.line}: prediction + Convcam at batch 1: {latency:.3f} ms (median of 5x200), "
        f"budget {PREDICTION_BUDGET_MS} ms, ratio {latency / PREDICTION_BUDGET_MS:.2f}"
    )


def bench_training(spec) -> None:
    """Samples/s of keras train steps on one in-memory batch."""
    model = compile_model(build_architecture(spec), spec)
    batch = spec.training.batch_size
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (batch, spec.input.height, spec.input.width, 3)).astype("float32")
    targets = {name: rng.uniform(-1, 1, (batch, 1)).astype("float32") for name in spec.output_names}
    for _ in range(10):
        model.train_on_batch(frames, targets)
    steps = 100
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(frames, targets)
    step_s = (time.perf_counter() - start) / steps
    print(
        f"{spec.line}: train step at batch {batch}: {step_s * 1000:.1f} ms, "
        f"{batch / step_s:.0f} samples/s, {TRAINING_WINDOW_S / step_s:.0f} batches in 15 min"
    )


def bench_checkpoint(spec, repeats: int) -> None:
    """Atomic checkpoint save against a bare save_weights, plus the load time."""
    model = compile_model(build_architecture(spec), spec)
    model.optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as scratch:
        bare_path = Path(scratch) / "bare.weights.h5"
        bare, atomic = [], []
        for batch in range(1, repeats + 1):
            start = time.perf_counter()
            model.save_weights(str(bare_path))
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            save_checkpoint(model, Path(scratch) / "version", batch, keep=2)
            atomic.append(time.perf_counter() - start)
        size_mb = bare_path.stat().st_size / 1e6
        start = time.perf_counter()
        load_latest_checkpoint(model, Path(scratch) / "version")
        load_s = time.perf_counter() - start
    bare_s, atomic_s = statistics.median(bare), statistics.median(atomic)
    print(
        f"{spec.line}: checkpoint of {size_mb:.0f} MB: atomic save {atomic_s * 1000:.0f} ms vs "
        f"bare save_weights {bare_s * 1000:.0f} ms (ratio {atomic_s / bare_s:.2f}); "
        f"verified load {load_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
