"""The app's state: one `apply`, subscribers, frozen snapshots, and the views built from them."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from engine.core.store import (
    HISTORY_LENGTH,
    AlertRaised,
    AppState,
    ConnectionChanged,
    NodesChanged,
    Noted,
    ProcessChanged,
    ProcessState,
    Received,
    VersionStreamed,
    encode_json,
    status_view,
)
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
from overlays.feed import OverlayFeed

STATUS_KEYS = {
    "version",
    "created",
    "batch",
    "trainer_status",
    "loss",
    "samples_per_s",
    "buffers",
    "checkpoint",
    "driver_version",
    "driver_batch",
    "driver_engine",
    "pps",
    "fps",
    "predictions",
    "pad",
    "unstucks",
    "distance_m",
    "stages",
    "processes",
    "app_process",
    "nodes",
    "node_links",
    "collectors",
    "connections",
    "alerts",
    "events",
}


def strict_json(text: str) -> object:
    """Parse as a browser or any strict parser does: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def streaming(version: str = "m_v1", created: str = "2024-05-01T10:00:00") -> AppState:
    state = AppState()
    state.apply(VersionStreamed(version, created))
    return state


def training(batch: int, total: float, version: str = "m_v1") -> Received:
    report = TrainerStatus(
        version=version,
        status="training",
        batch=batch,
        loss={"total": total},
        buffers={"steering": BufferFill(fill=3, capacity=9)},
    )
    return Received(report, "trainer")


def test_status_view_before_any_status_is_valid_json_with_every_key():
    body = strict_json(encode_json(status_view(streaming().snapshot())))

    assert set(body) == STATUS_KEYS
    assert body["version"] == "m_v1"
    assert body["batch"] is None


def test_applied_statuses_show_in_the_status_view():
    state = streaming()
    state.apply(training(12, 0.5))
    state.apply(
        Received(
            DriverStatus(version="m_v1", batch=10, fps=30.0, pps=29.5, engine="openvino CPU"),
            "driver",
        )
    )
    state.apply(ProcessChanged(ProcessState(name="trainer", state="running", pid=42, restarts=1)))
    state.apply(ConnectionChanged("obs", "off"))

    body = status_view(state.snapshot())

    assert body["created"] == "2024-05-01T10:00:00"
    assert (body["batch"], body["loss"]) == (12, {"total": 0.5})
    assert (body["buffers"]["steering"]["fill"], body["buffers"]["steering"]["capacity"]) == (3, 9)
    assert (body["fps"], body["pps"]) == (30.0, 29.5)
    assert body["driver_engine"] == "openvino CPU"
    assert body["processes"]["trainer"]["pid"] == 42
    assert body["processes"]["trainer"]["restarts"] == 1
    assert body["connections"] == {"obs": "off"}


def test_a_diverged_loss_is_null_in_the_status_json():
    state = streaming()
    state.apply(training(12, math.nan))
    state.apply(Received(DriverStatus(version="m_v1", pps=math.inf), "driver"))

    body = strict_json(encode_json(status_view(state.snapshot())))

    assert body["loss"] == {"total": None}
    assert body["pps"] is None


def test_frames_and_checkpoints_are_kept_and_sample_sets_are_not():
    state = AppState()
    seen = []
    state.subscribe(seen.append)
    state.apply(Received(Frames(hood=b"\xff\xd8"), "driver"))
    state.apply(Received(Checkpointed(version="m_v1", batch=500, path="p"), "trainer"))
    state.apply(Received(SampleSets(sets=()), "collector-0"))

    assert state.frames == Frames(hood=b"\xff\xd8")
    assert status_view(state.snapshot())["checkpoint"] == {"version": "m_v1", "batch": 500}
    assert state.collectors == {}
    assert [type(event.message) for event in seen] == [Frames, Checkpointed]


def test_only_the_newest_alerts_are_kept_from_nodes_and_the_app_alike():
    state = AppState()
    for number in range(HISTORY_LENGTH + 5):
        alert = Alert(kind="unstuck", text=str(number))
        state.apply(Received(alert, "driver") if number % 2 else AlertRaised(alert))

    assert len(state.alerts) == HISTORY_LENGTH
    assert state.alerts[0].text == "5"
    assert state.alerts[-1].text == str(HISTORY_LENGTH + 4)


def test_each_collectors_newest_report_is_kept_by_its_name():
    state = AppState()
    for name, sets_sent in (("collector-0", 1), ("collector-1", 7), ("collector-0", 2)):
        report = CollectorReport(
            source=name, balance=BalanceStats(strategy="v3"), sets_sent=sets_sent
        )
        state.apply(Received(report, name))

    body = strict_json(encode_json(status_view(state.snapshot())))

    assert body["collectors"]["collector-0"]["sets_sent"] == 2
    assert body["collectors"]["collector-1"]["sets_sent"] == 7


def test_a_new_streamed_version_drops_the_old_versions_trainer_report():
    state = streaming("m_v1")
    state.apply(training(12, 0.5))
    state.apply(Received(Checkpointed(version="m_v1", batch=10, path="p"), "trainer"))

    state.apply(VersionStreamed("m_v1", "2024-05-01T10:00:00"))  # the same version again
    assert state.trainer is not None

    state.apply(VersionStreamed("m_v2", "2024-05-02T10:00:00"))
    assert (state.version, state.version_created) == ("m_v2", "2024-05-02T10:00:00")
    assert state.trainer is None
    assert state.checkpoint is not None  # the record of saved weights stays


def test_the_streamed_batch_is_the_trainers_else_the_checkpoints_of_the_streamed_version():
    state = streaming("m_v1")
    assert state.snapshot().streamed_batch() is None
    state.apply(Received(Checkpointed(version="m_v1", batch=10, path="p"), "trainer"))
    assert state.snapshot().streamed_batch() == 10
    state.apply(training(14, 0.5))
    assert state.snapshot().streamed_batch() == 14
    state.apply(training(30, 0.5, version="m_v0"))  # a trainer that has not switched yet
    assert state.snapshot().streamed_batch() == 10


def test_nodes_connections_and_notes_add_event_lines_newest_last():
    state = AppState()
    state.apply(NodesChanged({"driver": "driver"}, "driver (driver) connected"))
    state.apply(ConnectionChanged("twitch", "connected", event="twitch: connected"))
    state.apply(ConnectionChanged("obs", "connected (OBS 30.1)"))  # no line: OBS says it often
    state.apply(Noted("trainer started (pid 7)"))

    assert state.nodes == {"driver": "driver"}
    assert state.connections == {"twitch": "connected", "obs": "connected (OBS 30.1)"}
    assert state.events == (
        "driver (driver) connected",
        "twitch: connected",
        "trainer started (pid 7)",
    )
    for number in range(HISTORY_LENGTH):
        state.apply(Noted(str(number)))
    assert len(state.events) == HISTORY_LENGTH


def test_a_subscriber_sees_each_applied_event_once_in_order():
    state = AppState()
    seen = []
    unsubscribe = state.subscribe(seen.append)
    events = [
        VersionStreamed("m_v1"),
        training(1, 0.5),
        training(1, 0.5),  # the same report twice is two events
        ProcessChanged(ProcessState("trainer", "running")),
        AlertRaised(Alert(kind="switch", text="api switched to m_v1")),
        NodesChanged({}, "trainer (trainer) disconnected"),
    ]
    for event in events:
        state.apply(event)
    unsubscribe()
    state.apply(Noted("after unsubscribing"))

    assert seen == events


def test_a_subscriber_reads_the_state_with_its_event_already_applied():
    state = streaming()
    batches = []
    state.subscribe(lambda event: batches.append(state.snapshot().streamed_batch()))
    state.apply(training(5, 0.5))
    assert batches == [5]


def test_a_failing_subscriber_costs_neither_the_writer_nor_the_other_subscribers():
    state = AppState()
    seen = []

    def broken(event: object) -> None:
        raise RuntimeError("a view's bug")

    state.subscribe(broken)
    state.subscribe(seen.append)
    state.apply(Noted("still applied"))

    assert state.events == ("still applied",)
    assert seen == [Noted("still applied")]


def test_nobody_writes_the_state_except_through_apply():
    state = streaming()
    state.apply(ProcessChanged(ProcessState("trainer", "running")))
    before = state.snapshot()

    with pytest.raises(AttributeError):
        state.version = "m_v9"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.version = "m_v9"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.processes["trainer"].pid = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.connections["obs"] = "off"  # type: ignore[index]
    with pytest.raises(AttributeError):
        state.events.append("x")  # type: ignore[attr-defined]

    state.apply(VersionStreamed("m_v2"))
    assert before.version == "m_v1"  # a snapshot taken earlier stays as it was


def test_the_status_view_and_the_overlay_view_agree_on_shared_values():
    state = streaming()
    feed = OverlayFeed(state, loss_points=10)
    state.apply(training(12, math.nan))
    state.apply(Received(DriverStatus(version="m_v1", batch=10, fps=30.0, pps=29.5), "driver"))
    state.apply(ProcessChanged(ProcessState("trainer", "backoff", restarts=3)))
    state.apply(ConnectionChanged("obs", "off"))
    state.apply(NodesChanged({"driver": "driver"}, "driver (driver) connected"))
    snapshot = state.snapshot()

    status = strict_json(encode_json(status_view(snapshot)))
    overlay = strict_json(encode_json(feed.state_message(snapshot)))

    assert (overlay["model"]["version"], overlay["model"]["created"]) == (
        status["version"],
        status["created"],
    )
    assert overlay["trainer"]["batch"] == status["batch"] == 12
    assert overlay["trainer"]["status"] == status["trainer_status"]
    assert overlay["trainer"]["loss"] == status["loss"] == {"total": None}
    overlay_buffer, status_buffer = overlay["trainer"]["buffers"], status["buffers"]
    assert overlay_buffer["steering"]["fill"] == status_buffer["steering"]["fill"]
    assert (overlay["driver"]["fps"], overlay["driver"]["pps"]) == (status["fps"], status["pps"])
    assert overlay["driver"]["batch"] == status["driver_batch"]
    assert overlay["connections"] == status["connections"]
    assert overlay["events"] == status["events"]
    assert {name: p["state"] for name, p in overlay["processes"].items()} == {
        name: p["state"] for name, p in status["processes"].items()
    }
    assert overlay["driver_connected"] == ("driver" in status["nodes"].values())
