"""The trainer's memory over many batches, with and without large blocks on their own pages.

    .venv/bin/python bench/trainer_memory.py [--minutes 20] [--out DIR]

Two trainers run side by side for the same time, each in its own process, a
streamed `Trainer` of model_0000_demo (config.toml) fed balanced sets of the
built-in game's frames through the wire format as fast as it trains, as the
hub feeds it, with a checkpoint every 500 batches and the losses to
TensorBoard:

- `trim`: freed memory handed back every 60 s (`release_free_memory`), glibc's
  mmap threshold left to rise as it does by default, TensorFlow's tensors in
  oneDNN's own pool: the trainer before `map_large_blocks` and
  `tensors_from_malloc`;
- `product`: started and run as the app's trainer node: glibc's huge pages for
  large blocks, `released_memory(60)`: the same release, and blocks of 1 MiB or
  more on their own pages, tensors among them.

Every 10 s each records its batch, RSS and glibc's own account of the heap
(`mallinfo2`: the arenas' size, what is in use and free in them, the blocks
mapped on their own). A leak shows as "in use" growing; fragmentation as the
arenas growing while "in use" does not; RSS moves within the arenas as free
pages are given back and touched again. The summary prints each one's growth
per 1,000 batches after the first third (warm-up), their RSS range, and the
batches/s ratio product / trim: what the mapping costs, measured in the same run
(target >= 0.95). A soak's trainer trains about 3,700 batches an hour.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core.memory import with_huge_pages  # noqa: E402

# The trainers' imports (TensorFlow among them) are the children's: the parent only compares.
if TYPE_CHECKING:
    from engine.core.config import Config

VARIANTS = ("trim", "product")
EVERY_S = 10.0
RELEASE_S = 60.0
TARGET_RATIO = 0.95


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def heap_figures() -> dict[str, float]:
    """glibc's account of this process's heap, in MB, and its RSS."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    mb = 2.0**20
    return {
        "rss_mb": resident_pages * 4096 / mb,
        "arenas_mb": info.arena / mb,
        "in_use_mb": info.uordblks / mb,
        "free_mb": info.fordblks / mb,
        "mapped_mb": info.hblkhd / mb,
    }


def main() -> None:
    """Run both variants side by side, then print and save the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long each trainer runs")
    parser.add_argument("--out", type=Path, help="folder for <variant>.csv and summary.json")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minutes < 1.0:
        parser.error(f"--minutes {args.minutes:g} is too short; accepted: 1 or more")
    out = (args.out or Path(tempfile.mkdtemp(prefix="trainer-memory-"))).resolve()
    if args.child:
        run_child(args.child, args.minutes, out / f"{args.child}.csv")
        return
    out.mkdir(parents=True, exist_ok=True)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                variant,
                "--minutes",
                str(args.minutes),
                "--out",
                str(out),
            ],
            cwd=REPO,
            # As the app starts its trainer (glibc reads the huge pages tunable at start).
            env=with_huge_pages(os.environ) if variant == "product" else None,
            stdout=subprocess.DEVNULL,
            stderr=(out / f"{variant}.log").open("wb"),
        )
        for variant in VARIANTS
    ]
    codes = [child.wait() for child in children]
    if any(codes):
        raise SystemExit(f"a trainer failed (exit codes {codes}); see {out}/<variant>.log")
    summary = {variant: summarize(read_rows(out / f"{variant}.csv")) for variant in VARIANTS}
    speeds = [summary[variant]["batches_per_s"] for variant in VARIANTS]
    summary["ratio_product_over_trim"] = round(speeds[1] / speeds[0], 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for variant in VARIANTS:
        figures = summary[variant]
        print(
            f"{variant:8s} {figures['batches']:6d} batches, {figures['batches_per_s']:.1f}/s; "
            f"per 1,000 batches after warm-up: arenas {figures['arenas_per_1000']:+.2f} MB, "
            f"in use {figures['in_use_per_1000']:+.2f}, RSS {figures['rss_per_1000']:+.2f}; "
            f"free in arenas {figures['free_mb']:.0f} MB; RSS {figures['rss_range']} MB; "
            f"mapped blocks {figures['mapped_range']} MB"
        )
    ratio = summary["ratio_product_over_trim"]
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"batches/s product / trim: {ratio:.3f} (target >= {TARGET_RATIO}: {verdict}); {out}")


def run_child(variant: str, minutes: float, path: Path) -> None:
    """One trainer, fed as fast as it trains, sampled every EVERY_S until `minutes` pass."""
    from trainer import _create_version  # bench/trainer.py

    from engine.core import memory
    from engine.core.config import load_config

    if variant == "trim":  # the trainer before the mapping
        memory.map_large_blocks = lambda threshold=0: False
        memory.tensors_from_malloc = lambda: None
    with memory.released_memory(RELEASE_S):
        from engine.trainer.trainer import Trainer, configure_process

        scratch = Path(tempfile.mkdtemp(prefix=f"trainer-memory-{variant}-"))
        config = load_config(REPO / "config.toml")
        config = msgspec.structs.replace(
            config, app=msgspec.structs.replace(config.app, data_dir=str(scratch))
        )
        configure_process(config.trainer)
        version = _create_version(config, "model_0000_demo", 32)
        stop = threading.Event()
        trainer = Trainer(config, version, streamed=True, seed=1)
        feeder = threading.Thread(target=feed, args=(config, trainer, stop), daemon=True)
        feeder.start()
        runner = threading.Thread(target=trainer.run, kwargs={"stop": stop}, daemon=True)
        runner.start()
        started = time.monotonic()
        with path.open("w", newline="", encoding="utf-8") as output:
            writer = csv.writer(output)
            writer.writerow(["s", "batch", *heap_figures()])
            while (elapsed := time.monotonic() - started) < minutes * 60.0:
                time.sleep(EVERY_S)
                figures = heap_figures()
                writer.writerow(
                    [round(elapsed), trainer.batch, *(round(v, 2) for v in figures.values())]
                )
                output.flush()
        stop.set()
        runner.join()


def feed(config: Config, trainer: object, stop: threading.Event) -> None:
    """Balanced sets of game frames, encoded and decoded as the hub's messages, while not stopped.

    Each set is new objects from a decode, as the trainer node's are; a short
    pause between sets lets the trainer's buffers fill up to capacity and rotate.
    """
    from trainer import _game_frames  # bench/trainer.py

    from engine.core import wire
    from engine.data.frames import encode_frame
    from engine.data.samples import Sample, SampleSet

    size = (config.data.frame_width, config.data.frame_height)
    frames = [
        encode_frame(frame, config.data.jpeg_quality, config.data.frame_codec)
        for frame in _game_frames(config, 400, size)
    ]
    rng = np.random.default_rng(1)
    index = 0
    while not stop.is_set():
        sets = []
        for buffer in config.data.balanced_outputs:
            samples = []
            for _ in range(21):
                samples.append(
                    Sample(
                        frame=frames[index % len(frames)],
                        width=size[0],
                        height=size[1],
                        outputs={name: float(rng.uniform(-1, 1)) for name in config.data.outputs},
                        speed=20.0,
                        time=float(index),
                        source="collector-0",
                        episode=index // 1000,
                    )
                )
                index += 1
            sets.append(SampleSet(buffer, tuple(samples)))
        message = wire.decode(wire.encode(wire.SampleSets(sets=tuple(sets))))
        trainer.add_sets(message.sets)
        stop.wait(0.05)


def read_rows(path: Path) -> list[dict[str, float]]:
    """A child's samples."""
    with path.open(encoding="utf-8") as rows:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(rows)]


def summarize(rows: list[dict[str, float]]) -> dict[str, object]:
    """Growth per 1,000 batches after the first third, RSS range, batches/s over the run."""
    if len(rows) < 6 or rows[-1]["batch"] <= rows[len(rows) // 3]["batch"]:
        raise SystemExit("too few samples or batches to fit: run for more --minutes")
    fitted = rows[len(rows) // 3 :]
    batches = np.array([row["batch"] for row in fitted])

    def per_1000(key: str) -> float:
        slope = np.polyfit(batches, np.array([row[key] for row in fitted]), 1)[0]
        return round(float(slope) * 1000.0, 3)

    rss = [row["rss_mb"] for row in fitted]
    return {
        "batches": int(rows[-1]["batch"]),
        "batches_per_s": round(rows[-1]["batch"] / rows[-1]["s"], 2),
        "arenas_per_1000": per_1000("arenas_mb"),
        "in_use_per_1000": per_1000("in_use_mb"),
        "rss_per_1000": per_1000("rss_mb"),
        "free_mb": round(float(np.median([row["free_mb"] for row in fitted])), 1),
        "rss_range": f"{min(rss):.0f}-{max(rss):.0f}",
        # Blocks on their own pages: live large arrays, and oneDNN's pool regions (kept).
        "mapped_range": f"{min(row['mapped_mb'] for row in rows):.0f}"
        f"-{max(row['mapped_mb'] for row in rows):.0f}",
    }


if __name__ == "__main__":
    main()
