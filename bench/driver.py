"""Benchmark the driver: full-loop PPS against the bare model, Convcam tiling, PPS under training.

    .venv/bin/python bench/driver.py [--seconds 10] [--line model_0003_xception --size 135x240]
    .venv/bin/python bench/driver.py --gpu          # on a GPU machine: Xception at 270x480
    KERAS_BACKEND=jax python bench/driver.py --gpu  # the same where only JAX is installed
    .venv/bin/python bench/driver.py --keyboard [--threads 1] [--line L] [--max-fps N]  # only 4.
    .venv/bin/python bench/driver.py --stages [--threads 1] [--line L] [--tick-hz 30]  # only 5.
    .venv/bin/python bench/driver.py --window-latency [--threads 1] [--line L] [--tick-hz 30]  # 6.
    .venv/bin/python bench/driver.py --engine openvino [--size 270x480] [--threads 2]  # only 7.
    .venv/bin/python bench/driver.py --engine openvino --precision int8 [--samples-db PATH]
    .venv/bin/python bench/driver.py --engine openvino --precision int8 --in-flight 2
        [--version model_0000_demo_v1 --data DIR] [--no-swap | --gate-only]  # a trained version

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
4. The keyboard path (issue 13), with --keyboard: the built-in game as a real
   game would run, a separate process (`charles-stream sim`) showing its views
   in windows on a private Xvfb, and the driver wired by `open_driver_parts`
   with `[driver] game = "builtin"`: the game's hood window captured through
   mss (`WindowSource`), keys pressed through XTest (`KeyboardController` with
   the profile's PWM timing). The model is the demo line unless --line.
   a. PPS: the loop against the bare compiled forward pass of the same model,
      measured in the same run while the game runs (ratio target >= 0.9, as
      for the pad in 1.); the bare rate with the game stopped is shown too.
      A model faster than the capture's max_fps (the demo line) cannot reach
      that ratio, so the line also gives PPS against min(bare, max_fps).
   b. Key latency: drives in which the steering of the driver's sends is
      replaced by -1.0 and 0.0 alternately, 20-40 ms apart (throttle stays the
      model's), so each such send moves the Left key; a decision ends when
      another process polling XQueryKeymap sees the key's new state (the
      method of bench/keyboard.py). Target p95 <= 2 ms; the bare XTest request
      timed the same way on the same server, just after the loop, is the limit
      in the same run. Also shown: decision -> send() returned (its XTest
      request and the sync round trip done), timed in the deciding thread, in
      that drive and in one before it without the observer (whose polling
      takes a whole core).
   --threads 1 gives the real driver's TensorFlow threads ([driver]).
5. Time per stage, what timing costs, decision latency (issue 15), with
   --stages or after 1.-3.; the model is the demo line unless --line.
   a. The loop's p50/p95 per stage (`engine.driver.stage_times`) on the
      built-in game in the driver's process at the stream's rate
      ([sim] tick_hz, or --tick-hz), every stage of a turn; 1. prints them too.
   b. Timing's own cost: a lap's ns against a no-op lap's, a status's
      percentiles; and the loop's PPS with timing against the same loop with
      `NoStageTimes`, in one run, drives alternated (ABBA) x 4, on frames that
      are ready at once (no capture thread, no game: the loop as fast as it can
      turn, where timing would show most). ratio = timed PPS / no-op PPS of
      neighbouring drives; their median.
   c. Decision latency, the game's frame drawn -> the controls from it
      applied by the game: the game (a `Game` subclass here) stamps each hood
      frame's tick and wall time when drawn and each tick that applies a new
      decision; the controller stamps which frame each decision came from
      (the frame the loop last took). p50/p95 in ms and in game ticks, split
      into drawn -> taken by the loop, taken -> sent to the game, sent ->
      applied (the game's next tick); next to the physical floor, one frame
      time plus the bare forward pass.
6. Decision latency of the game in its own window, with --window-latency: the
   game runs as in 4. (`charles-stream sim` on a private Xvfb, its hood window
   captured through mss, keys through XTest), with `--latency-marker`: each
   hood frame shows its number in its corner and the game logs when each
   frame was on screen and when it read each key event (engine/sim/marker.py).
   As in 4.b, the driver's steering is replaced by Left held or released
   every 20-40 ms (`MarkerProbe`, in the controller stage, after the model's
   pass on the frame); each such decision is known by the number read from
   the frame the loop took. A decision's latency runs from its frame shown
   (the game's log) to the game reading the key (its log): one clock,
   `time.monotonic()` (CLOCK_MONOTONIC, shared by the processes). p50/p95 in
   ms and in game frames (1 = the frame after the drawn one is the first
   that can show the car react), split into drawn -> captured (mss), captured
   -> taken by the loop, taken -> sent (preprocess, predict, translate, the
   XTest request and its sync), sent -> read by the game (its next event
   poll); next to the physical floor, one frame time plus the bare forward
   pass measured with the game running.
7. Inference engines (issue 18), with --engine NAME (auto, tensorflow,
   openvino, onnxruntime): model_0003_xception (or --line) at 270x480 (or
   --size) converted for the engine with --threads prediction threads.
   a. Conversion: seconds to convert and compile, and how far the heads and
      the Convcam are from TensorFlow's on a game frame (the tolerances).
   b. Loop vs bare: the full driver loop (the built-in game rendered in the
      driver's process, captured at its [sim] tick_hz of 30 fps, preprocess,
      the one pass on the engine, a Convcam render per prediction,
      translate, pad, status and overlay JPEGs) against the bare engine call
      (the compiled model's infer on one constant frame, outputs copied out)
      in the same run: PPS >= 30 and ratio >= 0.9. Then the same with the
      game at 60 fps (what the loop could do). Then with a screen captured
      through mss at 30 fps on a private Xvfb instead of the built-in game:
      what the driver costs beside a real game, which renders in its own
      process (the acceptance's loop: capture, preprocess, pass, Convcam,
      translate, controller, reports). With --in-flight 2 ([driver]
      predictions_in_flight) both run two frames at once on two OpenVINO
      streams: the bare rate is that pipeline's, on the same constant frame.
   With --precision bf16|int8 ([driver] precision) the f32 model is then
   reduced (bf16 compiled, or int8 quantized with NNCF on recorded frames of
   --samples-db) and its heads compared with f32's on held-back recorded
   frames: a.'s line gives the mean and max difference and whether the
   reduced model passed the gate (if not, f32 is what b. and c. measure).
   c. Checkpoint swap: in a running loop (game at 30 fps), a checkpoint is
      written and offered; times from written to the conversion starting
      (the next reload check: [driver] reload_interval_s set to 1 s here),
      to the converted model predicting (a child process converts, this one
      compiles and checks), and the loop's PPS, longest turn and dropped
      frames while it converts, against the --seconds of driving before.
   d. With --beside-trainer: the demo line's driver ([driver] threads, the
      game at 60 fps) on TensorFlow and on the engine, each while a trainer
      trains at full speed with its own process settings (as in 3.): PPS and
      the trainer's samples/s, TensorFlow's driver first, in the same run.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import functools
import itertools
import multiprocessing
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import msgspec
import numpy as np

from engine.core.config import CaptureConfig, DriverConfig, UnstuckConfig, load_config
from engine.core.wire import DRIVER_STAGES, DriverStage, StageTime
from engine.data.frames import resize_frame
from engine.data.storage import default_storage_path
from engine.driver.capture import Capture, Frame, MssSource, SimSource
from engine.driver.controller import Controller, GamepadState
from engine.driver.convcam import render_convcam
from engine.driver.engines import ENGINE_CHOICES, Tolerance, check_parity
from engine.driver.inference import OnePassModel, set_tensorflow_threads
from engine.driver.precision import PRECISIONS, RECORDED_FRAMES, recorded_split
from engine.driver.stage_times import NoStageTimes, StageTimes
from engine.sim.game import NEUTRAL, Controls, Game

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.keyboard's key observer

TARGET_RATIO = 0.9
CONVCAM_BUDGET_MS = 3.0
TARGET_PPS = 30.0
TARGET_KEY_P95_MS = 2.0
REPO = Path(__file__).resolve().parents[1]
# The game's hood (480x270) and chase (1280x720) windows side by side, as on a desktop.
GAME_SCREEN = (1920, 1080)
GAME_START_S = 60.0


def main() -> None:
    """Run the measurements and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each drive")
    parser.add_argument(
        "--line", default=None, help="model line for 1. (model_0003_xception) or 4. (demo)"
    )
    parser.add_argument("--size", default=None, help="HxW input (1.: 135x240; 4.: the line's own)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads for 1. and 4.")
    parser.add_argument("--gpu", action="store_true", help="only 1., Xception at 270x480")
    parser.add_argument("--keyboard", action="store_true", help="only 4., the keyboard path")
    parser.add_argument(
        "--max-fps", type=float, default=None, help="4.: capture.max_fps (default: config's)"
    )
    parser.add_argument("--stages", action="store_true", help="only 5., time per stage")
    parser.add_argument(
        "--tick-hz",
        type=float,
        default=None,
        help="5. and 6.: the game's rate (default: [sim] tick_hz)",
    )
    parser.add_argument(
        "--window-latency",
        action="store_true",
        help="only 6., decision latency of the game in its own window (marker pixels)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=None,
        help="only 7., the driver on this inference engine: loop vs bare call, checkpoint swap",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="f32",
        help="with --engine openvino: reduced precision, gated on held-back recorded frames",
    )
    parser.add_argument(
        "--samples-db",
        type=Path,
        default=None,
        help="with --precision: recorded frames (default: <[app] data_dir>/samples/samples.db)",
    )
    parser.add_argument(
        "--recorded",
        type=int,
        default=RECORDED_FRAMES,
        help="with --precision: recorded frames read (the newest quarter held back)",
    )
    parser.add_argument(
        "--version",
        default=None,
        help="with --engine: a trained version (its newest checkpoint, its input size) in --data",
    )
    parser.add_argument("--data", type=Path, default=None, help="with --version: data directory")
    parser.add_argument(
        "--gate-only",
        action="store_true",
        help="with --engine: only 7.a, conversion, parity and the reduced precision's gate",
    )
    parser.add_argument(
        "--no-swap", action="store_true", help="with --engine: skip 7.c, the checkpoint swap"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        choices=(1, 2),
        default=1,
        help="with --engine openvino: [driver] predictions_in_flight (2: two streams)",
    )
    parser.add_argument(
        "--beside-trainer",
        action="store_true",
        help="with --engine: only 7.d, the demo driver on it and on TensorFlow beside a trainer",
    )
    args = parser.parse_args()
    config = load_config("config.toml")
    if args.gpu:
        args.size, args.line = "270x480", "model_0003_xception"
    threads = 0 if args.gpu else args.threads
    set_tensorflow_threads(DriverConfig(intra_op_threads=threads, inter_op_threads=threads))
    backend = keras.backend.backend()
    print(f"Keras {keras.__version__} on {backend}, {os.cpu_count()} CPUs, {_gpus()}")
    if args.keyboard:
        if args.max_fps:
            config = msgspec.structs.replace(
                config, capture=msgspec.structs.replace(config.capture, max_fps=args.max_fps)
            )
        bench_keyboard_path(config, args.line or "model_0000_demo", args.size, args.seconds)
        return
    tick_hz = args.tick_hz or config.sim.tick_hz
    if args.window_latency:
        bench_window_latency(config, args.line or "model_0000_demo", args.seconds, tick_hz)
        return
    if args.engine and args.beside_trainer:
        bench_engines_beside_trainer(config, args.engine, args.seconds)
        return
    if args.engine:
        height, width = (int(part) for part in (args.size or "270x480").split("x"))
        line = args.line or "model_0003_xception"
        samples_db = args.samples_db or default_storage_path(config, args.data)
        trained = None
        if args.version:
            trained = (args.version, args.data or Path(config.app.data_dir))
        reduced = Reduced(
            args.precision,
            samples_db,
            args.recorded,
            swap=not args.no_swap,
            trained=trained,
            gate_only=args.gate_only,
            in_flight=args.in_flight,
        )
        bench_engine(
            config, args.engine, line, (height, width), args.threads, args.seconds, reduced
        )
        return
    if args.stages:
        bench_stages(config, args.line or "model_0000_demo", args.seconds, tick_hz)
        return
    height, width = (int(part) for part in (args.size or "135x240").split("x"))
    bench_loop_against_bare(config, args.line or "model_0003_xception", height, width, args.seconds)
    if args.gpu:
        return
    bench_convcam_tiling()
    bench_demo_while_training(config, args.seconds)
    bench_stages(config, "model_0000_demo", args.seconds, tick_hz)


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
    """One line: loop PPS, its parts, and the ratio to the bare forward pass; then its stages."""
    print(
        f"{what}: full loop {summary.pps:.1f} PPS (Convcam {summary.convcam_ms:.2f} ms per "
        f"prediction, {summary.fps:.0f} fps captured) vs bare forward pass {bare_rate:.1f}/s: "
        f"ratio {summary.pps / bare_rate:.2f} (target >= {TARGET_RATIO})"
    )
    print(
        "  stages p50 / p95 ms: "
        + ", ".join(
            f"{stage} {took.p50_ms:.2f} / {took.p95_ms:.2f}"
            for stage, took in summary.stages.items()
        )
    )


@contextlib.contextmanager
def private_display(size: tuple[int, int] = (1024, 768)) -> Iterator[str | None]:
    """An Xvfb on a random display for the mss capture, DISPLAY set to it; None without Xvfb."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    number = random.randrange(1000, 60000)
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [
            "Xvfb",
            f":{number}",
            "-displayfd",
            str(write_end),
            "-screen",
            "0",
            f"{size[0]}x{size[1]}x24",
        ],
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


def train_at_full_speed(config, stop, rates=None, measuring=None) -> None:
    """A trainer process: the demo line's train steps on random batches, as fast as it can.

    Its samples/s go to `rates` (a queue) when given, else to stdout; counted from when
    `measuring` (an event) is set, when given.
    """
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
    waiting = measuring is not None
    while not stop.is_set():
        if waiting and measuring.is_set():
            steps, started, waiting = 0, time.perf_counter(), False
        model.train_on_batch(frames, targets)
        steps += 1
    elapsed = time.perf_counter() - started
    if rates is not None:
        rates.put(steps * batch / elapsed)
        return
    print(f"  (trainer: {steps} steps, {steps * batch / elapsed:.0f} samples/s)")


def bench_keyboard_path(config, line: str, size: str | None, seconds: float) -> None:
    """4. The driver on the built-in game's window (mss) with XTest keys: PPS and key latency.

    The game is a separate process on a private Xvfb, as a real game would be: it
    takes its share of the cores, and the driver sees only its window's pixels.
    """
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec(line)
    if size:
        height, width = (int(part) for part in size.split("x"))
        spec = msgspec.structs.replace(
            spec, input=msgspec.structs.replace(spec.input, height=height, width=width)
        )
    height, width = spec.input.height, spec.input.width
    model = build_architecture(spec)
    alone_rate = bare_forward_rate(model, height, width, seconds)
    with private_display(GAME_SCREEN) as display, tempfile.TemporaryDirectory() as root:
        if display is None:
            print("  (no Xvfb: the keyboard path is skipped)")
            return
        game = start_game(display, Path(root))
        try:
            # The limit under the same load as the loop: the game running on the same cores.
            bare_rate = bare_forward_rate(model, height, width, seconds)
            pps, latency = drive_keyboard(config, BenchModel(line, spec, model), seconds)
        finally:
            game.terminate()
            game.wait(timeout=10)
    summary = pps.summary
    # Each prediction needs a new frame: the loop can go no faster than the capture's cap.
    frame_limit = min(bare_rate, config.capture.max_fps)
    print(
        f"{line} at {height}x{width}, keyboard path (the game's window through mss, XTest keys; "
        f"load {pps.load:.1f}): full loop {summary.pps:.1f} PPS ({summary.fps:.0f} fps captured "
        f"at max_fps {config.capture.max_fps:g}, Convcam {summary.convcam_ms:.2f} ms) vs bare "
        f"forward pass {bare_rate:.1f}/s with the game running ({alone_rate:.1f}/s without): "
        f"ratio {summary.pps / bare_rate:.2f} (target >= {TARGET_RATIO}); against "
        f"min(bare, max_fps) = {frame_limit:.1f}: {summary.pps / frame_limit:.2f}"
    )
    print(
        f"key latency, driver decision -> X server (load {latency.load:.1f}; "
        f"{latency.decisions} decisions while the loop ran at {latency.summary.pps:.1f} PPS "
        "and a second process polled the keymap):"
    )
    for what, values in (
        ("driver, seen by the observer", latency.driver_ms),
        ("bare XTest, seen by the observer (limit)", latency.bare_ms),
        ("driver, until send() returned", latency.driver_send_ms),
        ("bare XTest, until sync() returned", latency.bare_send_ms),
        (f"no observer (load {latency.quiet_load:.1f}): send() returned", latency.quiet_send_ms),
    ):
        p95 = _percentile(values, 95)
        print(
            f"  {what:42s} p50 {_percentile(values, 50):.3f}  p95 {p95:.3f}  max "
            f"{max(values, default=float('nan')):.3f} ms  ({len(values)} seen): p95 / "
            f"{TARGET_KEY_P95_MS:.0f} ms target {p95 / TARGET_KEY_P95_MS:.2f} "
            f"({'met' if p95 <= TARGET_KEY_P95_MS else 'MISSED'})"
        )
    print(
        "  driver / bare p95, as the observer saw them: "
        f"{_percentile(latency.driver_ms, 95) / _percentile(latency.bare_ms, 95):.2f}"
    )


@dataclass
class BenchModel:
    """A built, untrained model shaped like a loaded version, for `open_driver_parts`."""

    version: str
    spec: object
    model: object
    batch: int = 0

    def reload_latest(self) -> None:
        """No checkpoints to load: the bench measures speed, not learning."""


@dataclass
class KeyboardDrive:
    """One drive of the keyboard path: its summary and the load average when it ended."""

    summary: object
    load: float


@dataclass
class KeyLatency:
    """Decision -> X server latencies (ms): the driver's, and the bare XTest request's."""

    summary: object
    load: float
    decisions: int
    driver_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    # Decision -> the request's sync returned, in the deciding thread (no observer in it).
    driver_send_ms: list[float] = field(default_factory=list)
    bare_send_ms: list[float] = field(default_factory=list)
    # The same for a drive without the observer, and the load average after it.
    quiet_send_ms: list[float] = field(default_factory=list)
    quiet_load: float = 0.0


def start_game(
    display: str, root: Path, *flags: str, tick_hz: float | None = None
) -> subprocess.Popen[bytes]:
    """`charles-stream sim` in its windows on `display`, returned once its hood window is up.

    `flags` go to `sim` as they are; `tick_hz` sets the game's [sim] tick_hz.
    """
    from engine.core.errors import DeviceError
    from engine.games.profile import load_profile
    from engine.games.window import find_window

    game_config = root / "config.toml"
    rate = f"tick_hz = {tick_hz}\n" if tick_hz is not None else ""
    game_config.write_text(f'[sim]\nwindow = "on"\n{rate}', encoding="utf-8")
    command = [sys.executable, "-m", "engine.cli", "sim", "--seed", "3", *flags]
    game = subprocess.Popen(
        [*command, "--config", str(game_config)],
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = load_profile("builtin").window_target()
    deadline = time.monotonic() + GAME_START_S
    while True:
        try:
            find_window(target, display)
            break
        except DeviceError:
            if game.poll() is not None or time.monotonic() > deadline:
                game.kill()
                game.wait()
                raise
            time.sleep(0.2)
    time.sleep(1.0)  # the window exists a moment before the game draws into it
    return game


def drive_keyboard(config, loaded: BenchModel, seconds: float) -> tuple[KeyboardDrive, KeyLatency]:
    """Drive the game window as `charles-stream drive --game builtin` would, three times.

    First as is, for PPS; then with a `KeyProbe` in front of the keyboard, timing
    each decision until its send() returned; then the same with a keymap
    observer running, for the latency the X server shows. The observer's polling
    takes a whole core, so it stays out of the first two drives.
    """
    from bench.keyboard import watch_keys
    from engine.driver.driver import Driver, open_driver_parts

    driving = msgspec.structs.replace(
        config,
        driver=msgspec.structs.replace(config.driver, game="builtin"),
        # No unstuck (an R press and its 0.15 s hold) in the middle of a measurement.
        unstuck=UnstuckConfig(window_s=600.0, offroad_s=0.0),
    )
    with open_driver_parts(driving, loaded) as parts:
        first = parts.capture.next_frame(after=-1, timeout=60.0)
        parts.capture.next_frame(after=first.index, timeout=60.0)
        summary = Driver(parts, driving.driver).run(seconds)
        pps = KeyboardDrive(summary, os.getloadavg()[0])
        quiet = KeyProbe(parts.controller)
        parts.controller = quiet
        Driver(parts, driving.driver).run(seconds)
        quiet_load = os.getloadavg()[0]
        parts.controller = quiet.keys

        context = multiprocessing.get_context("spawn")
        results, sink = context.Pipe(duplex=False)
        stop, ready = context.Event(), context.Event()
        display = os.environ["DISPLAY"]
        watcher = context.Process(target=watch_keys, args=(display, ready, stop, sink))
        watcher.start()
        try:
            ready.wait(timeout=120.0)
            probe = KeyProbe(parts.controller)
            parts.controller = probe
            summary = Driver(parts, driving.driver).run(seconds)
            load = os.getloadavg()[0]
            parts.controller = probe.keys  # neutral and released by open_driver_parts
            bare_send_ms: list[float] = []
            bare = bare_xtest_decisions(display, seconds, bare_send_ms)
        finally:
            stop.set()
            transitions = results.recv() if watcher.is_alive() or results.poll() else []
            watcher.join(timeout=30)
    return pps, KeyLatency(
        summary,
        load,
        len(probe.decisions),
        key_latencies_ms(probe.decisions, transitions),
        key_latencies_ms(bare, transitions),
        probe.send_ms,
        bare_send_ms,
        quiet.send_ms,
        quiet_load,
    )


class KeyProbe(Controller):
    """The driver's keyboard, with steering replaced by decisions that each move the Left key.

    Every 20-40 ms the next send from the driver's loop holds Left (steering -1.0)
    or lets it go (0.0), and is stamped just before the keyboard gets it; the
    throttle stays the model's. Between those, sends keep the same steering, so
    the PWM never moves Left on its own.
    """

    def __init__(self, keys: Controller) -> None:
        self.keys = keys
        self.decisions: list[tuple[float, bool]] = []
        # Decision -> send returned: the key event and a sync round trip are done by then.
        self.send_ms: list[float] = []
        self._down = False
        self._next = 0.0

    def send(self, state: GamepadState) -> None:
        """Pass the state on; at a decision time, with Left flipped and the time stamped."""
        decided = time.monotonic()
        flip = decided >= self._next
        if flip:
            self._down = not self._down
            self._next = decided + random.uniform(0.02, 0.04)
        self.keys.send(dataclasses.replace(state, steering=-1.0 if self._down else 0.0))
        if flip:
            self.decisions.append((decided, self._down))
            self.send_ms.append((time.monotonic() - decided) * 1000.0)

    def neutral(self) -> None:
        """Release every key; the next decision presses Left again."""
        self.keys.neutral()
        self._down, self._next = False, 0.0


def bare_xtest_decisions(
    display: str, seconds: float, send_ms: list[float]
) -> list[tuple[float, bool]]:
    """The limit: Left pressed and released by a bare XTest request + sync, 20-40 ms apart.

    Appends each request's time until its sync returned to `send_ms`.
    """
    from Xlib import XK, X
    from Xlib.display import Display
    from Xlib.ext import xtest

    connection = Display(display)
    left = connection.keysym_to_keycode(XK.string_to_keysym("Left"))
    decisions: list[tuple[float, bool]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(random.uniform(0.02, 0.04))
            down = not decisions or not decisions[-1][1]
            decided = time.monotonic()
            xtest.fake_input(connection, X.KeyPress if down else X.KeyRelease, left)
            connection.sync()
            send_ms.append((time.monotonic() - decided) * 1000.0)
            decisions.append((decided, down))
        if decisions[-1][1]:
            xtest.fake_input(connection, X.KeyRelease, left)
            connection.sync()
        time.sleep(0.05)  # the observer's last polls
    finally:
        connection.close()
    return decisions


def key_latencies_ms(
    decisions: list[tuple[float, bool]], transitions: list[tuple[float, str, bool]]
) -> list[float]:
    """Per decision, ms until the observer saw Left change; only when the first change after
    the decision is the wanted one (anything else counts as not seen)."""
    changes = [(when, down) for when, name, down in transitions if name == "Left"]
    times = [when for when, _ in changes]
    latencies = []
    for decided, wanted in decisions:
        index = bisect.bisect_left(times, decided)
        if index < len(changes) and changes[index][1] == wanted:
            latencies.append((changes[index][0] - decided) * 1000.0)
    return latencies


def _percentile(values: list[float], percent: int) -> float:
    """The percent-th percentile; NaN without values (nothing was seen)."""
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100)[percent - 1]


@dataclass
class StaticWeights:
    """Weights that never change: the bench measures speed, not learning."""

    version: str
    batch: int = 0

    def reload_latest(self) -> None:
        """Nothing newer to load."""


def drive(
    config,
    model,
    spec,
    capture: Capture,
    seconds: float,
    *,
    controller: Controller | None = None,
    stage_times: StageTimes | None = None,
    one_pass: OnePassModel | None = None,
):
    """Run the real driver loop on `capture` for `seconds`; its summary.

    The pad goes to `controller`, by default a `SimController` of the capture's game
    (or of a game nobody ticks: sending costs what it costs, nothing moves). The
    model runs as `one_pass` when given (another engine), else on TensorFlow.
    """
    from engine.driver.controller import SimController, Translator
    from engine.driver.driver import Driver, DriverParts
    from engine.driver.unstuck import AlertOnly, StuckWatch

    if controller is None:
        source = getattr(capture, "source", None)
        idle_game = getattr(source, "game", None) or Game(config.sim, seed=3)
        controller = SimController(idle_game)
    parts = DriverParts(
        capture=capture,
        model=one_pass or OnePassModel(model, spec.output_names, (spec.convcam,)),
        translator=Translator(config.controller),
        controller=controller,
        watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
        unstuck=AlertOnly(),
        weights=StaticWeights(spec.line),
    )
    driver = Driver(parts, config.driver, stage_times=stage_times)
    with capture:
        first = capture.next_frame(after=-1, timeout=60.0)
        capture.next_frame(after=first.index, timeout=60.0)
        return driver.run(seconds)


# -- 5. time per stage, timing's own cost, decision latency ---------------------------------


def bench_stages(config, line: str, seconds: float, tick_hz: float) -> None:
    """5. The loop's time per stage, what timing it costs, and the decision latency."""
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec(line)
    model = build_architecture(spec)
    height, width = spec.input.height, spec.input.width
    bare_rate = bare_forward_rate(model, height, width, seconds)
    sim = msgspec.structs.replace(config.sim, tick_hz=tick_hz, window="off")
    what = f"{line} at {height}x{width}"

    # a. and c.: the loop as the stream runs it, with a game that stamps frames and decisions.
    game = StampedGame(sim, seed=3)
    capture = NotingCapture(SimSource(game), size=(width, height), max_fps=sim.tick_hz)
    summary = drive(
        config, model, spec, capture, seconds, controller=StampedController(game, capture)
    )
    load = os.getloadavg()[0]
    print(
        f"{what}, built-in game in the driver's process at {tick_hz:g} fps (load {load:.1f}): "
        f"{summary.pps:.1f} PPS, {summary.fps:.0f} fps captured"
    )
    print_stage_table(summary.stages, summary.pps)

    # b. timing's own cost.
    lap_ns, noop_lap_ns = lap_cost_ns(StageTimes()), lap_cost_ns(NoStageTimes())
    per_turn_us = len(DRIVER_STAGES) * (lap_ns - noop_lap_ns) / 1000
    turn_ms = 1000 / summary.pps if summary.pps else float("nan")
    print(
        f"timing's own cost: a lap {lap_ns:.0f} ns (a no-op lap {noop_lap_ns:.0f} ns; best of "
        f"5 x 200,000), "
        f"{len(DRIVER_STAGES)} laps a turn: {per_turn_us:.2f} us a turn = "
        f"{per_turn_us / 1000 / turn_ms:.5%} of this loop's {turn_ms:.1f} ms turn; a status's "
        f"percentiles (every stage's window full) {summary_cost_us():.0f} us, "
        f"{config.driver.status_hz:g} statuses/s"
    )
    timed, untimed = ready_frames_pps(config, model, spec, seconds)
    # Each timed drive against the no-op drive next to it in time (ABBA): drift cancels.
    ratios = [with_timing / without for with_timing, without in zip(timed, untimed, strict=True)]
    print(
        f"  loop on frames ready at once (load {os.getloadavg()[0]:.1f}), (ABBA) x 4 drives of "
        f"{seconds / 2:g} s: "
        f"with timing {', '.join(f'{pps:.1f}' for pps in timed)} PPS; with a no-op timer "
        f"{', '.join(f'{pps:.1f}' for pps in untimed)} PPS; ratio per neighbouring pair "
        f"{', '.join(f'{ratio:.3f}' for ratio in ratios)}: median {statistics.median(ratios):.3f} "
        "(1.0 = free)"
    )

    # c. decision latency.
    report_decision_latency(game, tick_hz, bare_rate, load)


def print_stage_table(stages: dict[DriverStage, StageTime], pps: float) -> None:
    """The stages in loop order, p50 / p95 / turns, and what the p50s add up to."""
    print(f"  {'stage':14s} {'p50 ms':>8s} {'p95 ms':>8s} {'turns':>6s}")
    for stage, took in stages.items():
        print(f"  {stage:14s} {took.p50_ms:8.3f} {took.p95_ms:8.3f} {took.turns:6d}")
    total = sum(took.p50_ms for took in stages.values())
    print(f"  sum of the p50s {total:.2f} ms; a turn at {pps:.1f} PPS lasts {1000 / pps:.2f} ms")


def lap_cost_ns(times: StageTimes, laps: int = 200_000, rounds: int = 5) -> float:
    """ns per `lap`, the best of `rounds` x `laps` (others' load only adds), over the stages."""
    stages = DRIVER_STAGES
    results = []
    for _ in range(rounds):
        mark = times.start()
        started = time.perf_counter_ns()
        for index in range(laps):
            mark = times.lap(stages[index & 7], mark)
        results.append((time.perf_counter_ns() - started) / laps)
    return min(results)


def summary_cost_us(calls: int = 200) -> float:
    """us per `summary()` with every stage's window full (what a status costs to build)."""
    times = StageTimes()
    rng = random.Random(0)
    for stage in DRIVER_STAGES:
        for _ in range(times.window):
            times.record(stage, rng.randrange(10_000, 50_000_000))
    started = time.perf_counter_ns()
    for _ in range(calls):
        times.summary()
    return (time.perf_counter_ns() - started) / calls / 1000


def ready_frames_pps(config, model, spec, seconds: float) -> tuple[list[float], list[float]]:
    """The loop's PPS with timing and with `NoStageTimes`: (ABBA) x 4 drives of `seconds` / 2."""
    image = Game(msgspec.structs.replace(config.sim, window="off"), seed=3).render_hood()
    size = (spec.input.width, spec.input.height)
    timed: list[float] = []
    untimed: list[float] = []
    for with_timing in (True, False, False, True) * 4:
        frames = ReadyFrames(image, resize_frame(image, size))
        stage_times = StageTimes() if with_timing else NoStageTimes()
        summary = drive(config, model, spec, frames, seconds / 2, stage_times=stage_times)
        (timed if with_timing else untimed).append(summary.pps)
    return timed, untimed


class ReadyFrames:
    """A capture whose next frame is always ready: the loop turns as fast as it can."""

    def __init__(self, image: np.ndarray, model_input: np.ndarray) -> None:
        self.image, self.model_input = image, model_input
        self.frames_captured = 0
        self.frames_dropped = 0
        self.fps = 0.0

    def __enter__(self) -> ReadyFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to stop."""

    def next_frame(self, after: int, timeout: float) -> Frame:
        """A new frame (the same pixels) at once."""
        self.frames_captured += 1
        return Frame(self.frames_captured, time.monotonic(), self.image, self.model_input)


@dataclass(frozen=True)
class Decision:
    """One decision's way from its frame to the game, in perf_counter ns and game ticks."""

    frame_tick: int
    drawn_ns: int
    taken_ns: int
    sent_ns: int
    applied_tick: int
    applied_ns: int


class StampedGame(Game):
    """The built-in game, noting when each hood frame is drawn and when a decision is applied.

    Frames are known by the game's tick count when drawn (the sim's frame counter);
    a decision is applied by the first tick after it was set, which is when its
    controls reach the car. Set and tick share a lock, so a decision set while a
    tick runs is counted at the tick that really applies it.
    """

    def __init__(self, config, seed: int | None = None) -> None:
        super().__init__(config, seed=seed)
        self.drawn_ns: dict[int, int] = {}
        self.decisions: list[Decision] = []
        self.superseded = 0
        self._lock = threading.Lock()
        self._pending: tuple[int, int, int] | None = None

    def tick_count(self) -> int:
        """Ticks run so far: the number the next drawn frame is known by."""
        return round(self.time * self.config.tick_hz)

    def render_hood(self) -> np.ndarray:
        """Draw the hood frame and note when it was done."""
        image = super().render_hood()
        self.drawn_ns[self.tick_count()] = time.perf_counter_ns()
        return image

    def decide(self, controls: Controls, frame_tick: int, taken_ns: int) -> None:
        """Set controls decided on the frame drawn at `frame_tick`, taken by the loop at `taken_ns`.

        A decision still pending (set, no tick since) is replaced and counted as superseded.
        """
        with self._lock:
            if self._pending is not None:
                self.superseded += 1  # replaced before any tick applied it
            self.set_controls(controls)
            self._pending = (frame_tick, taken_ns, time.perf_counter_ns())

    def release(self) -> None:
        """Neutral controls, no decision: one still pending is dropped."""
        with self._lock:
            self._pending = None
            self.set_controls(NEUTRAL)

    def tick(self) -> None:
        """One tick; the decision set before it is applied now."""
        with self._lock:
            applied_ns = time.perf_counter_ns()
            pending, self._pending = self._pending, None
            super().tick()
        if pending is not None:
            frame_tick, taken_ns, sent_ns = pending
            drawn_ns = self.drawn_ns.get(frame_tick)
            if drawn_ns is not None:
                self.decisions.append(
                    Decision(frame_tick, drawn_ns, taken_ns, sent_ns, self.tick_count(), applied_ns)
                )


class NotingCapture(Capture):
    """The capture, remembering the frame the loop took last and when: the one it decides on."""

    taken: tuple[Frame, int] | None = None

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The newest frame, as the loop gets it, noted with the time it was taken."""
        frame = super().next_frame(after, timeout)
        if frame is not None:
            self.taken = (frame, time.perf_counter_ns())
        return frame


class StampedController(Controller):
    """The built-in game's pad, telling the game which frame each decision came from."""

    def __init__(self, game: StampedGame, capture: NotingCapture) -> None:
        self._game, self._capture = game, capture

    def send(self, state: GamepadState) -> None:
        """Set the controls, stamped with the frame the loop took last."""
        controls = Controls(steering=state.steering, throttle_brake=state.throttle_brake)
        taken = self._capture.taken
        if taken is None:
            self._game.set_controls(controls)
            return
        frame, taken_ns = taken
        assert frame.telemetry is not None, "the built-in game's frames carry telemetry"
        frame_tick = round(frame.telemetry.time * self._game.config.tick_hz)
        self._game.decide(controls, frame_tick, taken_ns)

    def neutral(self) -> None:
        """Release the controls (no decision of the model's)."""
        self._game.release()


def report_decision_latency(
    game: StampedGame, tick_hz: float, bare_rate: float, load: float
) -> None:
    """p50/p95 of frame drawn -> controls applied, its parts, and the physical floor."""
    decisions = game.decisions[1:]  # the first waited for the model's first call
    ms = [(d.applied_ns - d.drawn_ns) / 1e6 for d in decisions]
    ticks = [d.applied_tick - d.frame_tick for d in decisions]
    frame_ms, forward_ms = 1000 / tick_hz, 1000 / bare_rate
    floor_ms = frame_ms + forward_ms
    print(
        f"decision latency, the game's frame drawn -> its controls applied by the game "
        f"(in-process built-in game at {tick_hz:g} fps, load {load:.1f}; {len(decisions)} "
        f"decisions, {game.superseded} superseded before a tick applied them):"
    )
    print(
        f"  drawn -> applied   p50 {_percentile(ms, 50):.2f}  p95 {_percentile(ms, 95):.2f}  "
        f"max {max(ms, default=float('nan')):.2f} ms; in game ticks p50 "
        f"{_percentile(ticks, 50):.1f}  p95 {_percentile(ticks, 95):.1f} (1 = the next tick, "
        "the soonest a game ticking on its own clock can apply anything)"
    )
    for what, start, end in (
        ("drawn -> taken by the loop", "drawn_ns", "taken_ns"),
        ("taken -> sent to the game", "taken_ns", "sent_ns"),
        ("sent -> applied (next tick)", "sent_ns", "applied_ns"),
    ):
        part = [(getattr(d, end) - getattr(d, start)) / 1e6 for d in decisions]
        print(f"    {what:30s} p50 {_percentile(part, 50):.2f}  p95 {_percentile(part, 95):.2f} ms")
    p50, p95 = _percentile(ms, 50), _percentile(ms, 95)
    print(
        f"  physical floor: one frame {frame_ms:.2f} ms + the bare forward pass {forward_ms:.2f} "
        f"ms ({bare_rate:.0f}/s) = {floor_ms:.2f} ms; p50 / floor {p50 / floor_ms:.2f}, "
        f"p95 / floor {p95 / floor_ms:.2f}"
    )


# -- 6. decision latency of the game in its own window --------------------------------------


def bench_window_latency(config, line: str, seconds: float, tick_hz: float) -> None:
    """6. Frame drawn in the game's window -> the key decided on it read by the game."""
    from engine.sim.marker import read_marker_log
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec(line)
    model = build_architecture(spec)
    height, width = spec.input.height, spec.input.width
    with private_display(GAME_SCREEN) as display, tempfile.TemporaryDirectory() as root:
        if display is None:
            print("  (no Xvfb: the window game's decision latency is skipped)")
            return
        log_path = Path(root) / "marker.jsonl"
        game = start_game(display, Path(root), "--latency-marker", str(log_path), tick_hz=tick_hz)
        try:
            # The floor's forward pass under the same load as the loop: the game running.
            bare_rate = bare_forward_rate(model, height, width, seconds)
            probe, summary, load = drive_marked(config, BenchModel(line, spec, model), seconds)
        finally:
            game.terminate()
            game.wait(timeout=10)
        records = read_marker_log(log_path)
    print(
        f"{line} at {height}x{width}, the game's window at {tick_hz:g} fps through mss "
        f"(max_fps {config.capture.max_fps:g}), XTest keys (load {load:.1f}): "
        f"{summary.pps:.1f} PPS, {summary.fps:.0f} fps captured"
    )
    report_window_latency(window_decisions(probe, records), tick_hz, bare_rate, load)


@dataclass(frozen=True)
class MarkedDecision:
    """A `MarkerProbe` decision: its frame's number, its way to the X server (monotonic s)."""

    number: int | None
    down: bool
    captured: float
    taken: float
    decided: float
    sent: float


@dataclass(frozen=True)
class WindowDecision:
    """A decision the game read: drawn -> captured -> taken -> sent -> read, and frames later."""

    drawn: float
    captured: float
    taken: float
    sent: float
    read: float
    frames: int


@dataclass
class WindowDecisions:
    """What became of the probe's decisions in the game's log."""

    read: list[WindowDecision]
    decisions: int
    unnumbered: int  # the taken frame showed no marker
    superseded: int  # the game never drove with it: it read a later change in the same poll
    unseen: int  # no change of Left in the game's log after it


class TakenFrames:
    """The driver's capture, noting the frame the loop took last and when (time.monotonic)."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.taken: tuple[Frame, float] | None = None

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The capture's next frame, noted."""
        frame = self.capture.next_frame(after, timeout)
        if frame is not None:
            self.taken = (frame, time.monotonic())
        return frame

    def __getattr__(self, name: str) -> object:
        return getattr(self.capture, name)


class MarkerProbe(Controller):
    """The driver's keyboard with steering replaced by Left held or released every 20-40 ms.

    As `KeyProbe`, but each decision also notes the frame the loop decided on: its
    marker number (read after the send, so reading costs the key nothing) and when it
    was captured and taken.
    """

    def __init__(self, keys: Controller, frames: TakenFrames) -> None:
        self.keys, self.frames = keys, frames
        self.decisions: list[MarkedDecision] = []
        self._down = False
        self._next = 0.0

    def send(self, state: GamepadState) -> None:
        """Pass the state on; at a decision time, with Left flipped and the decision noted."""
        from engine.sim.marker import read_marker

        decided = time.monotonic()
        flip = decided >= self._next and self.frames.taken is not None
        if flip:
            self._down = not self._down
            self._next = decided + random.uniform(0.02, 0.04)
        self.keys.send(dataclasses.replace(state, steering=-1.0 if self._down else 0.0))
        if flip:
            sent = time.monotonic()
            frame, taken = self.frames.taken
            self.decisions.append(
                MarkedDecision(
                    read_marker(frame.image), self._down, frame.captured_at, taken, decided, sent
                )
            )

    def neutral(self) -> None:
        """Release every key; the next decision presses Left again."""
        self.keys.neutral()
        self._down, self._next = False, 0.0


def drive_marked(config, loaded: BenchModel, seconds: float) -> tuple[MarkerProbe, object, float]:
    """Drive the marked game's window as `drive --game builtin` would, with a `MarkerProbe`."""
    from engine.driver.driver import Driver, open_driver_parts

    driving = msgspec.structs.replace(
        config,
        driver=msgspec.structs.replace(config.driver, game="builtin"),
        # No unstuck (an R press and its 0.15 s hold) in the middle of a measurement.
        unstuck=UnstuckConfig(window_s=600.0, offroad_s=0.0),
    )
    with open_driver_parts(driving, loaded) as parts:
        first = parts.capture.next_frame(after=-1, timeout=60.0)
        parts.capture.next_frame(after=first.index, timeout=60.0)
        keys, capture = parts.controller, parts.capture
        frames = TakenFrames(capture)
        probe = MarkerProbe(keys, frames)
        parts.capture, parts.controller = frames, probe
        try:
            summary = Driver(parts, driving.driver).run(seconds)
        finally:
            # open_driver_parts stops its own capture and releases its own keys.
            parts.capture, parts.controller = capture, keys
        load = os.getloadavg()[0]
    return probe, summary, load


def window_decisions(probe: MarkerProbe, records) -> WindowDecisions:
    """Each decision matched to the game's log: its frame's showing and its key's reading.

    Only the probe moves Left, one change per decision, so the k-th change of Left the
    game read belongs to the k-th decision (checked: the same direction, read after it
    was decided). The game reads all queued key events at once, once a frame; a change
    undone in the same read never reached the car (superseded).
    """
    from engine.sim.marker import MARKER_BITS

    changes: list[tuple[float, bool]] = []  # (read at, Left down after it)
    for key in records.keys:
        held = changes[-1][1] if changes else False
        if key.key == "left" and key.down != held:
            changes.append((key.at, key.down))
    shown = {number & ((1 << MARKER_BITS) - 1): at for number, at in records.frames.items()}
    shown_times = sorted(records.frames.values())
    read, unnumbered, superseded, unseen = [], 0, 0, 0
    for index, decision in enumerate(probe.decisions):
        change = changes[index] if index < len(changes) else None
        if change is None or change[1] != decision.down or change[0] < decision.decided:
            unseen += 1  # not read, or the log's changes do not line up with the decisions
            continue
        if index == 0:
            continue  # the first waited for the model's first call
        if index + 1 < len(changes) and changes[index + 1][0] == change[0]:
            superseded += 1
            continue
        if decision.number is None or decision.number not in shown:
            unnumbered += 1
            continue
        drawn, read_at = shown[decision.number], change[0]
        # The first frame shown after the read is the first that can show the car react.
        later = bisect.bisect_right(shown_times, read_at) - bisect.bisect_right(shown_times, drawn)
        read.append(
            WindowDecision(
                drawn, decision.captured, decision.taken, decision.sent, read_at, later + 1
            )
        )
    return WindowDecisions(read, len(probe.decisions) - 1, unnumbered, superseded, unseen)


def report_window_latency(
    decisions: WindowDecisions, tick_hz: float, bare_rate: float, load: float
) -> None:
    """p50/p95 of frame drawn -> key read by the game, its parts, and the physical floor."""
    read = decisions.read
    ms = [(d.read - d.drawn) * 1000 for d in read]
    frames = [d.frames for d in read]
    frame_ms, forward_ms = 1000 / tick_hz, 1000 / bare_rate
    floor_ms = frame_ms + forward_ms
    print(
        f"decision latency, the game window's frame drawn -> the key decided on it read by the "
        f"game (load {load:.1f}; {decisions.decisions} decisions: {len(read)} read, "
        f"{decisions.superseded} superseded in the game's read, {decisions.unseen} unseen, "
        f"{decisions.unnumbered} on a frame without a readable marker):"
    )
    print(
        f"  drawn -> read      p50 {_percentile(ms, 50):.2f}  p95 {_percentile(ms, 95):.2f}  "
        f"max {max(ms, default=float('nan')):.2f} ms; in game frames p50 "
        f"{_percentile(frames, 50):.1f}  p95 {_percentile(frames, 95):.1f} (1 = the next frame "
        "is the first that can show it)"
    )
    for what, start, end in (
        ("drawn -> captured (mss)", "drawn", "captured"),
        ("captured -> taken by the loop", "captured", "taken"),
        ("taken -> sent (model, XTest, sync)", "taken", "sent"),
        ("sent -> read by the game", "sent", "read"),
    ):
        part = [(getattr(d, end) - getattr(d, start)) * 1000 for d in read]
        print(f"    {what:34s} p50 {_percentile(part, 50):.2f}  p95 {_percentile(part, 95):.2f} ms")
    p50, p95 = _percentile(ms, 50), _percentile(ms, 95)
    print(
        f"  physical floor: one frame {frame_ms:.2f} ms + the bare forward pass {forward_ms:.2f} "
        f"ms ({bare_rate:.0f}/s, the game running) = {floor_ms:.2f} ms; p50 / floor "
        f"{p50 / floor_ms:.2f}, p95 / floor {p95 / floor_ms:.2f}"
    )


# -- 7. inference engines: loop vs bare engine call, checkpoint swap -------------------------


@dataclass(frozen=True)
class Reduced:
    """7.'s precision ([driver] precision), its recorded frames, and whether to run 7.c."""

    precision: str = "f32"
    samples_db: Path | None = None
    recorded: int = RECORDED_FRAMES
    swap: bool = True
    # A trained version (name, data dir) to measure instead of the line's untrained model.
    trained: tuple[str, Path] | None = None
    # Only 7.a (conversion, parity, the reduced precision's gate): nothing timed after it.
    gate_only: bool = False
    # [driver] predictions_in_flight: 2 = two OpenVINO streams, the loop one frame behind.
    in_flight: int = 1


def bench_engine(
    config,
    engine: str,
    line: str,
    size: tuple[int, int],
    threads: int,
    seconds: float,
    reduced: Reduced = Reduced(),
) -> None:
    """7. The driver on `engine`: conversion, loop vs the bare engine call, checkpoint swap."""
    from engine.driver.inference import LoadedModel
    from models.build import build_architecture
    from models.checkpoints import save_checkpoint
    from models.spec import load_spec

    height, width = size
    spec = load_spec(line)
    spec = msgspec.structs.replace(
        spec, input=msgspec.structs.replace(spec.input, height=height, width=width)
    )
    model = build_architecture(spec)
    what = "untrained"
    if reduced.trained is not None:
        from engine.driver.inference import load_version

        loaded = load_version(reduced.trained[1], reduced.trained[0])
        model, spec = loaded.model, loaded.spec
        line, (height, width) = loaded.version, (spec.input.height, spec.input.width)
        what = f"trained, batch {loaded.batch}"
    print(
        f"7. {line} ({what}) at {height}x{width} on {engine} ({reduced.precision}), "
        f"{threads} prediction threads, {reduced.in_flight} in flight"
    )
    frames = None
    if reduced.precision != "f32" and reduced.samples_db is not None:
        shape = (height, width, 3)
        frames = functools.partial(recorded_split, reduced.samples_db, shape, reduced.recorded)
    started = time.perf_counter()
    one_pass = OnePassModel(
        model,
        spec.output_names,
        (spec.convcam,),
        engine=engine,
        intra_threads=threads,
        inter_threads=1,
        precision=reduced.precision,
        frames=frames,
        in_flight=reduced.in_flight,
    )
    built_s = time.perf_counter() - started
    frame = game_input(config, (width, height))
    # A reduced model is held to its own gate (report_precision), not to the f32 tolerances:
    # its differences from TensorFlow are shown, never raised.
    full = one_pass._engine.precision == "f32"
    heads, maps = check_parity(
        one_pass._reference(frame),
        one_pass._engine.run(frame),
        len(spec.output_names),
        one_pass.tolerance if full else Tolerance(heads=float("inf"), convcam=float("inf")),
    )
    held = "tolerances" if full else f"f32's tolerances, not {one_pass._engine.precision}'s:"
    print(
        f"  a. {one_pass.engine}: converted, compiled and checked in {built_s:.1f} s; on a game "
        f"frame heads differ from TensorFlow's by {heads:.1e}, the Convcam by {maps:.1e} of its "
        f"peak ({held} {one_pass.tolerance.heads:g}, {one_pass.tolerance.convcam:g})"
    )
    if reduced.precision != "f32":
        report_precision(one_pass, reduced)
    if reduced.gate_only:
        return
    for tick_hz in (config.sim.tick_hz, 60.0):
        load = os.getloadavg()[0]
        bare = bare_engine_rate(one_pass, frame, seconds)
        sim = msgspec.structs.replace(config.sim, tick_hz=tick_hz, window="off")
        capture = Capture(SimSource(Game(sim, seed=3)), size=(width, height), max_fps=tick_hz)
        summary = drive(config, model, spec, capture, seconds, one_pass=one_pass)
        print(
            f"  b. game at {tick_hz:.0f} fps (load {load:.2f} before): full loop "
            f"{summary.pps:.1f} PPS ({summary.frames_dropped} of {summary.frames_captured} "
            f"frames dropped) vs bare {one_pass.engine} call {bare:.1f}/s: ratio "
            f"{summary.pps / bare:.2f} (targets >= {TARGET_PPS:.0f} PPS, >= {TARGET_RATIO})"
        )
        print_stages(summary)
    with private_display() as display:
        if display is None:
            print("  b. (no Xvfb: the mss figure is skipped)")
        else:
            load = os.getloadavg()[0]
            bare = bare_engine_rate(one_pass, frame, seconds)
            tick_hz = config.sim.tick_hz
            screen = CaptureConfig(backend="mss", region=(0, 0, width, height), max_fps=tick_hz)
            capture = Capture(MssSource(screen), size=(width, height), max_fps=tick_hz)
            summary = drive(config, model, spec, capture, seconds, one_pass=one_pass)
            print(
                f"  b. screen through mss at {tick_hz:.0f} fps (a real game renders elsewhere; "
                f"load {load:.2f} before): full loop {summary.pps:.1f} PPS "
                f"({summary.frames_dropped} of {summary.frames_captured} frames dropped) vs bare "
                f"{one_pass.engine} call {bare:.1f}/s: ratio {summary.pps / bare:.2f} "
                f"(targets >= {TARGET_PPS:.0f} PPS, >= {TARGET_RATIO})"
            )
            print_stages(summary)
    if not one_pass.converts_checkpoints:
        print("  c. TensorFlow loads new weights in place: no conversion, nothing to swap")
        return
    if not reduced.swap:
        print("  c. skipped (--no-swap)")
        return
    with tempfile.TemporaryDirectory() as directory:
        weights = LoadedModel(spec.line, spec, model, Path(directory), batch=0)
        swap = SwapDrive(config, one_pass, weights, (width, height), seconds)

        def save() -> None:
            save_checkpoint(model, Path(directory), 1, keep=2)

        swap.run(save)
    swap.report()


def report_precision(one_pass: OnePassModel, reduced: Reduced) -> None:
    """7.a for a reduced precision: its heads against f32's on held-back frames, the gate."""
    tolerance = one_pass.precision_tolerance
    limits = f"tolerance mean {tolerance.mean:g}, max {tolerance.max:g}"
    if one_pass.agreement is not None:
        print(
            f"     {one_pass.engine} drives: against f32 on held-back recorded frames of "
            f"{reduced.samples_db}: {one_pass.agreement} ({limits}); made and checked within "
            "the time above"
        )
    else:
        print(f"     REDUCED PRECISION REFUSED, f32 measured below: {one_pass.precision_note}")


def game_input(config, size: tuple[int, int]) -> np.ndarray:
    """A (1, h, w, 3) float32 batch of the built-in game's hood frame at the model's size."""
    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    for _ in range(60):
        game.tick()
    return resize_frame(game.render_hood(), size)[np.newaxis].astype(np.float32)


def bare_engine_rate(one_pass: OnePassModel, frame: np.ndarray, seconds: float) -> float:
    """Calls per second of the engine's compiled model on one constant frame, outputs copied:
    the loop's own call (`CompiledEngine.drive`: two frames in flight where it pipelines)."""
    run = one_pass._engine.drive
    for _ in range(5):
        run(frame)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(frame)
        calls += 1
    return calls / (time.perf_counter() - started)


class SwapDrive:
    """7.c: the driver loop in a thread; a checkpoint written, offered, converted, swapped."""

    def __init__(self, config, one_pass, weights, size, seconds: float) -> None:
        from engine.driver.controller import SimController, Translator
        from engine.driver.driver import Driver, DriverParts
        from engine.driver.unstuck import AlertOnly, StuckWatch

        sim = msgspec.structs.replace(config.sim, window="off")
        source = SimSource(Game(sim, seed=3))
        self.capture = Capture(source, size=size, max_fps=sim.tick_hz)
        self.seconds = seconds
        self.weights = weights
        self.marks: dict[str, float] = {}
        self.turns: list[float] = []  # each turn's end, perf_counter
        self.dropped: dict[str, int] = {}
        self.outcome = None
        self.converted = threading.Event()
        bench = self

        class SwapTimedDriver(Driver):
            def _convert_offered_weights(self, why: str) -> None:
                if self._offered is not None and "conversion" not in bench.marks:
                    bench.marks["conversion"] = time.perf_counter()
                    bench.dropped["conversion"] = bench.capture.frames_dropped
                super()._convert_offered_weights(why)

            def _converted(self, outcome) -> None:
                bench.marks["swapped"] = time.perf_counter()
                bench.dropped["swapped"] = bench.capture.frames_dropped
                bench.outcome = outcome
                super()._converted(outcome)
                bench.converted.set()

        parts = DriverParts(
            capture=self.capture,
            model=one_pass,
            translator=Translator(config.controller),
            controller=SimController(source.game),
            watch=StuckWatch(UnstuckConfig(window_s=600.0, offroad_s=0.0)),
            unstuck=AlertOnly(),
            weights=weights,
        )
        driver_config = msgspec.structs.replace(config.driver, reload_interval_s=1.0)
        self.driver = SwapTimedDriver(
            parts, driver_config, stage_times=TurnEnds(self.turns), sink=lambda message: None
        )

    def run(self, save) -> None:
        """Drive; after `seconds` write a checkpoint with `save`, offer it, wait for the swap."""
        with self.capture:
            first = self.capture.next_frame(after=-1, timeout=60.0)
            self.capture.next_frame(after=first.index, timeout=60.0)
            loop = threading.Thread(target=self.driver.run, name="bench-driver")
            loop.start()
            self.marks["driving"] = time.perf_counter()
            try:
                time.sleep(self.seconds)  # the span before, to compare with
                self.marks["before"] = time.perf_counter()
                self.dropped["before"] = self.capture.frames_dropped
                save()
                self.marks["written"] = time.perf_counter()
                self.driver.offer_weights(self.weights.version, 1, "unused")
                if not self.converted.wait(600.0):
                    print("  c. no swap within 600 s")
                time.sleep(1.0)  # a second on the new model
            finally:
                self.driver.stop()
                loop.join()

    def report(self) -> None:
        """One line: the swap's times, and the loop while converting against before."""
        marks, outcome = self.marks, self.outcome
        if outcome is None or "conversion" not in marks:
            return
        before = self._span(marks["driving"], marks["before"])
        during = self._span(marks["conversion"], marks["swapped"])
        result = "swapped" if outcome.refused is None else f"REFUSED ({outcome.refused})"
        print(
            f"  c. checkpoint swap ({result}, load {os.getloadavg()[0]:.2f}): written in "
            f"{marks['written'] - marks['before']:.2f} s; written -> conversion started "
            f"{marks['conversion'] - marks['written']:.2f} s (the reload check); converted, "
            f"compiled, checked and swapped in {marks['swapped'] - marks['conversion']:.2f} s; "
            f"written -> predicting with it {marks['swapped'] - marks['written']:.2f} s"
        )
        print(
            f"     while converting: {during[0]:.1f} PPS, longest turn {during[1] * 1000:.0f} ms, "
            f"{self.dropped['swapped'] - self.dropped['conversion']} frames dropped; the "
            f"{self.seconds:g} s before: {before[0]:.1f} PPS, longest turn "
            f"{before[1] * 1000:.0f} ms, {self.dropped['before']} frames dropped"
        )

    def _span(self, start: float, end: float) -> tuple[float, float]:
        """PPS and the longest gap between turn ends within [start, end]."""
        ends = [t for t in self.turns if start <= t <= end]
        gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
        return len(ends) / max(end - start, 1e-9), max(gaps, default=float("nan"))


def print_stages(summary) -> None:
    """The loop's p50 / p95 per stage, on one line under its figure."""
    print(
        "     stages p50 / p95 ms: "
        + ", ".join(
            f"{stage} {took.p50_ms:.2f} / {took.p95_ms:.2f}"
            for stage, took in summary.stages.items()
        )
    )


def bench_engines_beside_trainer(config, engine: str, seconds: float) -> None:
    """7.d: the demo driver on TensorFlow, then on `engine`, each beside a training trainer."""
    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec("model_0000_demo")
    model = build_architecture(spec)
    sim = msgspec.structs.replace(config.sim, tick_hz=60.0, window="off")
    driver = config.driver
    context = multiprocessing.get_context("spawn")
    print(f"7.d model_0000_demo driver ({driver.intra_op_threads} thread) beside a trainer")
    for name in ("tensorflow", engine):
        one_pass = OnePassModel(
            model,
            spec.output_names,
            (spec.convcam,),
            engine=name,
            intra_threads=driver.intra_op_threads,
            inter_threads=driver.inter_op_threads,
        )
        stop, rates, measuring = context.Event(), context.Queue(), context.Event()
        trainer = context.Process(target=train_at_full_speed, args=(config, stop, rates, measuring))
        trainer.start()
        time.sleep(8.0)  # TensorFlow start-up and the first steps, so the cores are really shared
        load = os.getloadavg()[0]
        measuring.set()
        try:
            source = SimSource(Game(sim, seed=3))
            capture = Capture(source, size=(spec.input.width, spec.input.height), max_fps=60.0)
            summary = drive(config, model, spec, capture, seconds, one_pass=one_pass)
        finally:
            stop.set()
            samples_per_s = rates.get(timeout=120)
            trainer.join(timeout=30)
        print(
            f"  {one_pass.engine}: {summary.pps:.1f} PPS ({summary.frames_dropped} frames "
            f"dropped), predict p50 {summary.stages['predict'].p50_ms:.2f} ms; trainer "
            f"{samples_per_s:.0f} samples/s (load {load:.2f} before)"
        )


class TurnEnds(StageTimes):
    """Stage times that also note when each turn ends (its report stage), for 7.c."""

    def __init__(self, ends: list[float]) -> None:
        super().__init__()
        self._ends = ends

    def lap(self, stage: DriverStage, mark: int) -> int:
        """A stage ends; the report stage ends a turn."""
        end = super().lap(stage, mark)
        if stage == "report":
            self._ends.append(time.perf_counter())
        return end


if __name__ == "__main__":
    main()
