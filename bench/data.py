"""Benchmark of the training-data path (issue 3).

    .venv/bin/python bench/data.py [--part all|collector|batches|costs] [--collector-seconds 1800]

1. Balanced samples/s from one headless collector (config.toml as shipped).
2. The cost of a ready batch of 32 samples stored at 270x480 (JPEG; and again
   at config.toml's frame size) fed to the demo model (model_0000_demo, input
   72x128): drawn from the buffers,
   decoded, resized and converted by the prefetch thread while the trainer runs
   the demo model's train step. Reported against a bare train step on an
   in-memory batch, measured in the same run: the time the trainer waits for
   the next batch / the bare step time (target <= 0.05). Also the cost of one
   batch without prefetch, the whole loop's throughput against bare steps (on
   a 2-core machine the decode thread and TensorFlow share the cores, so a
   hidden wait still costs CPU) and the refill (storage -> buffers) rate.
3. (`--part costs`, not in `all`) What each piece of the batch path costs in CPU
   per 32-sample batch, old and new ways alternating round by round in one
   process so a busy machine slows both alike: deleting the drawn rows at the
   draw vs marking them (and the deferred delete per batch's rows), JPEG decode
   to BGR + a colour swap vs straight to RGB, and, for the codec question, the
   same frames as PNG, zlib-packed raw pixels and raw pixels (decode CPU and
   bytes per frame, what collector -> hub -> trainer and the disk carry). Then
   the `[data] frame_codec` choice end to end, JPEG against raw: a batch decoded
   the way `BatchSource` does it (`decode_frame` into the batch array), the
   collector's encode of 32 frames, and the trainer's storage of 32 arriving
   samples (`insert_set`: 7x the bytes through SQLite).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import msgspec
import numpy as np

from engine.core.config import FrameCodec, load_config
from engine.data.batches import BatchSource
from engine.data.buffers import SampleBuffers
from engine.data.frames import decode_frame, encode_frame, resize_frame
from engine.data.samples import Sample, SampleSet
from engine.data.storage import SampleStorage

REPO = Path(__file__).resolve().parent.parent
BATCH = 32
# The reference's stored frame size (model_0003_xception's input).
REFERENCE_SIZE = (480, 270)
TARGET_RATIO = 0.05


def main() -> None:
    """Run the chosen parts and print one JSON line of results per part."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "collector", "batches", "costs"), default="all")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (costs)")
    parser.add_argument("--collector-seconds", type=float, default=1800.0, help="game seconds")
    parser.add_argument("--batches", type=int, default=60, help="train steps to time")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    if args.part in ("all", "collector"):
        print(json.dumps(bench_collector(config, args.collector_seconds)), flush=True)
    if args.part in ("all", "batches"):
        demo_size = (config.data.frame_width, config.data.frame_height)
        for stored_size in dict.fromkeys([REFERENCE_SIZE, demo_size]):
            print(json.dumps(bench_batches(config, args.batches, stored_size)), flush=True)
    if args.part == "costs":
        print(json.dumps(bench_costs(config, args.rounds)), flush=True)


def bench_costs(config, rounds: int, batches: int = 50) -> dict:
    """CPU ms per 32-sample batch of each piece, old and new ways alternating by round."""
    size = (config.data.frame_width, config.data.frame_height)
    jpegs = _frames(config, 64, size)
    raw = [decode_frame(j) for j in jpegs]
    codecs = {
        "jpeg": jpegs,
        "png": [cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in raw],
        "raw_zlib1": [zlib.compress(f.tobytes(), 1) for f in raw],
        "raw": [f.tobytes() for f in raw],
        "raw_frame": [encode_frame(f, config.data.jpeg_quality, "raw") for f in raw],
    }
    shape = raw[0].shape
    batch_uint8 = np.stack(raw[:BATCH])
    pieces: dict[str, Callable[[int], None]] = {
        "decode_bgr_then_swap": lambda i: _decode_bgr(jpegs, i),
        "decode_rgb": lambda i: _decode_each(jpegs, i, decode_frame),
        "decode_png": lambda i: _decode_each(codecs["png"], i, _png),
        "decode_raw_zlib1": lambda i: _decode_each(
            codecs["raw_zlib1"], i, lambda b: _raw(zlib.decompress(b), shape)
        ),
        "decode_raw": lambda i: _decode_each(codecs["raw"], i, lambda b: _raw(b, shape)),
        "convert_float32": lambda i: batch_uint8.astype(np.float32),
        # The codec choice as the trainer's prefetch thread and the collector pay it.
        "batch_decode_jpeg": lambda i: _batch_decode(jpegs, i, size),
        "batch_decode_raw": lambda i: _batch_decode(codecs["raw_frame"], i, size),
        "encode_jpeg": lambda i: _encode_each(raw, i, "jpeg", config.data.jpeg_quality),
        "encode_raw": lambda i: _encode_each(raw, i, "raw", config.data.jpeg_quality),
    }
    per_buffer = BATCH // len(config.data.balanced_outputs)
    capacity = per_buffer * batches * rounds * 2 + per_buffer * 4
    load_before = os.getloadavg()
    stores = ("store_jpeg", "store_raw")
    cpu_ms: dict[str, list[float]] = {name: [] for name in (*pieces, "delete", "mark", *stores)}
    with tempfile.TemporaryDirectory() as tmp:
        # Storing arriving samples, as the trainer does for every set: one storage per codec,
        # never full (rotation is the same for both), fewer batches (7x the bytes for raw).
        store_batches = max(batches // 5, 1)
        arriving = {
            name: SampleStorage(Path(tmp) / f"{name}.db", capacity=10_000_000) for name in stores
        }
        arriving_sets = {
            name: [_arriving_set(blobs, i, size) for i in range(store_batches)]
            for name, blobs in zip(stores, (jpegs, codecs["raw_frame"]), strict=True)
        }
        storage = SampleStorage(Path(tmp) / "samples.db", capacity=capacity)
        outputs = tuple(config.data.outputs)
        _fill(storage, config.data.balanced_outputs, outputs, jpegs, capacity, size)
        buffers = SampleBuffers.open(
            storage, config.data.balanced_outputs, ready_threshold=0.01, seed=1
        )
        mark = storage.mark_drawn
        for _ in range(rounds):
            for name, piece in pieces.items():
                cpu_ms[name].append(_cpu_ms_per_batch(piece, batches))
            # Storage as it was (delete at the draw) and as it is (mark), same draws otherwise.
            for name, way in (("delete", _deleting(storage)), ("mark", mark)):
                storage.mark_drawn = way
                cpu_ms[name].append(_cpu_ms_per_batch(lambda i: buffers.draw(per_buffer), batches))
            for name, into in arriving.items():
                sets = arriving_sets[name]
                cpu_ms[name].append(
                    _cpu_ms_per_batch(
                        lambda i, into=into, sets=sets: into.insert_set(sets[i]), store_batches
                    )
                )
        # The deferred delete of drawn rows, per codec: a raw row's blob spans overflow pages.
        compact_by_codec = {}
        for name, arrived in arriving.items():
            arrived.mark_drawn([row.id for row in arrived.load()])
            compact_by_codec[name.removeprefix("store_")] = _compact_ms_per_batch(arrived)
            arrived.close()
        storage.mark_drawn = mark
        compact_ms = _compact_ms_per_batch(storage)
        storage.close()
    return {
        "part": "costs",
        "frame_size": f"{size[0]}x{size[1]}",
        "batch": BATCH,
        "rounds": rounds,
        "load_average_1_5_15_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
        # Median over rounds of the CPU ms per batch (the calling thread's own CPU).
        "cpu_ms_per_batch": {k: round(statistics.median(v), 3) for k, v in cpu_ms.items()},
        "cpu_ms_per_batch_rounds": {k: [round(x, 3) for x in v] for k, v in cpu_ms.items()},
        "deferred_delete_cpu_ms_per_batch": round(compact_ms, 3),
        "deferred_delete_cpu_ms_per_batch_by_codec": {
            k: round(v, 3) for k, v in compact_by_codec.items()
        },
        "bytes_per_frame_mean": {
            name: round(statistics.mean(len(b) for b in blobs)) for name, blobs in codecs.items()
        },
    }


def _compact_ms_per_batch(storage: SampleStorage) -> float:
    """CPU ms to delete a batch's worth of the rows marked drawn (all of them, timed)."""
    pending = storage.drawn_pending()
    started = time.thread_time()
    while storage.compact_drawn(256):
        pass
    return (time.thread_time() - started) * 1000 / max(pending, 1) * BATCH


def _cpu_ms_per_batch(piece: Callable[[int], object], batches: int) -> float:
    started = time.thread_time()
    for i in range(batches):
        piece(i)
    return (time.thread_time() - started) * 1000 / batches


def _decode_each(blobs: list[bytes], batch: int, decode: Callable[[bytes], np.ndarray]) -> None:
    frames = [decode(blobs[(batch * BATCH + k) % len(blobs)]) for k in range(BATCH)]
    np.stack(frames)


def _batch_decode(blobs: list[bytes], batch: int, size: tuple[int, int]) -> np.ndarray:
    """What `BatchSource` does per batch: each frame decoded and checked into one array."""
    frames = np.empty((BATCH, size[1], size[0], 3), dtype=np.uint8)
    for k in range(BATCH):
        frames[k] = decode_frame(blobs[(batch * BATCH + k) % len(blobs)], expected=size, size=size)
    return frames


def _encode_each(frames: list[np.ndarray], batch: int, codec: FrameCodec, quality: int) -> None:
    for k in range(BATCH):
        encode_frame(frames[(batch * BATCH + k) % len(frames)], quality, codec)


def _arriving_set(blobs: list[bytes], batch: int, size: tuple[int, int]) -> SampleSet:
    """A batch's worth of samples arriving in one set (the trainer stores every set it gets)."""
    samples = tuple(
        Sample(
            frame=blobs[(batch * BATCH + k) % len(blobs)],
            width=size[0],
            height=size[1],
            outputs={"steering": 0.1, "throttle_brake": 0.5},
            speed=20.0,
            time=0.0,
            source="bench",
            episode=0,
        )
        for k in range(BATCH)
    )
    return SampleSet("steering", samples)


def _decode_bgr(jpegs: list[bytes], batch: int) -> None:
    """The decode before IMREAD_COLOR_RGB: BGR from libjpeg, then a colour-swap copy."""
    _decode_each(
        jpegs,
        batch,
        lambda j: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(j, dtype=np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        ),
    )


def _png(blob: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)


def _raw(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint8).reshape(shape)


def _deleting(storage: SampleStorage) -> Callable[..., None]:
    """`mark_drawn` as storage was before drawn marks: the drawn rows deleted at once."""

    def delete_drawn(ids, *, counter: str = "samples_drawn") -> None:
        storage.delete(ids, counter=counter)

    return delete_drawn


def bench_collector(config, game_seconds: float) -> dict:
    """Balanced samples per wall-clock second from one headless collector."""
    from engine.collector.collector import Collector

    sets: list[SampleSet] = []
    collector = Collector(config, seed=11, source="bench", sink=sets.append)
    started = time.perf_counter()
    stats = collector.run(game_seconds=game_seconds)
    wall = time.perf_counter() - started
    samples = sum(len(s.samples) for s in sets)
    balancers = stats.balance.balancers
    return {
        "part": "collector",
        "frame_size": f"{config.data.frame_width}x{config.data.frame_height}",
        "game_seconds": round(stats.game_seconds, 1),
        "wall_seconds": round(wall, 2),
        "game_speed_x": round(stats.game_seconds / wall, 2),
        "balanced_samples": samples,
        "balanced_samples_per_s": round(samples / wall, 1),
        "sets_completed": {k: v.sets_completed for k, v in balancers.items()},
        "sets_dropped": {k: v.sets_dropped for k, v in balancers.items()},
        "respawns": stats.respawns,
        "episodes": stats.episodes,
    }


def bench_batches(config, n_batches: int, stored_size: tuple[int, int]) -> dict:
    """Prefetched batch wait vs a bare demo-model train step, in the same process."""
    from models.build import build_architecture, compile_model
    from models.spec import load_spec

    spec = load_spec("model_0000_demo")
    model_size = (spec.input.width, spec.input.height)
    model = compile_model(build_architecture(spec), spec)
    outputs = tuple(o.name for o in spec.outputs)
    per_buffer = BATCH // len(config.data.balanced_outputs)
    capacity = per_buffer * (n_batches + 20)
    with tempfile.TemporaryDirectory() as tmp:
        storage = SampleStorage(Path(tmp) / "samples.db", capacity=capacity)
        frames = _frames(config, 64, stored_size)
        _fill(storage, config.data.balanced_outputs, outputs, frames, capacity, stored_size)
        refill_started = time.perf_counter()
        buffers = SampleBuffers.open(
            storage, config.data.balanced_outputs, ready_threshold=0.02, seed=1
        )
        refill_s = time.perf_counter() - refill_started
        refilled = sum(buffers.fill().values())

        bare_before_ms = _bare_step_ms(model, model_size, outputs, n_batches)
        # Production cost alone: prefetch=1 and a consumer that does nothing.
        with BatchSource(
            buffers, batch_size=BATCH, frame_size=model_size, outputs=outputs, prefetch=1
        ) as source:
            source.next_batch(timeout=30)
            started = time.perf_counter()
            for _ in range(10):
                source.next_batch(timeout=30)
            build_ms = (time.perf_counter() - started) / 10 * 1000
        waits, steps = [], []
        loop_started = 0.0
        with BatchSource(
            buffers,
            batch_size=BATCH,
            frame_size=model_size,
            outputs=outputs,
            prefetch=config.data.prefetch_batches,
        ) as source:
            for i in range(n_batches - 20):
                t0 = time.perf_counter()
                batch = source.next_batch(timeout=30)
                t1 = time.perf_counter()
                model.train_on_batch(batch.x, {k: v[:, None] for k, v in batch.y.items()})
                t2 = time.perf_counter()
                if i == 2:  # let the queue fill and the step settle first
                    loop_started = t2
                elif i > 2:
                    waits.append(t1 - t0)
                    steps.append(t2 - t1)
            loop_ms = (time.perf_counter() - loop_started) / len(steps) * 1000
        storage.close()
        # Other work on a shared machine only ever slows a step: the faster baseline is the truer.
        bare_ms = min(bare_before_ms, _bare_step_ms(model, model_size, outputs, n_batches))
    wait_ms = statistics.mean(waits) * 1000
    return {
        "part": "batches",
        "batch": BATCH,
        "stored_size": f"{stored_size[0]}x{stored_size[1]}",
        "model": "model_0000_demo",
        "model_input": f"{model_size[0]}x{model_size[1]}",
        "bare_step_ms": round(bare_ms, 2),
        "batch_build_ms_no_prefetch": round(build_ms, 2),
        "build_to_step_ratio": round(build_ms / bare_ms, 3),
        "prefetched_wait_ms": round(wait_ms, 3),
        "prefetched_wait_p95_ms": round(float(np.percentile(waits, 95)) * 1000, 3),
        "step_ms_with_prefetch": round(statistics.mean(steps) * 1000, 2),
        "loop_ms_per_batch": round(loop_ms, 2),
        # Trainer throughput with the data path / bare step throughput (CPU shared by both).
        "throughput_ratio": round(bare_ms / loop_ms, 3),
        "wait_to_bare_step_ratio": round(wait_ms / bare_ms, 4),
        "target_ratio": TARGET_RATIO,
        "meets_target": wait_ms / bare_ms <= TARGET_RATIO,
        "refill_samples": refilled,
        "refill_s": round(refill_s, 3),
        "refill_samples_per_s": round(refilled / refill_s),
    }


def _bare_step_ms(model, size: tuple[int, int], outputs: tuple[str, ...], n: int) -> float:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, size[1], size[0], 3)).astype(np.float32)
    y = {name: rng.uniform(-1, 1, (BATCH, 1)).astype(np.float32) for name in outputs}
    for _ in range(5):
        model.train_on_batch(x, y)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _frames(config, count: int, size: tuple[int, int]) -> list[bytes]:
    """Real hood frames of the built-in game, resized to `size` and JPEG-encoded."""
    from engine.sim.game import Game

    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    jpegs = []
    for i in range(count * 5):
        game.tick()
        if i % 5 == 0:
            frame = resize_frame(game.render_hood(), size)
            jpegs.append(encode_frame(frame, config.data.jpeg_quality))
    return jpegs


def _fill(storage, buffers, outputs, frames: list[bytes], capacity: int, size) -> None:
    rng = np.random.default_rng(1)
    width, height = size
    for buffer in buffers:
        stored = 0
        while stored < capacity:
            samples = tuple(
                Sample(
                    frame=frames[(stored + i) % len(frames)],
                    width=width,
                    height=height,
                    outputs={name: float(rng.uniform(-1, 1)) for name in outputs},
                    speed=20.0,
                    time=0.0,
                    source="bench",
                    episode=0,
                )
                for i in range(21)
            )
            storage.insert_set(SampleSet(buffer, samples))
            stored += len(samples)


if __name__ == "__main__":
    main()
