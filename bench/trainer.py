"""Benchmark of the full trainer against a bare compiled train step (issue 4).

    .venv/bin/python bench/trainer.py [--case demo|demo_480|xception|all] [--rounds 5]

For each case, in one process and on the same model:

- bare: `TrainStep` (the trainer's own compiled Keras step) on one in-memory
  batch (the same game frames, decoded once to float32, and targets), no
  data path at all;
- trainer: `Trainer.run` on a real data directory: sample storage (SQLite,
  JPEG frames of the built-in game) -> buffers -> background batch decode ->
  the same `TrainStep` -> TensorBoard, status reports, training period.

Rounds alternate bare and trainer, so a busy machine slows both alike. The
headline ratio is the median bare step time / the median trainer batch time
(the gap between the starts of consecutive steps: a whole loop iteration,
waiting for the next batch included), target >= 0.95; medians keep bursts of
other work on a shared machine out of it. Each round also reports throughputs
over the whole round (amortizing the trainer's log intervals; `run` includes
its start and final checkpoint) and the process CPU time per batch, bare /
trainer, which is what the data path costs where the cores are the limit.

Cases: `demo` is model_0000_demo at batch 32 with frames stored at its input
size (config.toml's [data] 128x72); `demo_480` stores 480x270 frames that the
batch decode shrinks; `xception` is model_0003_xception at batch 4 and
270x480 (slow on a CPU: a few steps per round).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from engine.core.config import Config, load_config
from engine.data.frames import decode_frame, encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from engine.trainer.train_step import TrainStep
from engine.trainer.trainer import Trainer, TrainingRun
from models.registry import Registry
from models.spec import ParameterCounts, load_spec, spec_path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.95
# case -> (line, batch size, stored frame size (w, h), batches per round, warm-up batches)
CASES = {
    "demo": ("model_0000_demo", 32, (128, 72), 100, 20),
    "demo_480": ("model_0000_demo", 32, (480, 270), 100, 20),
    "xception": ("model_0003_xception", 4, (480, 270), 4, 1),
}


def main() -> None:
    """Run the chosen cases and print one JSON line of results each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=(*CASES, "all"), default="all")
    parser.add_argument("--rounds", type=int, default=5, help="bare/trainer round pairs")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    for case in CASES if args.case == "all" else (args.case,):
        print(json.dumps(bench_case(config, case, args.rounds)), flush=True)


def bench_case(config: Config, case: str, rounds: int) -> dict:
    """Alternate bare steps and trainer runs on one model; compare their batch times."""
    line, batch_size, stored_size, batches, warmup = CASES[case]
    spec = load_spec(line)
    with tempfile.TemporaryDirectory() as tmp:
        per_buffer = batch_size // len(config.data.balanced_outputs)
        # A run that stops leaves up to prefetch + 1 drawn batches unused; 5% more for ready.
        runs = rounds + 1
        drawn = warmup + rounds * batches + runs * (config.data.prefetch_batches + 2)
        capacity = math.ceil(per_buffer * drawn / 0.95) + per_buffer
        config = _bench_config(config, Path(tmp), capacity)
        version = _create_version(config, line, batch_size)
        frames = _store(config, stored_size, capacity)
        with Trainer(config, version, streamed=False, seed=1) as trainer:
            x, y = _in_memory_batch(trainer, frames, batch_size)
            clock = _StepClock(trainer.step)
            trainer.step = clock
            _bare(clock.step, x, y, warmup)
            _run(trainer, warmup)
            bare_s, trainer_s, rounds_out = [], [], []
            for _ in range(rounds):
                cpu = time.process_time()
                bare_s += _bare(clock.step, x, y, batches)
                bare_cpu = (time.process_time() - cpu) / batches
                clock.calls.clear()
                cpu, wall = time.process_time(), time.perf_counter()
                result = _run(trainer, batches)
                run_cpu = (time.process_time() - cpu) / batches
                wall = time.perf_counter() - wall
                # Gaps between step starts: a whole loop iteration, waits for a batch included.
                trainer_s += list(np.diff(clock.calls))
                rounds_out.append(
                    {
                        "bare_samples_per_s": round(
                            batch_size * batches / sum(bare_s[-batches:]), 1
                        ),
                        "trainer_samples_per_s": round(result.samples_per_s, 1),
                        "trainer_run_samples_per_s": round(batch_size * batches / wall, 1),
                        "cpu_ratio": round(bare_cpu / run_cpu, 3),
                    }
                )
    bare_ms = statistics.median(bare_s) * 1000
    trainer_ms = float(statistics.median(trainer_s)) * 1000
    ratio = float(bare_ms / trainer_ms)
    return {
        "case": case,
        "model": line,
        "batch": batch_size,
        "model_input": f"{spec.input.width}x{spec.input.height}",
        "stored_frames": f"{stored_size[0]}x{stored_size[1]}",
        "bare_ms_per_batch_median": round(bare_ms, 2),
        "trainer_ms_per_batch_median": round(trainer_ms, 2),
        "bare_samples_per_s": round(batch_size / bare_ms * 1000, 1),
        "trainer_samples_per_s": round(batch_size / trainer_ms * 1000, 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        # Per round: throughputs over the whole round (trainer_run_* includes the run's start
        # and its final checkpoint), and bare / trainer CPU time of the whole process per batch,
        # which shows what the data path costs when the cores, not the step, are the limit.
        "rounds": rounds_out,
    }


class _StepClock:
    """Wraps the trainer's step and notes when each call starts."""

    def __init__(self, step: TrainStep) -> None:
        self.step = step
        self.calls: list[float] = []

    def __call__(self, x: np.ndarray, y: dict) -> None:
        self.calls.append(time.perf_counter())
        self.step(x, y)

    def mean_losses(self) -> dict[str, float]:
        return self.step.mean_losses()


def _bench_config(config: Config, data_dir: Path, capacity: int) -> Config:
    """config.toml with a scratch data dir and buffers that hold every benchmark batch."""
    return msgspec.structs.replace(
        config,
        app=msgspec.structs.replace(config.app, data_dir=str(data_dir)),
        data=msgspec.structs.replace(config.data, buffer_capacity=capacity, ready_threshold=0.05),
    )


def _create_version(config: Config, line: str, batch_size: int) -> str:
    """A version of `line` whose stored spec trains at `batch_size`."""
    text = spec_path(line).read_text(encoding="utf-8")
    if "batch_size = 32" not in text:
        raise SystemExit(f"{line}: expected 'batch_size = 32' in its spec to override")
    text = text.replace("batch_size = 32", f"batch_size = {batch_size}", 1)
    with Registry(config.app.data_dir) as registry:
        return registry.create_version(
            line, spec_toml=text, parameters=ParameterCounts(0, 0, 0)
        ).name


def _store(config: Config, size: tuple[int, int], capacity: int) -> list[bytes]:
    """Fill every buffer's storage with real hood frames of the built-in game; return them."""
    frames = _game_frames(config, 64, size)
    rng = np.random.default_rng(1)
    outputs = config.data.outputs
    path = default_storage_path(config)
    with SampleStorage(path, capacity=capacity) as storage:
        for buffer in config.data.balanced_outputs:
            for start in range(0, capacity, 21):
                samples = tuple(
                    Sample(
                        frame_jpeg=frames[(start + i) % len(frames)],
                        width=size[0],
                        height=size[1],
                        outputs={name: float(rng.uniform(-1, 1)) for name in outputs},
                        speed=20.0,
                        time=0.0,
                        source="bench",
                        episode=0,
                    )
                    for i in range(min(21, capacity - start))
                )
                storage.insert_set(SampleSet(buffer, samples))
    return frames


def _game_frames(config: Config, count: int, size: tuple[int, int]) -> list[bytes]:
    from engine.sim.game import Game

    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    jpegs = []
    for i in range(count * 5):
        game.tick()
        if i % 5 == 0:
            frame = resize_frame(game.render_hood(), size)
            jpegs.append(encode_frame(frame, config.data.jpeg_quality))
    return jpegs


def _in_memory_batch(
    trainer: Trainer, frames: list[bytes], batch_size: int
) -> tuple[np.ndarray, dict]:
    """The same game frames the trainer decodes, decoded once: only the data path differs."""
    rng = np.random.default_rng(0)
    size = (trainer.spec.input.width, trainer.spec.input.height)
    decoded = [decode_frame(frames[i % len(frames)], size=size) for i in range(batch_size)]
    x = np.stack(decoded).astype(np.float32)
    y = {
        name: rng.uniform(-1, 1, batch_size).astype(np.float32)
        for name in trainer.spec.output_names
    }
    return x, y


def _run(trainer: Trainer, batches: int) -> TrainingRun:
    result = trainer.run(max_batches=batches, wait_for_data=False)
    if result.batches != batches:
        raise SystemExit(f"the benchmark's buffers ran dry after {result.batches} batches")
    return result


def _bare(step: TrainStep, x: np.ndarray, y: dict, batches: int) -> list[float]:
    """Seconds per call of the trainer's own compiled step on one in-memory batch."""
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - started)
    step.mean_losses()  # the read the trainer does every log interval
    return times


if __name__ == "__main__":
    main()
