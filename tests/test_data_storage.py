"""Sample storage: whole sets per transaction, rotation per buffer, survives kill -9."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.core.db import DatabaseError
from engine.data import storage as storage_module
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage
from tests.data_helpers import full_set


def test_a_stored_set_loads_back_with_frames_and_outputs_intact(tmp_path):
    sample_set = full_set("steering", throttle_brake=-0.25)
    with SampleStorage(tmp_path / "s.db", capacity=100) as storage:
        ids = storage.insert_set(sample_set)
        rows = storage.load()
    assert [r.id for r in rows] == ids
    assert {r.buffer for r in rows} == {"steering"}
    for row, sample in zip(rows, sample_set.samples, strict=True):
        assert row.frame_jpeg == sample.frame_jpeg
        assert row.outputs == sample.outputs
        assert (row.width, row.height) == (sample.width, sample.height)


def test_each_buffer_rotates_out_its_oldest_samples_at_capacity(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=30) as storage:
        first = storage.insert_set(full_set("steering"))
        other = storage.insert_set(full_set("throttle_brake"))
        second = storage.insert_set(full_set("steering"))
        rows = storage.load()
        counters = storage.counters()
    steering_ids = [r.id for r in rows if r.buffer == "steering"]
    assert steering_ids == first[12:] + second
    assert [r.id for r in rows if r.buffer == "throttle_brake"] == other
    assert counters["samples_rotated_out"] == 12 and counters["samples_stored"] == 65


def test_storage_reopens_with_everything_committed(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
    with SampleStorage(tmp_path / "s.db", capacity=100) as storage:
        assert [r.id for r in storage.load()] == ids


def test_a_row_with_unreadable_outputs_is_skipped_counted_and_removed(tmp_path):
    path = tmp_path / "s.db"
    with SampleStorage(path, capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE samples SET outputs = 'not json' WHERE id = ?", (ids[3],))
        db.execute('UPDATE samples SET outputs = \'{"steering": "left"}\' WHERE id = ?', (ids[4],))
    with SampleStorage(path, capacity=100) as storage:
        assert [r.id for r in storage.load()] == ids[:3] + ids[5:]
        assert storage.counters()["corrupt_samples"] == 2
        assert len(storage.load()) == 19


def test_deleting_drawn_samples_counts_them(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
        storage.delete(ids[:5], counter="samples_drawn")
        assert len(storage.load()) == 16
        assert storage.counters()["samples_drawn"] == 5


def test_intake_rate_is_unknown_until_two_sets_arrived(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=1000) as storage:
        storage.insert_set(full_set("steering"))
        assert storage.intake_per_s() is None
        storage.insert_set(full_set("steering"))
        assert storage.intake_per_s() > 0


REPO_ROOT = Path(__file__).resolve().parent.parent
WRITER = textwrap.dedent(
    """
    import sys
    from engine.data.storage import SampleStorage
    from tests.data_helpers import full_set

    sample_set = full_set("steering")
    storage = SampleStorage(sys.argv[1], capacity=1_000_000)
    while True:
        ids = storage.insert_set(sample_set)
        print(" ".join(map(str, ids)), flush=True)
    """
)


def test_kill_9_mid_write_leaves_a_consistent_store_with_every_committed_sample(tmp_path):
    path = tmp_path / "samples.db"
    committed: list[int] = []
    # Three writers in a row, each killed while it is writing as fast as it can.
    for commits_before_kill in (5, 40, 120):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(commits_before_kill):
            committed += map(int, writer.stdout.readline().split())
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        assert writer.returncode == -signal.SIGKILL
    with SampleStorage(path, capacity=1_000_000) as storage:
        assert storage.integrity_ok()
        rows = {row.id: row for row in storage.load()}
        assert storage.counters().get("corrupt_samples", 0) == 0
    assert set(committed) <= set(rows)
    with sqlite3.connect(path) as db:
        set_sizes = {size for (size,) in db.execute("SELECT COUNT(*) FROM samples GROUP BY set_id")}
    assert set_sizes == {21}


# samples.db exactly as storage.py created it before it moved onto engine.core.db (no
# schema_versions table): a streamer's file from then must open with every sample in it.
PRE_MIGRATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
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
);
CREATE INDEX IF NOT EXISTS samples_by_buffer ON samples (buffer, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS intake (time REAL NOT NULL, samples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS collector_stats (
    source TEXT PRIMARY KEY, stats TEXT NOT NULL, updated_at REAL NOT NULL
);
"""


def write_pre_migration_file(path: Path, sets: list[SampleSet]) -> list[int]:
    """Store sets the way the old storage did (its connect, pragmas and inserts); return ids."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.executescript(PRE_MIGRATION_SCHEMA)
    ids = []
    for set_id, sample_set in enumerate(sets, start=1):
        connection.execute("BEGIN IMMEDIATE")
        for s in sample_set.samples:
            cursor = connection.execute(
                "INSERT INTO samples (buffer, set_id, frame, width, height, outputs, speed,"
                " time, source, episode, purpose_direction, purpose_distance_m, stored_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sample_set.output, set_id, s.frame_jpeg, s.width, s.height,
                    json.dumps(s.outputs), s.speed, s.time, s.source, s.episode,
                    s.purpose_direction, s.purpose_distance_m, time.time(),
                ),
            )  # fmt: skip
            ids.append(cursor.lastrowid)
        connection.execute(
            "INSERT INTO intake (time, samples) VALUES (?, ?)",
            (time.time(), len(sample_set.samples)),
        )
        connection.execute("COMMIT")
    connection.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?)",
        [("sets_stored", len(sets)), ("samples_stored", len(ids)), ("samples_drawn", 7)],
    )
    connection.close()
    return ids


def test_a_samples_db_from_before_migrations_opens_with_every_sample(tmp_path):
    path = tmp_path / "samples.db"
    sets = [full_set("steering"), full_set("throttle_brake", throttle_brake=-0.5)]
    ids = write_pre_migration_file(path, sets)
    with SampleStorage(path, capacity=100) as storage:
        rows = storage.load()
        counters = storage.counters()
        added = storage.insert_set(full_set("steering"))
    assert [row.id for row in rows] == ids
    stored = [sample for sample_set in sets for sample in sample_set.samples]
    assert [row.frame_jpeg for row in rows] == [sample.frame_jpeg for sample in stored]
    assert [row.outputs for row in rows] == [sample.outputs for sample in stored]
    assert counters == {"sets_stored": 2, "samples_stored": len(ids), "samples_drawn": 7}
    assert min(added) > max(ids)
    with sqlite3.connect(path) as connection:
        versions = dict(connection.execute("SELECT component, version FROM schema_versions"))
    assert versions == {"samples": 1}


def test_stored_buffers_survive_the_next_schema_change(tmp_path, monkeypatch):
    path = tmp_path / "samples.db"
    with SampleStorage(path, capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
    # What a future release might append; the shipped migrations stay as they are.
    monkeypatch.setattr(
        storage_module,
        "MIGRATIONS",
        (*storage_module.MIGRATIONS, ("ALTER TABLE samples ADD COLUMN track TEXT",)),
    )
    with SampleStorage(path, capacity=100) as storage:
        assert [row.id for row in storage.load()] == ids
        assert storage.counters()["samples_stored"] == 21
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(samples)")]
        (version,) = connection.execute(
            "SELECT version FROM schema_versions WHERE component = 'samples'"
        ).fetchone()
    assert columns[-1] == "track" and version == 2


def test_a_samples_db_from_a_newer_release_is_refused_untouched(tmp_path, monkeypatch):
    path = tmp_path / "samples.db"
    with SampleStorage(path, capacity=100) as storage:
        storage.insert_set(full_set("steering"))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_versions SET version = 9 WHERE component = 'samples'")
    with pytest.raises(DatabaseError, match=r"samples.db has 'samples' at schema version 9"):
        SampleStorage(path, capacity=100)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 21
