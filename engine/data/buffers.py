"""The trainer's sample buffers: one per balanced output, mirrored by storage.

Example::

    buffers = SampleBuffers.from_config(config)   # storage opened and refilled at once
    buffers.add_set(sample_set)         # from a collector (via the hub)
    if buffers.ready():                 # every buffer >= 90% full
        drawn = buffers.draw(16)        # 16 random samples from EACH buffer, removed
    buffers.storage.compact_drawn(64)   # in idle time: delete what draws marked

Drawn samples are removed from memory and marked drawn in storage in one step
(one transaction per draw, committed before the batch is decoded), so the two
never disagree: the reference's rule is that a sample is used once, and after a
crash the trainer refills exactly what it had not yet trained on. The drawn
rows' deletion is deferred to idle time (`SampleStorage.compact_drawn`); a
`kill -9` before it loses nothing and trains nothing twice, because every
read leaves marked rows out. With
`[data] uses_per_sample` = N > 1 (scarce recorded play) a drawn sample stays
until its N-th draw; the count lives in memory, so after a crash a sample may
be used a few more times than N, never lost. A
`kill -9` between the mark and the train step costs at most the batches in
flight, which were consumed anyway; no sample that was still waiting is lost.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from pathlib import Path

from engine.core.config import Config
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage, StoredSample, default_storage_path


class SampleBuffers:
    """In-memory encoded samples per balanced output, kept equal to what storage holds."""

    def __init__(
        self,
        storage: SampleStorage,
        outputs: Sequence[str],
        *,
        ready_threshold: float,
        seed: int | None = None,
        uses_per_sample: int = 1,
    ) -> None:
        if not outputs:
            raise ValueError("SampleBuffers needs at least one balanced output")
        if not 0.0 < ready_threshold <= 1.0:
            raise ValueError(f"ready_threshold must be in (0, 1], got {ready_threshold}")
        if uses_per_sample < 1:
            raise ValueError(f"uses_per_sample must be >= 1, got {uses_per_sample}")
        self.uses_per_sample = uses_per_sample
        self._uses: dict[int, int] = {}  # draws so far of samples drawn but kept (by row id)
        self.storage = storage
        self.outputs = tuple(outputs)
        # One capacity for memory and disk: storage rotates at it, so the buffers do too.
        self.capacity = storage.capacity
        self.ready_threshold = ready_threshold
        self._random = random.Random(seed)
        # Storage calls happen under the lock too, so memory and disk change together.
        self._buffers: dict[str, _Pool] = {name: _Pool() for name in self.outputs}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # The newest storage row held so far: `load_new` reads only what came after it.
        self._newest_id = 0

    @classmethod
    def open(
        cls,
        storage: SampleStorage,
        outputs: Sequence[str],
        *,
        ready_threshold: float,
        seed: int | None = None,
        uses_per_sample: int = 1,
    ) -> SampleBuffers:
        """Buffers refilled from storage at once (encoded frames only; nothing is decoded)."""
        buffers = cls(
            storage,
            outputs,
            ready_threshold=ready_threshold,
            seed=seed,
            uses_per_sample=uses_per_sample,
        )
        with buffers._lock:
            buffers._append(storage.load())
        return buffers

    @classmethod
    def from_config(
        cls, config: Config, *, data_dir: str | Path | None = None, seed: int | None = None
    ) -> SampleBuffers:
        """Open `<data_dir>/samples/samples.db` with `[data]` settings and refill from it."""
        storage = SampleStorage(
            default_storage_path(config, data_dir), capacity=config.data.buffer_capacity
        )
        return cls.open(
            storage,
            config.data.balanced_outputs,
            ready_threshold=config.data.ready_threshold,
            seed=seed,
            uses_per_sample=config.data.uses_per_sample,
        )

    def add_set(self, sample_set: SampleSet) -> None:
        """Store a balanced set (rotating storage) and append it to its buffer."""
        if sample_set.output not in self._buffers:
            raise ValueError(
                f"sample set for {sample_set.output!r} has no buffer; buffers: "
                f"{', '.join(self.outputs)}"
            )
        with self._lock:
            ids = self.storage.insert_set(sample_set)
            self._append(
                [
                    StoredSample(row_id, sample_set.output, s.frame, s.width, s.height, s.outputs)
                    for row_id, s in zip(ids, sample_set.samples, strict=True)
                ]
            )
            self._changed.notify_all()

    def load_new(self) -> int:
        """Append rows another process stored since the last look; return how many came.

        An off-stream trainer waits on storage that a `collect` run fills alongside it.
        """
        with self._lock:
            rows = self.storage.load(after_id=self._newest_id)
            self._append(rows)
            if rows:
                self._changed.notify_all()
        return len(rows)

    def fill(self) -> dict[str, int]:
        """Samples held per buffer."""
        with self._lock:
            return {name: len(buffer) for name, buffer in self._buffers.items()}

    def ready(self) -> bool:
        """Training may run only while every buffer is at least `ready_threshold` full."""
        with self._lock:
            return self._ready()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until `ready()` (new sets wake it), or the timeout; return `ready()`."""
        with self._changed:
            return self._changed.wait_for(self._ready, timeout)

    def draw(self, per_buffer: int) -> list[StoredSample]:
        """Draw `per_buffer` random samples from every buffer (fewer if one runs short).

        A sample leaves memory and is marked drawn in storage at its last use (at
        once with one use per sample), for all buffers in one transaction.
        """
        with self._lock:
            drawn: list[StoredSample] = []
            spent: list[int] = []
            for buffer in self._buffers.values():
                drawn.extend(self._take(buffer, per_buffer, spent))
            self.storage.mark_drawn(spent)
        return drawn

    def draw_from(self, output: str, count: int) -> list[StoredSample]:
        """Draw `count` random samples from one buffer (to replace corrupt ones in a batch)."""
        with self._lock:
            spent: list[int] = []
            drawn = self._take(self._buffers[output], count, spent)
            self.storage.mark_drawn(spent)
            return drawn

    def discard(self, samples: Sequence[StoredSample]) -> None:
        """Remove samples for good, whatever their uses left (a frame that does not decode)."""
        with self._lock:
            for sample in samples:
                pool = self._buffers.get(sample.buffer)
                if pool is not None:
                    pool.remove(sample.id)
                self._uses.pop(sample.id, None)
            # Marked, not deleted: one already marked at its last use is not counted twice.
            self.storage.mark_drawn([s.id for s in samples])

    def _take(self, buffer: _Pool, count: int, spent: list[int]) -> list[StoredSample]:
        """Random samples of one buffer; those at their last use leave memory, ids to `spent`."""
        drawn = buffer.pick(self._random, count)
        for sample in drawn:
            i = sample.id
            uses = self._uses.get(i, 0) + 1
            if uses >= self.uses_per_sample:
                buffer.remove(i)
                self._uses.pop(i, None)
                spent.append(i)
            else:
                self._uses[i] = uses
        return drawn

    def _ready(self) -> bool:
        needed = self.ready_threshold * self.capacity
        return all(len(buffer) >= needed for buffer in self._buffers.values())

    def _append(self, rows: Sequence[StoredSample]) -> None:
        for row in rows:
            self._newest_id = max(self._newest_id, row.id)
            buffer = self._buffers.get(row.buffer)
            if buffer is None:
                # A buffer of an output no longer balanced: left in storage, unused.
                continue
            buffer.add(row)
            if len(buffer) > self.capacity:
                # Storage rotated this row out in the insert's own transaction (oldest first).
                self._uses.pop(buffer.remove_oldest(), None)


class _Pool:
    """One buffer's samples: O(1) random picks and removals, oldest first for rotation.

    A draw picks a few of up to 25,000 samples (the reference's capacity); copying
    the ids to sample from them cost more than the draw's own storage transaction.
    Removal swaps the last id into the hole, so `ids` is unordered; the dict keeps
    insertion order for rotation.
    """

    def __init__(self) -> None:
        self._samples: dict[int, StoredSample] = {}  # insertion order: oldest first
        self._ids: list[int] = []
        self._index: dict[int, int] = {}  # id -> its position in _ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, sample: StoredSample) -> None:
        if sample.id in self._samples:
            return
        self._samples[sample.id] = sample
        self._index[sample.id] = len(self._ids)
        self._ids.append(sample.id)

    def pick(self, rng: random.Random, count: int) -> list[StoredSample]:
        """Up to `count` distinct random samples, left in the pool."""
        positions = rng.sample(range(len(self._ids)), min(count, len(self._ids)))
        return [self._samples[self._ids[p]] for p in positions]

    def remove(self, sample_id: int) -> None:
        """Take a sample out (no-op if it is not here)."""
        position = self._index.pop(sample_id, None)
        if position is None:
            return
        del self._samples[sample_id]
        last = self._ids.pop()
        if last != sample_id:
            self._ids[position] = last
            self._index[last] = position

    def remove_oldest(self) -> int:
        """Take out the sample added first; return its id."""
        oldest = next(iter(self._samples))
        self.remove(oldest)
        return oldest
