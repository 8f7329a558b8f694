"""Sample storage: whole sets per transaction, rotation per buffer, drawn marks, kill -9."""

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

from engine.core.config import DataConfig
from engine.core.db import DatabaseError
from engine.data import storage as storage_module
from engine.data.buffers import SampleBuffers
from engine.data.samples import SampleSet
from engine.data.stats import data_stats
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
        assert row.frame == sample.frame
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


def test_a_row_marked_drawn_is_left_out_of_every_read_and_counted_once(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
        storage.mark_drawn(ids[:5])
        storage.mark_drawn(ids[:2])  # marked twice (a corrupt frame discarded): counted once
        assert [r.id for r in storage.load()] == ids[5:]
        assert len(storage.outputs_by_buffer()["steering"]) == 16
        assert storage.counters()["samples_drawn"] == 5
        assert storage.drawn_pending() == 5


def test_compaction_deletes_drawn_rows_and_their_marks_a_chunk_at_a_time(tmp_path):
    path = tmp_path / "s.db"
    with SampleStorage(path, capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
        storage.mark_drawn(ids[::2])
        assert [storage.compact_drawn(4) for _ in range(4)] == [4, 4, 3, 0]
        assert [r.id for r in storage.load()] == ids[1::2]
        assert storage.drawn_pending() == 0
        assert storage.counters()["samples_drawn"] == 11
    assert stored_row_ids(path) == ids[1::2]


def test_rotation_keeps_capacity_undrawn_rows_and_drops_older_drawn_ones(tmp_path):
    path = tmp_path / "s.db"
    with SampleStorage(path, capacity=30) as storage:
        first = storage.insert_set(full_set("steering"))
        storage.mark_drawn(first[:10])
        second = storage.insert_set(full_set("steering"))
        # 11 + 21 undrawn: the 2 oldest undrawn rotate out, and every drawn row older than them.
        assert [r.id for r in storage.load()] == first[12:] + second
        assert storage.counters()["samples_rotated_out"] == 2
        assert storage.drawn_pending() == 0
    assert stored_row_ids(path) == first[12:] + second


def test_data_stats_count_only_samples_not_drawn(tmp_path):
    with SampleStorage(tmp_path / "s.db", capacity=50) as storage:
        ids = storage.insert_set(full_set("steering"))
        storage.mark_drawn(ids[:8])
        report = data_stats(storage, DataConfig(buffer_capacity=50))
    assert report["buffers"]["steering"]["samples"] == 13
    assert sum(report["buffers"]["steering"]["bins"]["steering"].values()) == 13
    assert report["samples_drawn_total"] == 8


def stored_row_ids(path: Path) -> list[int]:
    """Every row of the samples table, drawn or not, as SQLite holds it."""
    with sqlite3.connect(path) as connection:
        return [i for (i,) in connection.execute("SELECT id FROM samples ORDER BY id")]


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


DRAWER = textwrap.dedent(
    """
    import sys
    from engine.data.buffers import SampleBuffers
    from engine.data.storage import SampleStorage

    path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    storage = SampleStorage(path, capacity=1_000_000)
    buffers = SampleBuffers.open(storage, ("steering",), ready_threshold=1e-6, seed=seed)
    if mode == "draw":
        # Draw as fast as it can; each line is a draw whose mark has committed.
        while drawn := buffers.draw(3):
            print(" ".join(str(s.id) for s in drawn), flush=True)
    else:
        drawn = buffers.draw(int(mode))
        print(" ".join(str(s.id) for s in drawn), flush=True)
        # The deferred delete, one row per transaction, each reported once committed.
        while storage.compact_drawn(1):
            print("compacted", flush=True)
    print("done", flush=True)
    sys.stdin.read()  # until killed
    """
)


def start_drawer(path: Path, seed: int, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRAWER, str(path), str(seed), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )


def kill_9(child: subprocess.Popen) -> list[str]:
    """SIGKILL the child; return every line it printed that was not read yet."""
    child.send_signal(signal.SIGKILL)
    child.wait()
    rest = child.stdout.read().splitlines()
    child.stdout.close()
    child.stdin.close()
    assert child.returncode == -signal.SIGKILL
    return rest


def read_draws(child: subprocess.Popen, count: int) -> list[str]:
    """Up to `count` lines of drawn ids, fewer if the child drew everything first."""
    lines = []
    while len(lines) < count:
        line = child.stdout.readline()
        if not line or line.strip() == "done":
            break
        lines.append(line)
    return lines


def stock(path: Path, sets: int) -> set[int]:
    with SampleStorage(path, capacity=1_000_000) as storage:
        return {i for _ in range(sets) for i in storage.insert_set(full_set("steering"))}


def test_kill_9_while_drawing_never_gives_a_drawn_sample_again_and_loses_none(tmp_path):
    path = tmp_path / "samples.db"
    stored = stock(path, 200)
    printed: set[int] = set()
    # Three trainers in a row, each killed while it draws (and marks) as fast as it can,
    # none ever reaching the deferred delete.
    for seed, draws_before_kill in ((1, 5), (2, 40), (3, 120)):
        drawer = start_drawer(path, seed, "draw")
        lines = read_draws(drawer, draws_before_kill)
        lines += kill_9(drawer)
        drawn_now = {int(i) for line in lines if line.strip() != "done" for i in line.split()}
        assert not drawn_now & printed, "a sample drawn before a kill was drawn again"
        printed |= drawn_now
    with SampleStorage(path, capacity=1_000_000) as storage:
        assert storage.integrity_ok()
        left = {row.id for row in storage.load()}
        counters = storage.counters()
    assert not left & printed
    # Whatever is not left was drawn and counted so: at most one draw per kill was marked
    # but not yet printed (in flight, like the batches a killed trainer was decoding).
    assert counters["samples_drawn"] == len(stored - left)
    assert printed <= stored - left and len(stored - left - printed) <= 3 * 3


def test_kill_9_during_the_deferred_delete_keeps_every_undrawn_sample(tmp_path):
    path = tmp_path / "samples.db"
    stored = stock(path, 100)
    drawer = start_drawer(path, 7, "2000")
    drawn = {int(i) for i in drawer.stdout.readline().split()}
    assert drawer.stdout.readline().strip() == "compacted"  # the delete has begun
    kill_9(drawer)
    undrawn = stored - drawn
    with SampleStorage(path, capacity=1_000_000) as storage:
        assert storage.integrity_ok()
        assert {row.id for row in storage.load()} == undrawn
        assert storage.counters()["samples_drawn"] == len(drawn)
        report = data_stats(storage, DataConfig(buffer_capacity=1_000_000))
        reopened = SampleBuffers.open(storage, ("steering",), ready_threshold=1e-6, seed=1)
        assert reopened.fill() == {"steering": len(undrawn)}
        assert {s.id for s in reopened.draw(1000)} == undrawn
        while storage.compact_drawn(64):
            pass
    assert report["buffers"]["steering"]["samples"] == len(undrawn)
    assert stored_row_ids(path) == []


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
                    sample_set.output, set_id, s.frame, s.width, s.height,
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
    assert [row.frame for row in rows] == [sample.frame for sample in stored]
    assert [row.outputs for row in rows] == [sample.outputs for sample in stored]
    assert counters == {"sets_stored": 2, "samples_stored": len(ids), "samples_drawn": 7}
    assert min(added) > max(ids)
    with sqlite3.connect(path) as connection:
        versions = dict(connection.execute("SELECT component, version FROM schema_versions"))
    assert versions == {"samples": len(storage_module.MIGRATIONS)}


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
    assert columns[-1] == "track" and version == len(storage_module.MIGRATIONS)


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


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA page_size").fetchone()[0]


def test_a_new_storage_keeps_a_raw_128x72_frame_on_one_page(tmp_path):
    raw_row_bytes = 27_657  # RAW1 header + 128 x 72 x 3 (bench/data.py --part costs)
    path = tmp_path / "s.db"
    with SampleStorage(path, capacity=100):
        pass
    assert _page_size(path) == storage_module.PAGE_SIZE > raw_row_bytes


def test_a_storage_made_with_4_kib_pages_keeps_them_and_every_sample(tmp_path):
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA page_size=4096")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE untouched (x)")
    with SampleStorage(path, capacity=100) as storage:
        ids = storage.insert_set(full_set("steering"))
    with SampleStorage(path, capacity=100) as storage:
        assert [r.id for r in storage.load()] == ids
    assert _page_size(path) == 4096
