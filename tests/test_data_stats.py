"""`data stats` and `data histogram`: fill, bins, starving bins, intake, corruption at a glance."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from engine.cli import main
from engine.data.balance import BalancerStats, BalanceStats
from engine.data.storage import SampleStorage
from tests.data_helpers import full_set

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[app]
data_dir = "{data_dir}"

[data]
buffer_capacity = 50
"""


@pytest.fixture
def data_dir(tmp_path):
    """A data dir with a config pointing at it, two steering sets and one throttle_brake set."""
    (tmp_path / "config.toml").write_text(CONFIG.format(data_dir=tmp_path), encoding="utf-8")
    with SampleStorage(tmp_path / "samples" / "samples.db", capacity=50) as storage:
        storage.insert_set(full_set("steering", throttle_brake=1.0))
        storage.insert_set(full_set("steering", throttle_brake=1.0))
        storage.insert_set(full_set("throttle_brake"))
        storage.add_to_counter("corrupt_samples", 3)
        balancer = BalancerStats("steering", sets_completed=2, sets_dropped=4)
        balancer.starving = {"[-1.0,-0.9)": 4, "(0.9,1.0]": 1}
        report = {
            "source": "collector-0",
            "balance": msgspec.to_builtins(
                BalanceStats("v3", steps=900, balancers={"steering": balancer})
            ),
            "episodes": 2,
            "respawns": 1,
        }
        storage.record_collector_stats("collector-0", report)
    return tmp_path


def stats_json(data_dir, capsys) -> dict:
    code = main(["data", "stats", "--config", str(data_dir / "config.toml"), "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_stats_json_reports_fill_and_capacity_per_buffer(data_dir, capsys):
    report = stats_json(data_dir, capsys)
    assert report["buffers"]["steering"]["samples"] == 42
    assert report["buffers"]["steering"]["capacity"] == 50
    assert report["buffers"]["steering"]["fill"] == pytest.approx(0.84)
    assert report["buffers"]["throttle_brake"]["samples"] == 23
    assert report["ready"] is False


def test_stats_json_counts_every_bin_of_every_output_per_buffer(data_dir, capsys):
    steering = stats_json(data_dir, capsys)["buffers"]["steering"]
    assert set(steering["bins"]["steering"].values()) == {2}
    assert steering["bins"]["throttle_brake"]["1.0"] == 42
    # Own output perfectly flat, the other one all in one bin: what v4 would improve.
    assert steering["balance"] == {"steering": 1.0, "throttle_brake": 0.0}


def test_stats_json_shows_starving_bins_dropped_sets_and_corrupt_samples(data_dir, capsys):
    report = stats_json(data_dir, capsys)
    assert report["starving_bins"] == {"steering": {"[-1.0,-0.9)": 4, "(0.9,1.0]": 1}}
    assert report["sets_dropped"] == {"steering": 4}
    assert report["corrupt_samples"] == 3
    assert report["samples_stored_total"] == 65
    assert report["samples_per_s"] > 0


def test_stats_leave_out_samples_drawn_but_not_yet_deleted(data_dir, capsys):
    with SampleStorage(data_dir / "samples" / "samples.db", capacity=50) as storage:
        steering = [row.id for row in storage.load() if row.buffer == "steering"]
        storage.mark_drawn(steering[:10])
    report = stats_json(data_dir, capsys)
    assert report["buffers"]["steering"]["samples"] == 32
    assert sum(report["buffers"]["steering"]["bins"]["steering"].values()) == 32
    assert report["samples_drawn_total"] == 10
    assert report["samples_stored_total"] == 65


def test_stats_table_is_printed_without_json(data_dir, capsys):
    assert main(["data", "stats", "--config", str(data_dir / "config.toml")]) == 0
    out = capsys.readouterr().out
    assert "steering" in out and "84%" in out and "[-1.0,-0.9) x4" in out


def test_stats_of_a_missing_storage_exit_2_naming_the_path(tmp_path, capsys):
    config = str(REPO_ROOT / "config.toml")
    code = main(["data", "stats", "--config", config, "--data", str(tmp_path / "nowhere")])
    assert code == 2
    error = capsys.readouterr().err
    assert "no sample storage at" in error and "nowhere" in error


def test_histogram_writes_a_png(data_dir):
    out = data_dir / "charts" / "balance.png"
    code = main(["data", "histogram", "--config", str(data_dir / "config.toml"), "--out", str(out)])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_histogram_refuses_a_non_png_name(data_dir):
    code = main(["data", "histogram", "--data", str(data_dir), "--out", str(data_dir / "b.jpg")])
    assert code == 2
