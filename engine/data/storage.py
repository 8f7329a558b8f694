"""The crash-safe, rotating on-disk copy of the sample buffers (SQLite, WAL, encoded frames).

Example::

    storage = SampleStorage(default_storage_path(config), capacity=2000)
    ids = storage.insert_set(sample_set)          # one transaction, rotation included
    rows = storage.load()                          # refill: blobs as bytes, not decoded
    storage.mark_drawn(drawn_ids)                  # ~0.15 ms: never loaded again
    storage.compact_drawn(limit=64)                # in idle time: the drawn rows' space back

Why SQLite in WAL mode: every `insert_set` is one transaction that adds a whole
set *and* deletes the rows it rotates out, so a `kill -9` at any instant leaves
either the state before or after it, never half a set and never a committed
row missing. WAL lets `data stats` read while a collector or the trainer writes.
`synchronous = NORMAL` survives any process crash (the kernel has the pages);
only a power cut can lose the last few commits, and never corrupts the file.
Frames stay as they came (JPEG or raw, each saying which: `engine.data.frames`),
so refilling 2 x 25,000 samples is one sequential read with no decoding; frames
are decoded at batch time, in the background. A database may hold both codecs
(a streamer who switched `[data] frame_codec`); no column says which. A new
file has 32 KiB pages (`PAGE_SIZE`) so a raw 128x72 row (27.6 KB) sits on one
page: on 4 KiB pages its seven overflow pages made it cost ~4x a JPEG row to
store and ~5x to delete; on one page ~2x and ~6x of a JPEG row's small cost,
and raw is then cheaper end to end (`bench/data.py --part costs`).

The file is on the shared db layer (`engine.core.db`): its tables are the
`samples` component's append-only migrations, so a later schema change upgrades
a streamer's stored buffers in place instead of dropping them. Files written
before migrations existed hold exactly migration 1's tables and no
`schema_versions`; migration 1 therefore creates its tables only if they are
missing, and such a file is recorded at version 1 with every sample kept.

Rows carry the buffer (balanced output) they belong to. The storage mirrors the
buffers: the trainer marks the rows it draws into a batch as drawn, in one
small transaction before the batch is decoded, so a restart never trains twice
on a sample and refills exactly what the buffers held. Why a mark and not a
delete: deleting a row with its frame blob rewrites its table page, its
overflow pages' free list and its index page, 1.5 ms of CPU for a 32-sample
batch on two cores that TensorFlow already fills; inserting 32 ids into the
small `drawn` table costs 0.15 ms (`bench/data.py --part costs`).
The drawn rows themselves go later, where nothing waits on them:
`compact_drawn` (the prefetch thread calls it while the buffers wait for data,
which on a stream they mostly do) and the rotation of a buffer that is full,
which drops its drawn rows older than the oldest row it keeps. Every reader
(`load`, `outputs_by_buffer`, rotation) skips marked rows, so a drawn row is
gone for every purpose the moment its mark commits; ids are AUTOINCREMENT and
never reused, so a mark left behind by a rotation can never hide a new row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import db
from engine.core.config import Config
from engine.data.samples import SampleSet

log = logging.getLogger("charles.data.storage")

COMPONENT = "samples"
# Append-only: never edit a shipped migration, add the next one. Migration 1 is the
# schema of the files written before migrations existed, hence IF NOT EXISTS.
MIGRATIONS: tuple[db.Migration, ...] = (
    (
        """CREATE TABLE IF NOT EXISTS samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            buffer TEXT NOT NULL,
            set_id INTEGER NOT NULL,
            frame BLOB NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            outputs TEXT NOT NULL,
            speed REAL NOT NULL,
            time REAL NOT NULL,
            source TEXT NOT NULL,
            episode INTEGER NOT NULL,
            purpose_direction REAL,
            purpose_distance_m REAL,
            stored_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS samples_by_buffer ON samples (buffer, id)",
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS intake (time REAL NOT NULL, samples INTEGER NOT NULL)",
        """CREATE TABLE IF NOT EXISTS collector_stats (
            source TEXT PRIMARY KEY, stats TEXT NOT NULL, updated_at REAL NOT NULL
        )""",
    ),
    # Drawn rows: marked here at once, deleted from `samples` later (see the module docstring).
    ("CREATE TABLE drawn (id INTEGER PRIMARY KEY)",),
)
# Every reader leaves drawn rows out with this clause.
_NOT_DRAWN = "id NOT IN (SELECT id FROM drawn)"
# A trainer's refill reads while a collector writes sets of megabytes: wait longer than charles.db.
BUSY_TIMEOUT_S = 30.0
# Page size of a samples.db this code creates: a raw 128x72 row (27.6 KB) fits on one page, so
# storing or deleting it touches one page instead of a chain of seven 4 KiB overflow pages.
# A file made earlier keeps its page size (SQLite fixes it at creation; WAL cannot change it).
PAGE_SIZE = 32768

# `data stats` rates intake over this window; older intake rows are pruned after INTAKE_KEEP_S.
INTAKE_WINDOW_S = 60.0
INTAKE_KEEP_S = 3600.0


@dataclass(frozen=True, slots=True)
class StoredSample:
    """A sample as buffers hold it: frame still encoded, with its row id so a draw can mark it."""

    id: int
    buffer: str
    frame: bytes
    width: int
    height: int
    outputs: dict[str, float]


def default_storage_path(config: Config, data_dir: str | Path | None = None) -> Path:
    """`<data_dir>/samples/samples.db`, data_dir defaulting to `[app] data_dir`."""
    root = Path(data_dir if data_dir is not None else config.app.data_dir)
    return root / "samples" / "samples.db"


class SampleStorage:
    """One SQLite file of samples, rotating at `capacity` rows per buffer; thread-safe."""

    def __init__(self, path: str | Path, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"storage capacity must be >= 1, got {capacity}")
        self.path = Path(path)
        self.capacity = capacity
        # One connection shared by the collector's and the prefetch thread, serialised by
        # the lock; plain tuples because a refill reads tens of thousands of rows.
        self._db = db.connect(
            self.path,
            shared_between_threads=True,
            rows_by_name=False,
            busy_timeout_s=BUSY_TIMEOUT_S,
            page_size=PAGE_SIZE,
        )
        self._lock = threading.Lock()
        try:
            db.migrate(self._db, COMPONENT, MIGRATIONS)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the connection (committed data is already safe; this only frees it)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SampleStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def insert_set(self, sample_set: SampleSet) -> list[int]:
        """Store a whole set and rotate its buffer to capacity, atomically; return the new ids."""
        now = time.time()
        with self._lock, db.transaction(self._db):
            # The set counter numbers sets; rows of one set share it (no partial set, ever).
            self._bump("sets_stored", 1)
            (set_id,) = self._db.execute(
                "SELECT value FROM counters WHERE name = 'sets_stored'"
            ).fetchone()
            ids = []
            for s in sample_set.samples:
                cursor = self._db.execute(
                    "INSERT INTO samples (buffer, set_id, frame, width, height, outputs, speed,"
                    " time, source, episode, purpose_direction, purpose_distance_m, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sample_set.output, set_id, s.frame, s.width, s.height,
                        json.dumps(s.outputs), s.speed, s.time, s.source, s.episode,
                        s.purpose_direction, s.purpose_distance_m, now,
                    ),
                )  # fmt: skip
                ids.append(cursor.lastrowid)
            rotated = self._rotate(sample_set.output)
            self._db.execute("INSERT INTO intake (time, samples) VALUES (?, ?)", (now, len(ids)))
            self._db.execute("DELETE FROM intake WHERE time < ?", (now - INTAKE_KEEP_S,))
            self._bump("samples_stored", len(ids))
            self._bump("samples_rotated_out", rotated)
        return ids

    def load(self, after_id: int = 0) -> list[StoredSample]:
        """Every row with id > after_id not drawn yet, oldest first, frames left encoded.

        A row whose outputs cannot be read is skipped, counted as corrupt, logged
        and deleted: a damaged row must never stop a trainer from starting.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, buffer, frame, width, height, outputs FROM samples"
                f" WHERE id > ? AND {_NOT_DRAWN} ORDER BY id",
                (after_id,),
            ).fetchall()
        samples, corrupt = [], []
        for row_id, buffer, frame, width, height, outputs_json in rows:
            try:
                outputs = _parse_outputs(outputs_json)
                if not isinstance(frame, bytes) or width < 1 or height < 1:
                    raise ValueError(f"frame is {type(frame).__name__}, size {width}x{height}")
            except (ValueError, TypeError) as error:
                log.warning("%s: sample %d is corrupt and skipped: %s", self.path, row_id, error)
                corrupt.append(row_id)
                continue
            samples.append(StoredSample(row_id, buffer, frame, width, height, outputs))
        if corrupt:
            self.delete(corrupt, counter="corrupt_samples")
        return samples

    def mark_drawn(self, ids: Iterable[int], *, counter: str = "samples_drawn") -> None:
        """Mark rows drawn into a batch, in one transaction, and add how many to `counter`.

        From its commit on, a marked row is left out of everything this storage
        reads, in every process; `compact_drawn` deletes it later.
        """
        ids = list(ids)
        if not ids:
            return
        with self._lock, db.transaction(self._db):
            marked = self._db.executemany(
                "INSERT OR IGNORE INTO drawn (id) VALUES (?)", [(i,) for i in ids]
            ).rowcount
            self._bump(counter, marked)

    def compact_drawn(self, limit: int) -> int:
        """Delete up to `limit` drawn rows and their marks; return how many marks went.

        Meant for idle time (it costs what marking saved the draw, 20-40 us a
        row): small `limit`s keep each transaction short, so a set arriving
        meanwhile is stored without waiting long.
        """
        with self._lock:
            ids = [
                (i,)
                for (i,) in self._db.execute(
                    "SELECT id FROM drawn ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            ]
            if not ids:
                return 0
            with db.transaction(self._db):
                self._db.executemany("DELETE FROM samples WHERE id = ?", ids)
                self._db.executemany("DELETE FROM drawn WHERE id = ?", ids)
        return len(ids)

    def drawn_pending(self) -> int:
        """Drawn marks whose rows `compact_drawn` has not deleted yet."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM drawn").fetchone()[0]

    def delete(self, ids: Iterable[int], *, counter: str) -> None:
        """Delete rows at once (corrupt ones) and add how many to `counter`."""
        ids = list(ids)
        if not ids:
            return
        with self._lock, db.transaction(self._db):
            deleted = self._db.executemany(
                "DELETE FROM samples WHERE id = ?", [(i,) for i in ids]
            ).rowcount
            self._bump(counter, deleted)

    def add_to_counter(self, name: str, amount: int) -> None:
        """Add to a named counter (e.g. corrupt samples found at batch time)."""
        with self._lock, db.transaction(self._db):
            self._bump(name, amount)

    def counters(self) -> dict[str, int]:
        """Every counter: sets_stored, samples_stored, samples_rotated_out, samples_drawn, ..."""
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def record_collector_stats(self, source: str, stats: Mapping[str, Any]) -> None:
        """Keep the latest cumulative counters a collector reported (a JSON-able mapping)."""
        with self._lock, db.transaction(self._db):
            self._db.execute(
                "INSERT INTO collector_stats (source, stats, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET stats = excluded.stats,"
                " updated_at = excluded.updated_at",
                (source, json.dumps(stats), time.time()),
            )

    def collector_stats(self) -> dict[str, dict[str, Any]]:
        """source -> the last counters it reported."""
        with self._lock:
            rows = self._db.execute("SELECT source, stats FROM collector_stats").fetchall()
        return {source: json.loads(stats) for source, stats in rows}

    def outputs_by_buffer(self) -> dict[str, list[dict[str, float]]]:
        """buffer -> the outputs of every sample in it, drawn ones left out (no frames read)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT buffer, outputs FROM samples WHERE {_NOT_DRAWN}"
            ).fetchall()
        found: dict[str, list[dict[str, float]]] = {}
        for buffer, outputs_json in rows:
            try:
                found.setdefault(buffer, []).append(_parse_outputs(outputs_json))
            except (ValueError, TypeError):
                continue
        return found

    def newest_frames(self, limit: int) -> list[tuple[bytes, int, int]]:
        """The `limit` newest stored frames as (encoded frame, width, height), drawn ones too.

        What the driver's reduced precision calibrates and checks on (the stream's own
        frames, `engine.driver.precision`): a sample drawn into a batch is still a frame the
        game showed, so drawn rows count here.
        """
        if limit < 1:
            raise ValueError(f"newest_frames needs a limit >= 1, got {limit}")
        with self._lock:
            rows = self._db.execute(
                "SELECT frame, width, height FROM samples ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(frame, width, height) for frame, width, height in rows]

    def intake_per_s(self) -> float | None:
        """Samples stored per second over the last minute of intake; None with too little data."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, samples FROM intake WHERE time >= "
                "(SELECT MAX(time) FROM intake) - ? ORDER BY time",
                (INTAKE_WINDOW_S,),
            ).fetchall()
        if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
            return None
        # The first insert opens the window; what came after it arrived during the span.
        return sum(n for _, n in rows[1:]) / (rows[-1][0] - rows[0][0])

    def integrity_ok(self) -> bool:
        """SQLite's own full consistency check of the file."""
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def _rotate(self, buffer: str) -> int:
        """Keep the newest `capacity` undrawn rows of `buffer`; return how many others it dropped.

        Drawn rows older than the oldest kept row go too, with their marks: a
        buffer that is full stays bounded even if the trainer never waits.
        """
        oldest_dropped = self._db.execute(
            f"SELECT id FROM samples WHERE buffer = ? AND {_NOT_DRAWN}"
            " ORDER BY id DESC LIMIT 1 OFFSET ?",
            (buffer, self.capacity),
        ).fetchone()
        if oldest_dropped is None:
            return 0
        older = (buffer, oldest_dropped[0])
        rotated = self._db.execute(
            f"DELETE FROM samples WHERE buffer = ? AND id <= ? AND {_NOT_DRAWN}", older
        ).rowcount
        self._db.execute(
            "DELETE FROM drawn WHERE id IN (SELECT id FROM samples WHERE buffer = ? AND id <= ?)",
            older,
        )
        self._db.execute("DELETE FROM samples WHERE buffer = ? AND id <= ?", older)
        return rotated

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )


def _parse_outputs(text: str) -> dict[str, float]:
    outputs = json.loads(text)
    if not isinstance(outputs, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in outputs.values()
    ):
        raise ValueError(f"outputs are not a name -> number table: {text[:80]!r}")
    return {str(k): float(v) for k, v in outputs.items()}
