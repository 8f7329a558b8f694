"""AppState keeps the newest status of every part; status_json is the /api/status body."""

from __future__ import annotations

import json

from engine.core.store import HISTORY_LENGTH, AppState, ProcessState
from engine.core.wire import (
    Alert,
    BufferFill,
    Checkpointed,
    CollectorReport,
    DriverStatus,
    Frames,
    SampleSets,
    TrainerStatus,
)
from engine.data.balance import BalanceStats


def test_status_json_before_any_status_is_valid_json_with_every_key():
    body = json.loads(json.dumps(AppState(version="m_v1").status_json()))

    for key in (
        "version",
        "created",
        "batch",
        "loss",
        "buffers",
        "pps",
        "fps",
        "processes",
        "connections",
    ):
        assert key in body
    assert body["version"] == "m_v1"
    assert body["batch"] is None


def test_recorded_statuses_show_in_status_json():
    state = AppState(version="m_v1", version_created="2024-05-01T10:00:00")
    state.record(
        TrainerStatus(
            version="m_v1",
            status="training",
            batch=12,
            loss={"total": 0.5},
            buffers={"steering": BufferFill(fill=3, capacity=9)},
        ),
        "trainer",
    )
    state.record(DriverStatus(version="m_v1", batch=10, fps=30.0, pps=29.5), "driver")
    state.processes["trainer"] = ProcessState(name="trainer", state="running", pid=42, restarts=1)
    state.connections["obs"] = "off"

    body = state.status_json()

    assert body["created"] == "2024-05-01T10:00:00"
    assert (body["batch"], body["loss"]) == (12, {"total": 0.5})
    assert (body["buffers"]["steering"]["fill"], body["buffers"]["steering"]["capacity"]) == (3, 9)
    assert (body["fps"], body["pps"]) == (30.0, 29.5)
    assert body["processes"]["trainer"]["pid"] == 42
    assert body["processes"]["trainer"]["restarts"] == 1
    assert body["connections"] == {"obs": "off"}


def test_frames_and_checkpoints_are_kept_and_sample_sets_are_not():
    state = AppState()
    state.record(Frames(hood=b"\xff\xd8"), "driver")
    state.record(Checkpointed(version="m_v1", batch=500, path="p"), "trainer")
    state.record(SampleSets(sets=()), "collector-0")

    assert state.frames == Frames(hood=b"\xff\xd8")
    assert state.status_json()["checkpoint"] == {"version": "m_v1", "batch": 500}
    assert state.collectors == {}


def test_only_the_newest_alerts_are_kept():
    state = AppState()
    for number in range(HISTORY_LENGTH + 5):
        state.record(Alert(kind="unstuck", text=str(number)), "driver")

    assert len(state.alerts) == HISTORY_LENGTH
    assert state.alerts[0].text == "5"


def test_each_collectors_newest_report_is_kept_by_its_name():
    state = AppState()
    for sets_sent in (1, 2):
        report = CollectorReport(
            source="collector-0", balance=BalanceStats(strategy="v3"), sets_sent=sets_sent
        )
        state.record(report, "collector-0")

    body = json.loads(json.dumps(state.status_json()))

    assert body["collectors"]["collector-0"]["sets_sent"] == 2
