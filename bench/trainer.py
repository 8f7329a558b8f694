"""Benchmark of the full trainer against a bare compiled train step (issue 4).

    .venv/bin/python bench/trainer.py [--case demo|demo_480|xception|all] [--rounds 3]

For each case, in one process and on the same model:

- bare: `TrainStep` (the trainer's own compiled Keras step) on one in-memory
  batch (float32 numpy frames and targets), no data path at all;
- trainer: `Trainer.run` on a real data directory: sample storage (SQLite,
  JPEG frames of the built-in game) -> buffers -> background batch decode ->
  the same `TrainStep` -> TensorBoard, status reports, training period.

Rounds alternate bare and trainer, so a busy machine slows both alike; each
round gives a ratio trainer samples/s / bare samples/s (target >= 0.95) and
the median round is reported. The trainer's samples/s is the one it reports
itself: batches trained / time in its loop (waits for a batch included; the
run's start and its final checkpoint are not, they are printed separately).

Cases: `demo` is model_0000_demo at batch 32 with frames stored at its input
size (config.toml's [data] 128x72); `demo_480` stores 480x270 frames that the
batch decode shrinks; `xception` is model_0003_xception at batch 4 and
270x480 (slow on a CPU: a few steps per round).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.config import Config, load_config
from engine.data.frames import encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from engine.trainer import Trainer
from models.registry import Registry
from models.spec import ParameterCounts, load_spec, spec_path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.95
# case -> (line, batch size, stored frame size (w, h), batches per round, warm-up batches)
CASES = {
    "demo": ("model_0000_demo", 32, (128, 72), 150, 20),
    "demo_480": ("model_0000_demo", 32, (480, 270), 150, 20),
    "xception": ("model_0003_xception", 4, (480, 270), 4, 1),
}


def main() -> None:
    """Run the chosen cases and print one JSON line of results each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=(*CASES, "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3, help="bare/trainer round pairs")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    for case in CASES if args.case == "all" else (args.case,):
        print(json.dumps(bench_case(config, case, args.rounds)), flush=True)


def bench_case(config: Config, case: str, rounds: int) -> dict:
    """Alternate bare steps and trainer runs on one model; ratios per round."""
    line, batch_size, stored_size, batches, warmup = CASES[case]
    spec = load_spec(line)
    with tempfile.TemporaryDirectory() as tmp:
        per_buffer = batch_size // len(config.data.balanced_outputs)
        capacity = per_buffer * (warmup + rounds * batches) + 2 * per_buffer
        config = _bench_config(config, Path(tmp), capacity)
        version = _create_version(config, line, batch_size)
        _store(config, stored_size, capacity)
        with Trainer(config, version, streamed=False, seed=1) as trainer:
            x, y = _in_memory_batch(trainer, batch_size)
            _bare(trainer, x, y, warmup)
            trainer.run(max_batches=warmup)
            bare, full, wall = [], [], []
            for _ in range(rounds):
                bare.append(_bare(trainer, x, y, batches))
                started = time.perf_counter()
                result = trainer.run(max_batches=batches)
                wall.append(batch_size * result.batches / (time.perf_counter() - started))
                full.append(result.samples_per_s)
    ratios = [f / b for f, b in zip(full, bare, strict=True)]
    ratio = statistics.median(ratios)
    return {
        "case": case,
        "model": line,
        "batch": batch_size,
        "model_input": f"{spec.input.width}x{spec.input.height}",
        "stored_frames": f"{stored_size[0]}x{stored_size[1]}",
        "batches_per_round": batches,
        "bare_samples_per_s": [round(v, 1) for v in bare],
        "trainer_samples_per_s": [round(v, 1) for v in full],
        "trainer_wall_samples_per_s_incl_start_and_final_checkpoint": [round(v, 1) for v in wall],
        "ratios": [round(v, 3) for v in ratios],
        "median_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
    }


def _bench_config(config: Config, data_dir: Path, capacity: int) -> Config:
    """config.toml with a scratch data dir and buffers that hold every benchmark batch."""
    return dataclasses.replace(
        config,
        app=dataclasses.replace(config.app, data_dir=str(data_dir)),
        data=dataclasses.replace(config.data, buffer_capacity=capacity, ready_threshold=0.01),
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


def _store(config: Config, size: tuple[int, int], capacity: int) -> None:
    """Fill every buffer's storage with real hood frames of the built-in game."""
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


def _game_frames(config: Config, count: int, size: tuple[int, int]) -> list[bytes]:
    from engine.sim.game import Game

    game = Game(dataclasses.replace(config.sim, window="off"), seed=3)
    jpegs = []
    for i in range(count * 5):
        game.tick()
        if i % 5 == 0:
            frame = resize_frame(game.render_hood(), size)
            jpegs.append(encode_frame(frame, config.data.jpeg_quality))
    return jpegs


def _in_memory_batch(trainer: Trainer, batch_size: int) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(0)
    shape = (batch_size, trainer.spec.input.height, trainer.spec.input.width, 3)
    x = rng.uniform(0, 255, shape).astype(np.float32)
    y = {
        name: rng.uniform(-1, 1, batch_size).astype(np.float32)
        for name in trainer.spec.output_names
    }
    return x, y


def _bare(trainer: Trainer, x: np.ndarray, y: dict, batches: int) -> float:
    """Samples/s of the trainer's own compiled step on one in-memory batch."""
    started = time.perf_counter()
    for _ in range(batches):
        trainer.step(x, y)
    trainer.step.mean_losses()  # the same read the trainer's log interval does
    return len(x) * batches / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
