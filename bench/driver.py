"""Benchmark the driver: full-loop PPS against the bare model, Convcam tiling, PPS under training.

    .venv/bin/python bench/driver.py [--seconds 10] [--line model_0003_xception --size 135x240]
    .venv/bin/python bench/driver.py --gpu          # on a GPU machine: Xception at 270x480
    KERAS_BACKEND=jax python bench/driver.py --gpu  # the same where only JAX is installed

1. Loop vs bare: the driver's full loop (capture in its thread, preprocess, one
   pass with the Convcam layer, a Convcam render per prediction, translate,
   pad, overlay JPEGs at [driver] frames_hz) against the bare compiled forward
   pass of the same model, measured in the same run. ratio = loop PPS / bare
   rate (target >= 0.9). Twice: capturing the screen with mss at up to 60 fps
   (a private Xvfb; what the driver itself costs next to a real game, which
   renders elsewhere), and with the built-in game rendered in the driver's
   process at 60 fps (what the demo costs on these cores).
2. Convcam tiling of 2048 kernels (Xception's last layer at 270x480) against
   the 3 ms budget.
3. The demo line's driver while a trainer trains at full speed on the same
   cores, started with the trainer's own process settings ([trainer] nice and
   threads, `engine.trainer.trainer.configure_process`): PPS against the 30 PPS target,
   and against the same driver alone. The game runs at 60 fps so PPS shows the
   headroom beyond 30.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import select
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import keras
import msgspec
import numpy as np

from engine.core.config import CaptureConfig, DriverConfig, UnstuckConfig, load_config
from engine.driver.capture import Capture, MssSource, SimSource
from engine.driver.convcam import render_convcam
from engine.driver.inference import OnePassModel, set_tensorflow_threads
from engine.sim.game import Game

TARGET_RATIO = 0.9
CONVCAM_BUDGET_MS = 3.0
TARGET_PPS = 30.0


def main() -> None:
    """Run the measurements and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each drive")
    parser.add_argument("--line", default="model_0003_xception", help="model line for 1.")
    parser.add_argument("--size", default="135x240", help="HxW input for 1. (default 135x240)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads for 1.")
    parser.add_argument("--gpu", action="store_true", help="only 1., Xception at 270x480")
    args = parser.parse_args()
    config = load_config("config.toml")
    if args.gpu:
        args.size, args.line = "270x480", "model_0003_xception"
    threads = 0 if args.gpu else args.threads
    set_tensorflow_threads(DriverConfig(intra_op_threads=threads, inter_op_threads=threads))
    backend = keras.backend.backend()
    print(f"Keras {keras.__version__} on {backend}, {os.cpu_count()} CPUs, {_gpus()}")
    height, width = (int(part) for part in args.size.split("x"))
    bench_loop_against_bare(config, args.line, height, width, args.seconds)
    if args.gpu:
        return
    bench_convcam_tiling()
    bench_demo_while_training(config, args.seconds)


def bench_loop_against_bare(config, line: str, height: int, width: int, seconds: float) -> None:
    """Full driver loop PPS vs the bare compiled forward pass of the same model."""
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec(line)
    spec = msgspec.structs.replace(
        spec, input=msgspec.structs.replace(spec.input, height=height, width=width)
    )
    model = build_architecture(spec)
    bare_rate = bare_forward_rate(model, height, width, seconds)
    sim = msgspec.structs.replace(config.sim, tick_hz=60.0)
    with private_display() as display:
        if display is None:
            print("  (no Xvfb: the mss figure is skipped)")
        else:
            screen = CaptureConfig(backend="mss", region=(0, 0, 480, 270), max_fps=60.0)
            capture = Capture(MssSource(screen), size=(width, height), max_fps=screen.max_fps)
            summary = drive(config, model, spec, capture, seconds)
            report_loop(f"{line} at {height}x{width}, mss capture", summary, bare_rate)
    source = SimSource(Game(msgspec.structs.replace(sim, window="off"), seed=3))
    capture = Capture(source, size=(width, height), max_fps=sim.tick_hz)
    summary = drive(config, model, spec, capture, seconds)
    report_loop(f"{line} at {height}x{width}, built-in game at 60 fps", summary, bare_rate)


def bare_forward_rate(model, height: int, width: int, seconds: float) -> float:
    """Calls per second of the model's compiled forward pass on one constant frame, outputs copied
    to the host: on TensorFlow a tf.function, elsewhere Keras' compiled predict_on_batch."""
    frame = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda frames: model(frames, training=False))
        constant = tf.constant(frame)

        def bare() -> None:
            {name: value.numpy() for name, value in compiled(constant).items()}
    else:

        def bare() -> None:
            model.predict_on_batch(frame)

    for _ in range(5):
        bare()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        bare()
        calls += 1
    return calls / (time.perf_counter() - started)


def _gpus() -> str:
    """The GPUs the Keras backend sees, for the header line."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    if backend == "jax":
        import jax

        return f"devices: {', '.join(str(d) for d in jax.devices())}"
    return "backend devices not listed"


def report_loop(what: str, summary, bare_rate: float) -> None:
    """One line: loop PPS, its parts, and the ratio to the bare forward pass."""
    print(
        f"{what}: full loop {summary.pps:.1f} PPS (Convcam {summary.convcam_ms:.2f} ms per "
        f"prediction, {summary.fps:.0f} fps captured) vs bare forward pass {bare_rate:.1f}/s: "
        f"ratio {summary.pps / bare_rate:.2f} (target >= {TARGET_RATIO})"
    )


@contextlib.contextmanager
def private_display() -> Iterator[str | None]:
    """An Xvfb on a random display for the mss capture, DISPLAY set to it; None without Xvfb."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    number = random.randrange(1000, 60000)
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-displayfd", str(write_end), "-screen", "0", "1024x768x24"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    previous = os.environ.get("DISPLAY")
    try:
        ready, _, _ = select.select([read_end], [], [], 20.0)
        if not ready or not os.read(read_end, 64):
            yield None
            return
        os.environ["DISPLAY"] = f":{number}"
        yield os.environ["DISPLAY"]
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        server.terminate()
        server.wait(timeout=10)
        os.close(read_end)


def bench_convcam_tiling() -> None:
    """Tile 2048 kernels of 9x15 (Xception's block14_sepconv2_act at 270x480)."""
    activations = np.random.default_rng(0).uniform(0, 4, (9, 15, 2048)).astype(np.float32)
    for _ in range(20):
        render_convcam(activations)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(100):
            render_convcam(activations)
        rounds.append((time.perf_counter() - started) / 100 * 1000)
    render_ms = statistics.median(rounds)
    print(
        f"Convcam tiling of 2048 kernels (9x15): {render_ms:.2f} ms (median of 5x100), "
        f"budget {CONVCAM_BUDGET_MS} ms, ratio {render_ms / CONVCAM_BUDGET_MS:.2f}"
    )


def bench_demo_while_training(config, seconds: float) -> None:
    """The demo driver alone, then next to a trainer training at full speed."""
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec("model_0000_demo")
    model = build_architecture(spec)
    sim = msgspec.structs.replace(config.sim, tick_hz=60.0, window="off")

    def game_capture() -> Capture:
        source = SimSource(Game(sim, seed=3))
        return Capture(source, size=(spec.input.width, spec.input.height), max_fps=sim.tick_hz)

    alone = drive(config, model, spec, game_capture(), seconds)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    trainer = context.Process(target=train_at_full_speed, args=(config, stop), daemon=True)
    trainer.start()
    time.sleep(8.0)  # TensorFlow start-up and the first steps, so the cores are really shared
    try:
        busy = drive(config, model, spec, game_capture(), seconds)
    finally:
        stop.set()
        trainer.join(timeout=30)
    print(
        f"model_0000_demo driver at a 60 fps game: alone {alone.pps:.1f} PPS; while the trainer "
        f"trains (nice {config.trainer.nice}, threads {config.trainer.threads or 'all'}) "
        f"{busy.pps:.1f} PPS, {busy.frames_dropped} frames dropped: target >= {TARGET_PPS:.0f}, "
        f"ratio {busy.pps / TARGET_PPS:.2f}"
    )


def train_at_full_speed(config, stop) -> None:
    """A trainer process: the demo line's train steps on random batches, as fast as it can."""
    from engine.trainer.trainer import configure_process

    configure_process(config.trainer)
    from models.build import build_architecture, compile_model
    from models.spec import load_spec

    spec = load_spec("model_0000_demo")
    model = compile_model(build_architecture(spec), spec)
    rng = np.random.default_rng(0)
    batch = spec.training.batch_size
    frames = rng.uniform(0, 255, (batch, spec.input.height, spec.input.width, 3)).astype("float32")
    targets = {name: rng.uniform(-1, 1, (batch, 1)).astype("float32") for name in spec.output_names}
    steps, started = 0, time.perf_counter()
    while not stop.is_set():
        model.train_on_batch(frames, targets)
        steps += 1
    elapsed = time.perf_counter() - started
    print(f"  (trainer: {steps} steps, {steps * batch / elapsed:.0f} samples/s)")


@dataclass
class StaticWeights:
    """Weights that never change: the bench measures speed, not learning."""

    version: str
    batch: int = 0

    def reload_latest(self) -> None:
        """Nothing newer to load."""


def drive(config, model, spec, capture: Capture, seconds: float):
    """Run the real driver loop on `capture` for `seconds`; its summary."""
    from engine.driver.controller import SimController, Translator
    from engine.driver.driver import Driver, DriverParts
    from engine.driver.unstuck import AlertOnly, StuckWatch

    # A pad into a game nobody ticks: sending costs what it costs, nothing moves.
    idle_game = getattr(capture.source, "game", None) or Game(config.sim, seed=3)
    parts = DriverParts(
        capture=capture,
        model=OnePassModel(model, spec.output_names, (spec.convcam,)),
        translator=Translator(config.controller),
        controller=SimController(idle_game),
        watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
        unstuck=AlertOnly(),
        weights=StaticWeights(spec.line),
    )
    driver = Driver(parts, config.driver)
    with capture:
        first = capture.next_frame(after=-1, timeout=60.0)
        capture.next_frame(after=first.index, timeout=60.0)
        return driver.run(seconds)


if __name__ == "__main__":
    main()
