"""Benchmark of the full trainer against a bare compiled train step (issue 4).

    .venv/bin/python bench/trainer.py [--case demo|demo_480|xception|all] [--rounds 5]
        [--variants trainer,eager_delete,jpeg,raw]

For each case, in one process and on the same model:

- bare: `TrainStep` (the trainer's own compiled Keras step) on one in-memory
  batch (the same game frames, decoded once to float32, and targets), no
  data path at all;
- trainer: `Trainer.run` on a real data directory: sample storage (SQLite,
  frames of the built-in game in the case's codec) -> buffers -> background
  batch decode -> the same `TrainStep` -> TensorBoard, status reports,
  training period.

Rounds alternate bare and trainer, so a busy machine slows both alike. The
headline ratio is the median bare step time / the median trainer batch time
(the gap between the starts of consecutive steps: a whole loop iteration,
waiting for the next batch included), target >= 0.95; medians keep bursts of
other work on a shared machine out of it. Each round also reports throughputs
over the whole round (amortizing the trainer's log intervals; `run` includes
its start and final checkpoint) and the process CPU time per batch, bare /
trainer, which is what the data path costs where the cores are the limit.

What each part costs: the prefetch thread's own CPU per batch (draw and the
storage mark, frame decode, float conversion; `DataPathCosts`), the bare step's
process CPU per batch, and the deferred deletion of drawn rows
(`compact_drawn`, timed after the rounds, per batch's worth of rows), which a
stream pays while it waits for data. The `eager_delete` variant (on by default;
`--variants trainer` leaves it out) runs the trainer with the drawn rows
deleted at each draw, as storage did before the drawn marks, in rounds
alternating with the others: the mark's gain, measured in the same run. The
`jpeg` and `raw` variants (`--variants trainer,jpeg`) run the same trainer on
a second storage holding the same frames in that codec (`[data] frame_codec`),
its buffers swapped in for their rounds: the codec's gain, in the same run. The
machine's load average is printed with it.

Cases: `demo` is model_0000_demo at batch 32 with frames stored raw at its
input size (config.toml's [data] 128x72, frame_codec "raw"); `demo_480` stores
480x270 JPEG frames that the batch decode shrinks; `xception` is
model_0003_xception at batch 4 and 270x480 JPEG frames (slow on a CPU: a few
steps per round). The case's codec is what config.toml's comment recommends at
that frame size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import numpy as np

from engine.core.config import FRAME_CODECS, Config, FrameCodec, load_config
from engine.data.batches import DataPathCosts
from engine.data.buffers import SampleBuffers
from engine.data.frames import decode_frame, encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from engine.trainer.train_step import TrainStep
from engine.trainer.trainer import Trainer, TrainingRun
from models.registry import Registry
from models.spec import ParameterCounts, load_spec, spec_path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.95
# case -> (line, batch size, stored frame size (w, h), frame codec, batches per round, warm-up)
CASES: dict[str, tuple[str, int, tuple[int, int], FrameCodec, int, int]] = {
    "demo": ("model_0000_demo", 32, (128, 72), "raw", 100, 20),
    "demo_480": ("model_0000_demo", 32, (480, 270), "jpeg", 100, 20),
    "xception": ("model_0003_xception", 4, (480, 270), "jpeg", 4, 1),
}
# trainer: the trainer as it is; eager_delete: drawn rows deleted at the draw (the old storage);
# jpeg, raw: the trainer with the same frames stored in that codec.
VARIANTS = ("trainer", "eager_delete", *FRAME_CODECS)
DEFAULT_VARIANTS = ("trainer", "eager_delete")


def main() -> None:
    """Run the chosen cases and print one JSON line of results each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=(*CASES, "all"), default="all")
    parser.add_argument("--rounds", type=int, default=5, help="bare/trainer round pairs")
    parser.add_argument(
        "--variants",
        type=_variants,
        default=DEFAULT_VARIANTS,
        help=f"comma-separated trainer variants alternating with bare, of "
        f"{','.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    for case in CASES if args.case == "all" else (args.case,):
        result = bench_case(config, case, args.rounds, args.variants)
        for line in _summary(result):
            print(line, flush=True)
        print(json.dumps(result), flush=True)


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: accepted: a comma-separated list of {', '.join(VARIANTS)}"
        )
    return names


def bench_case(
    config: Config, case: str, rounds: int, variants: Iterable[str] = ("trainer",)
) -> dict:
    """Alternate bare steps and trainer runs (of each variant) on one model; compare batch times."""
    variants = tuple(variants)
    line, batch_size, stored_size, codec, batches, warmup = CASES[case]
    spec = load_spec(line)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        per_buffer = batch_size // len(config.data.balanced_outputs)
        # A run that stops leaves up to prefetch + 1 drawn batches unused; 5% more for ready.
        per_variant = warmup + rounds * batches + (rounds + 1) * (config.data.prefetch_batches + 2)
        own = [v for v in variants if v not in FRAME_CODECS]  # variants on the trainer's storage
        drawn = per_variant * max(len(own), 1)
        capacity = math.ceil(per_buffer * drawn / 0.95) + per_buffer
        config = _bench_config(config, Path(tmp), capacity)
        version = _create_version(config, line, batch_size)
        rgb = _game_frames(config, 64, stored_size)
        frames = _store(config, default_storage_path(config), rgb, codec, capacity)
        codec_capacity = math.ceil(per_buffer * per_variant / 0.95) + per_buffer
        with Trainer(config, version, streamed=False, seed=1) as trainer:
            x, y = _in_memory_batch(trainer, frames, batch_size)
            clock = _StepClock(trainer.step)
            trainer.step = clock
            storage = trainer.buffers.storage
            variant_buffers = _variant_buffers(
                config, trainer.buffers, variants, rgb, Path(tmp), codec_capacity
            )
            mark_drawn = {"eager_delete": _deleting(storage)}
            marking = storage.mark_drawn

            def use(variant: str) -> None:
                trainer.buffers = variant_buffers[variant]
                storage.mark_drawn = mark_drawn.get(variant, marking)

            try:
                _bare(clock.step, x, y, warmup)
                for variant in variants:
                    use(variant)
                    _run(trainer, warmup)
                bare_s: list[float] = []
                bare_cpu_ms: list[float] = []
                found = {v: _VariantTimes() for v in variants}
                for _ in range(rounds):
                    cpu = time.process_time()
                    bare_s += _bare(clock.step, x, y, batches)
                    bare_cpu_s = (time.process_time() - cpu) / batches
                    bare_cpu_ms.append(bare_cpu_s * 1000)
                    for variant in variants:
                        use(variant)
                        found[variant].round(
                            trainer, clock, batches, batch_size, bare_s[-batches:], bare_cpu_s
                        )
                use("trainer")
                compact = _compaction_cost(storage)
            finally:
                use("trainer")
                for buffers in variant_buffers.values():
                    if buffers is not trainer.buffers:
                        buffers.storage.close()
    bare_ms = statistics.median(bare_s) * 1000
    load_after = os.getloadavg()
    result = {
        "case": case,
        "model": line,
        "batch": batch_size,
        "model_input": f"{spec.input.width}x{spec.input.height}",
        "stored_frames": f"{stored_size[0]}x{stored_size[1]}",
        # The trainer's (and eager_delete's) stored frames; the jpeg and raw variants say theirs.
        "frame_codec": codec,
        "bytes_per_frame_mean": {
            c: round(
                statistics.mean(len(encode_frame(f, config.data.jpeg_quality, c)) for f in rgb)
            )
            for c in FRAME_CODECS
        },
        "load_average_1_5_15_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_after": [round(v, 2) for v in load_after],
        "bare_ms_per_batch_median": round(bare_ms, 2),
        "bare_samples_per_s": round(batch_size / bare_ms * 1000, 1),
        "bare_cpu_ms_per_batch_median": round(statistics.median(bare_cpu_ms), 2),
        "target_ratio": TARGET_RATIO,
        # Deleting drawn rows later (while a stream waits for data), per batch's worth of rows.
        "compact_cpu_ms_per_batch": round(compact * batch_size * 1000, 3),
    }
    for variant in variants:
        times = found[variant]
        trainer_ms = float(statistics.median(times.gaps_s)) * 1000
        ratio = float(bare_ms / trainer_ms)
        prefix = "" if variant == "trainer" else f"{variant}_"
        result |= {
            f"{prefix}trainer_ms_per_batch_median": round(trainer_ms, 2),
            f"{prefix}trainer_samples_per_s": round(batch_size / trainer_ms * 1000, 1),
            f"{prefix}ratio": round(ratio, 3),
            f"{prefix}ratio_by_round_median": round(
                statistics.median(r["ratio"] for r in times.rounds), 3
            ),
            f"{prefix}meets_target": ratio >= TARGET_RATIO,
            f"{prefix}trainer_cpu_ms_per_batch_median": round(statistics.median(times.cpu_ms), 2),
            # The prefetch thread's CPU per batch by part, over all rounds of this variant.
            f"{prefix}data_path_cpu_ms_per_batch": {
                k: round(v, 3) for k, v in times.costs.per_batch_ms().items()
            },
            # Per round: throughputs over the whole round (trainer_run_* includes the run's
            # start and its final checkpoint), and bare / trainer CPU time of the whole process
            # per batch: what the data path costs when the cores, not the step, are the limit.
            f"{prefix}rounds": times.rounds,
        }
    return result


class _VariantTimes:
    """One trainer variant's step gaps, CPU and data-path costs over the rounds."""

    def __init__(self) -> None:
        self.gaps_s: list[float] = []
        self.cpu_ms: list[float] = []
        self.costs = DataPathCosts()
        self.rounds: list[dict] = []

    def round(
        self,
        trainer: Trainer,
        clock: _StepClock,
        batches: int,
        batch_size: int,
        bare_s: list[float],
        bare_cpu_s: float,
    ) -> None:
        """Run the trainer for `batches` and note its gaps, CPU and costs against bare's."""
        clock.calls.clear()
        trainer.data_costs = DataPathCosts()
        cpu, wall = time.process_time(), time.perf_counter()
        result = _run(trainer, batches)
        run_cpu = (time.process_time() - cpu) / batches
        wall = time.perf_counter() - wall
        # Gaps between step starts: a whole loop iteration, waits for a batch included.
        gaps = list(np.diff(clock.calls))
        self.gaps_s += gaps
        self.cpu_ms.append(run_cpu * 1000)
        costs = trainer.data_costs
        self.costs.add(
            batches=costs.batches,
            draw_s=costs.draw_s,
            decode_s=costs.decode_s,
            convert_s=costs.convert_s,
        )
        self.rounds.append(
            {
                "bare_samples_per_s": round(batch_size * batches / sum(bare_s), 1),
                "trainer_samples_per_s": round(result.samples_per_s, 1),
                "trainer_run_samples_per_s": round(batch_size * batches / wall, 1),
                "cpu_ratio": round(bare_cpu_s / run_cpu, 3),
                # This round's median bare step / its median trainer gap: load that changes
                # between rounds cancels out here, unlike in the ratio of medians over rounds.
                "ratio": round(statistics.median(bare_s) / float(statistics.median(gaps)), 3),
            }
        )


def _deleting(storage: SampleStorage) -> Callable[..., None]:
    """`mark_drawn` as storage was before drawn marks: the drawn rows deleted at once."""

    def delete_drawn(ids: Iterable[int], *, counter: str = "samples_drawn") -> None:
        storage.delete(ids, counter=counter)

    return delete_drawn


def _compaction_cost(storage: SampleStorage) -> float:
    """CPU seconds per drawn row to delete every row the trainer runs marked."""
    cpu, rows = time.process_time(), 0
    while True:
        done = storage.compact_drawn(256)
        if not done:
            break
        rows += done
    return (time.process_time() - cpu) / rows if rows else 0.0


def _summary(result: dict) -> list[str]:
    """What each part costs, in a few lines a person reads before the JSON."""
    lines = [
        f"{result['case']}: {result['model']} batch {result['batch']}, stored "
        f"{result['stored_frames']} {result['frame_codec']} (bytes a frame: "
        f"{result['bytes_per_frame_mean']}); load average before "
        f"{result['load_average_1_5_15_before']} after {result['load_average_1_5_15_after']}",
        f"  bare step: {result['bare_ms_per_batch_median']} ms/batch wall, "
        f"{result['bare_cpu_ms_per_batch_median']} ms CPU (process)",
    ]
    for variant in VARIANTS:
        prefix = "" if variant == "trainer" else f"{variant}_"
        if f"{prefix}ratio" not in result:
            continue
        parts = result[f"{prefix}data_path_cpu_ms_per_batch"]
        by_round = [r["ratio"] for r in result[f"{prefix}rounds"]]
        lines.append(
            f"  {variant}: {result[f'{prefix}trainer_ms_per_batch_median']} ms/batch "
            f"wall, {result[f'{prefix}trainer_cpu_ms_per_batch_median']} ms CPU (process); "
            f"ratio {result[f'{prefix}ratio']} (by round {by_round}, median "
            f"{result[f'{prefix}ratio_by_round_median']}; target {result['target_ratio']}); "
            f"data path CPU ms/batch: draw+mark {parts['draw']:.3f}, decode "
            f"{parts['decode']:.3f}, convert {parts['convert']:.3f}, total {parts['total']:.3f}"
        )
    lines.append(
        f"  deferred delete of drawn rows (paid while waiting for data): "
        f"{result['compact_cpu_ms_per_batch']} ms CPU per batch's rows"
    )
    return lines


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


def _variant_buffers(
    config: Config,
    buffers: SampleBuffers,
    variants: Iterable[str],
    rgb: list[np.ndarray],
    data_dir: Path,
    capacity: int,
) -> dict[str, SampleBuffers]:
    """variant -> the buffers it trains from: the trainer's own, or a storage in its codec."""
    found = {"trainer": buffers, "eager_delete": buffers}
    for codec in FRAME_CODECS:
        if codec in variants:
            path = data_dir / codec / "samples.db"
            _store(config, path, rgb, codec, capacity)
            found[codec] = SampleBuffers.open(
                SampleStorage(path, capacity=capacity),
                config.data.balanced_outputs,
                ready_threshold=config.data.ready_threshold,
                seed=1,
            )
    return found


def _store(
    config: Config, path: Path, rgb: list[np.ndarray], codec: FrameCodec, capacity: int
) -> list[bytes]:
    """Fill every buffer of the storage at `path` with `rgb` frames as `codec`; return them."""
    frames = [encode_frame(frame, config.data.jpeg_quality, codec) for frame in rgb]
    rng = np.random.default_rng(1)
    outputs = config.data.outputs
    height, width = rgb[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with SampleStorage(path, capacity=capacity) as storage:
        for buffer in config.data.balanced_outputs:
            for start in range(0, capacity, 21):
                samples = tuple(
                    Sample(
                        frame=frames[(start + i) % len(frames)],
                        width=width,
                        height=height,
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


def _game_frames(config: Config, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """`count` RGB hood frames of the built-in game at `size`, 5 ticks apart."""
    from engine.sim.game import Game

    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    frames = []
    for i in range(count * 5):
        game.tick()
        if i % 5 == 0:
            frames.append(resize_frame(game.render_hood(), size))
    return frames


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
