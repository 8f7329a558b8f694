"""Training batches, decoded in the background while the current train step runs.

Example::

    with BatchSource(buffers, batch_size=32, frame_size=(480, 270),
                     outputs=("steering", "throttle_brake")) as source:
        while training:
            batch = source.next_batch(timeout=1.0)    # None while buffers are not ready
            if batch is not None:
                train_step(batch.x, batch.y)          # x: float32 NHWC, raw 0-255 pixels

A batch takes batch_size // n_buffers random samples from *each* buffer
(Balancing_v3's "half of the batch size from the buffers of each output" with
two buffers) and removes them. A thread draws, decodes (a JPEG in OpenCV, which
releases the GIL; a raw frame is one copy into the batch) and converts up to
`prefetch` batches ahead, so with full buffers the trainer only ever takes a
finished batch off a queue. Pixels stay raw 0-255: every model normalises its
input itself (models/build.py), so the trainer and the driver feed frames the
same way and nothing is normalised twice.

With `mirror` > 0 that share of a batch's frames is flipped left-right and
their `steering` negated (`[data] mirror`): the mirror image of a left-hand
bend is a right-hand bend driven the mirrored way, so a race track without
lanes gets twice the bends from the same recording. Not for a game that keeps
to one side of the road (the built-in game, GTA V): mirrored, it keeps left.

A corrupt sample (a bad JPEG or raw frame, a wrong shape, a missing or
non-finite output) is skipped, counted in storage, logged, and replaced by
another sample from the same buffer; it never stops training. Frames of both
codecs may share a batch: each says how it is encoded.

While the buffers wait for data the thread deletes drawn rows from storage a
few at a time (`SampleStorage.compact_drawn`): the draw only marked them, so
that work is off the batches' path. `costs` holds the thread's own CPU time per
part (draw and mark, decode, convert, compaction), read with
`DataPathCosts.per_batch_ms`: on two cores the data path's CPU is taken from
the train step, so these say what it costs the step.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np

from engine.data.buffers import SampleBuffers
from engine.data.frames import decode_frame
from engine.data.storage import StoredSample

log = logging.getLogger("charles.data.batches")

# How often the prefetch thread re-checks for shutdown while it waits.
_WAKE_S = 0.1
# Drawn rows deleted per storage transaction while the buffers wait (20-40 us each): a set
# arriving meanwhile waits for at most one such transaction (a few ms).
COMPACT_ROWS = 64


class Batch(NamedTuple):
    """Model inputs and targets: x float32 (N, H, W, 3) raw 0-255; y output -> float32 (N,)."""

    x: np.ndarray
    y: dict[str, np.ndarray]


@dataclass
class DataPathCosts:
    """CPU seconds of the prefetch thread per part, summed over `batches` batches."""

    batches: int = 0
    draw_s: float = 0.0  # random draw, and the storage transaction that marks it
    decode_s: float = 0.0  # frame decode into the batch array, targets with it
    convert_s: float = 0.0  # mirroring and the float32 conversion
    compact_s: float = 0.0  # deleting drawn rows while the buffers wait (not per batch)
    compacted_rows: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        """Add to parts by name (from the prefetch thread; readers may be elsewhere)."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def per_batch_ms(self) -> dict[str, float]:
        """Milliseconds of CPU per batch for each part, compaction included, and in total."""
        with self._lock:
            batches = max(self.batches, 1)
            parts = {
                f.name.removesuffix("_s"): getattr(self, f.name) * 1000 / batches
                for f in fields(self)
                if f.name.endswith("_s")
            }
        return parts | {"total": sum(parts.values())}


class BatchSource:
    """A background prefetcher of training batches from `SampleBuffers`."""

    def __init__(
        self,
        buffers: SampleBuffers,
        *,
        batch_size: int,
        frame_size: tuple[int, int],
        outputs: Sequence[str],
        prefetch: int = 2,
        mirror: float = 0.0,
        seed: int | None = None,
        costs: DataPathCosts | None = None,
    ) -> None:
        self.per_buffer = batch_size // len(buffers.outputs)
        if self.per_buffer < 1:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the number of buffers "
                f"({len(buffers.outputs)}); each buffer must give at least one sample"
            )
        if self.per_buffer > buffers.ready_threshold * buffers.capacity:
            raise ValueError(
                f"batch_size {batch_size} needs {self.per_buffer} samples per buffer, more "
                f"than a ready buffer is sure to hold ({buffers.ready_threshold:g} x "
                f"{buffers.capacity}); raise data.buffer_capacity or lower the batch size"
            )
        self.buffers = buffers
        self.frame_size = frame_size
        self.outputs = tuple(outputs)
        self.mirror = mirror
        self.costs = costs if costs is not None else DataPathCosts()
        self._rng = np.random.default_rng(seed)
        self._batches: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._prefetch, name="batch-prefetch", daemon=True)
        self._thread.start()

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """The next prefetched batch; None if none is ready within `timeout` seconds."""
        try:
            item = self._batches.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise RuntimeError("the batch prefetch thread failed") from item
        return item

    def close(self) -> None:
        """Stop the prefetch thread (batches already drawn but not taken are discarded)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prefetch(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.buffers.ready():
                    # Idle: delete what earlier draws marked, then sleep until sets come.
                    if not self._compact():
                        self.buffers.wait_ready(timeout=_WAKE_S)
                    continue
                started = time.thread_time()
                drawn = self.buffers.draw(self.per_buffer)
                self.costs.add(draw_s=time.thread_time() - started)
                batch = self._build(drawn)
                while not self._stop.is_set():
                    try:
                        self._batches.put(batch, timeout=_WAKE_S)
                        break
                    except queue.Full:
                        continue
        except Exception as error:  # surfaced to the trainer by next_batch
            log.exception("batch prefetch failed")
            self._batches.put(error)

    def _compact(self) -> int:
        started = time.thread_time()
        rows = self.buffers.storage.compact_drawn(COMPACT_ROWS)
        if rows:
            self.costs.add(compact_s=time.thread_time() - started, compacted_rows=rows)
        return rows

    def _build(self, drawn: list[StoredSample]) -> Batch:
        started = time.thread_time()
        width, height = self.frame_size
        frames = np.empty((len(drawn), height, width, 3), dtype=np.uint8)
        targets = np.empty((len(self.outputs), len(drawn)), dtype=np.float32)
        filled, pending = 0, list(drawn)
        while pending and filled < len(drawn):
            sample = pending.pop()
            try:
                frames[filled] = self._decode(sample)
                targets[:, filled] = self._targets(sample)
            except ValueError as error:  # FrameError included
                log.warning(
                    "sample %d (%s) is corrupt and skipped: %s", sample.id, sample.buffer, error
                )
                self.buffers.storage.add_to_counter("corrupt_samples", 1)
                self.buffers.discard([sample])  # with uses left it would come back
                pending.extend(self.buffers.draw_from(sample.buffer, 1))
                continue
            filled += 1
        frames, targets = frames[:filled], targets[:, :filled]
        decoded = time.thread_time()
        if self.mirror > 0.0:
            self._mirror(frames, targets)
        x = frames.astype(np.float32)
        y = {name: targets[i].copy() for i, name in enumerate(self.outputs)}
        self.costs.add(
            batches=1, decode_s=decoded - started, convert_s=time.thread_time() - decoded
        )
        return Batch(x, y)

    def _mirror(self, frames: np.ndarray, targets: np.ndarray) -> None:
        """Flip a `mirror` share of the frames left-right in place and negate their steering."""
        flipped = self._rng.random(len(frames)) < self.mirror
        frames[flipped] = frames[flipped, :, ::-1]
        if "steering" in self.outputs:
            row = self.outputs.index("steering")
            targets[row, flipped] = -targets[row, flipped]

    def _targets(self, sample: StoredSample) -> list[float]:
        values = []
        for name in self.outputs:
            value = sample.outputs.get(name)
            # A NaN target would turn every later loss into NaN; such a sample is corrupt.
            if value is None or not math.isfinite(value):
                raise ValueError(f"output {name!r} is {value!r}; a finite number is needed")
            values.append(value)
        return values

    def _decode(self, sample: StoredSample) -> np.ndarray:
        return decode_frame(
            sample.frame, expected=(sample.width, sample.height), size=self.frame_size
        )
