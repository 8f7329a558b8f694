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
two buffers) and removes them. A thread draws, JPEG-decodes (OpenCV releases
the GIL) and converts up to `prefetch` batches ahead, so with full buffers the
trainer only ever takes a finished batch off a queue. Pixels stay raw 0-255:
every model normalises its input itself (models/build.py), so the trainer and
the driver feed frames the same way and nothing is normalised twice.

With `mirror` > 0 that share of a batch's frames is flipped left-right and
their `steering` negated (`[data] mirror`): the mirror image of a left-hand
bend is a right-hand bend driven the mirrored way, so a race track without
lanes gets twice the bends from the same recording. Not for a game that keeps
to one side of the road (the built-in game, GTA V): mirrored, it keeps left.

A corrupt sample (bad JPEG, wrong shape, a missing or non-finite output) is
skipped, counted in storage, logged, and replaced by another sample from the
same buffer; it never stops training.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from engine.data.buffers import SampleBuffers
from engine.data.frames import decode_frame
from engine.data.storage import StoredSample

log = logging.getLogger("charles.data.batches")

# How often the prefetch thread re-checks for shutdown while it waits.
_WAKE_S = 0.1


class Batch(NamedTuple):
    """Model inputs and targets: x float32 (N, H, W, 3) raw 0-255; y output -> float32 (N,)."""

    x: np.ndarray
    y: dict[str, np.ndarray]


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
                if not self.buffers.wait_ready(timeout=_WAKE_S):
                    continue
                batch = self._build(self.buffers.draw(self.per_buffer))
                while not self._stop.is_set():
                    try:
                        self._batches.put(batch, timeout=_WAKE_S)
                        break
                    except queue.Full:
                        continue
        except Exception as error:  # surfaced to the trainer by next_batch
            log.exception("batch prefetch failed")
            self._batches.put(error)

    def _build(self, drawn: list[StoredSample]) -> Batch:
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
        if self.mirror > 0.0:
            self._mirror(frames, targets)
        x = frames.astype(np.float32)
        y = {name: targets[i].copy() for i, name in enumerate(self.outputs)}
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
            sample.frame_jpeg, expected=(sample.width, sample.height), size=self.frame_size
        )
