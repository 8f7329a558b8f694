"""Sample storage: whole sets per transaction, rotation per buffer, survives kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

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
