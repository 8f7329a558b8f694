"""The overlay's own history, built from the state's events: loss points, numbered alerts."""

from __future__ import annotations

import itertools

import msgspec

from engine.core.store import AlertRaised, AppState, Received, VersionStreamed, status_view
from engine.core.wire import DRIVER_STAGES, Alert
from overlays.feed import ALERTS_KEPT, LOSS_TAIL, OverlayFeed
from tests.overlay_helpers import (
    ELSEWHERE,
    VERSION,
    joined_from_other_pcs,
    live_state,
    trainer_status,
)


def streaming(version: str = VERSION) -> AppState:
    state = AppState()
    state.apply(VersionStreamed(version, "2026-11-20T10:00:00+00:00"))
    return state


def report(state: AppState, batch: int, total: float, version: str = VERSION) -> None:
    state.apply(Received(trainer_status(batch, total, version), "trainer"))


def batches(feed: OverlayFeed) -> list[int]:
    return [point[1] for point in feed.loss.as_json()["points"]]


def test_every_trainer_report_is_a_point_also_when_two_come_between_state_messages():
    state = streaming()
    feed = OverlayFeed(state, loss_points=100)
    report(state, 20, 0.5)
    first = feed.state_message()
    report(state, 21, 0.4)  # two reports before the next state message: neither is lost
    report(state, 22, 0.3)
    second = feed.state_message()
    assert [point[1] for point in first["loss"]["tail"]] == [20]
    assert [point[1] for point in second["loss"]["tail"]] == [20, 21, 22]
    assert second["loss"]["tail"][-1][2]["total"] == 0.3


def test_a_report_of_the_same_batch_again_is_not_a_second_point():
    state = streaming()
    feed = OverlayFeed(state, loss_points=100)
    for batch in (20, 20, 40, 40, 60):  # no step between two reports: nothing new to draw
        report(state, batch, 1.0 / batch)
    assert batches(feed) == [20, 40, 60]
    assert feed.loss.as_json()["points"][-1][2]["total"] == 1.0 / 60


def test_another_versions_trainer_reports_are_not_points():
    state = streaming("model_0003_xception_v1")
    feed = OverlayFeed(state, loss_points=100)
    report(state, 20, 0.5)  # still the previous version's report
    assert len(feed.loss) == 0


def test_the_curve_starts_again_when_the_streamed_version_switches():
    state = streaming()
    feed = OverlayFeed(state, loss_points=100)
    report(state, 20, 0.5)
    generation = feed.loss.generation
    state.apply(VersionStreamed("model_0003_xception_v1"))
    assert len(feed.loss) == 0
    assert feed.loss.generation != generation
    assert feed.loss.as_json()["version"] == "model_0003_xception_v1"
    report(state, 5, 0.9, version="model_0003_xception_v1")
    assert batches(feed) == [5]


def test_the_curve_starts_again_when_the_trainer_resumes_from_an_older_checkpoint():
    state = streaming()
    feed = OverlayFeed(state, loss_points=100)
    for batch in (20, 40, 60):
        report(state, batch, 0.5)
    generation = feed.loss.generation
    report(state, 40, 0.5)
    assert batches(feed) == [40]
    assert feed.loss.generation != generation


def test_the_curve_is_bounded_and_state_messages_carry_only_its_tail():
    state = streaming()
    feed = OverlayFeed(state, loss_points=50)
    for batch in range(1, 201):
        report(state, batch, 1.0 / batch)
    assert len(feed.loss) == 50
    tail = feed.state_message()["loss"]["tail"]
    assert len(tail) == LOSS_TAIL
    assert tail[-1][1] == 200
    assert [point[0] for point in tail] == list(range(201 - LOSS_TAIL, 201))


def test_every_alert_is_numbered_once_and_stamped_when_it_was_raised():
    state = AppState()
    clock = itertools.count(1.0)
    feed = OverlayFeed(state, loss_points=10, clock=lambda: next(clock))
    for index in range(ALERTS_KEPT + 3):
        alert = Alert(kind="unstuck", text=f"stuck {index}")
        state.apply(Received(alert, "driver") if index % 2 else AlertRaised(alert))
    shown = feed.state_message()["alerts"]
    assert len(shown) == ALERTS_KEPT
    assert [entry[0] for entry in shown] == list(range(4, ALERTS_KEPT + 4))
    assert shown[-1][1:] == ["unstuck", f"stuck {ALERTS_KEPT + 2}", (ALERTS_KEPT + 3) * 1000]


def test_identical_alerts_in_a_row_are_each_shown():
    state = AppState()
    feed = OverlayFeed(state, loss_points=10)
    state.apply(AlertRaised(Alert(kind="vote", text="viewer votes model_0003")))
    state.apply(AlertRaised(Alert(kind="vote", text="viewer votes model_0003")))
    assert [entry[0] for entry in feed.alerts.as_json()] == [1, 2]


def test_a_feed_made_on_a_running_stream_starts_from_what_the_state_holds():
    state = streaming()
    report(state, 1180, 0.05)
    state.apply(AlertRaised(Alert(kind="moment", text="viewer42: Charles went for a swim")))
    feed = OverlayFeed(state, loss_points=10)
    message = feed.state_message()
    assert message["model"] == {
        "version": VERSION,
        "created": "2026-11-20T10:00:00+00:00",
        "batch": 1180,
    }
    assert message["loss"]["tail"][-1][1] == 1180
    assert [entry[2] for entry in message["alerts"]] == ["viewer42: Charles went for a swim"]


def test_the_driver_stage_times_are_those_of_the_status_api_in_loop_order():
    snapshot = live_state().snapshot()
    driver = OverlayFeed(AppState(), loss_points=10).state_message(snapshot)["driver"]
    api = status_view(snapshot)["stages"]
    assert list(driver["stages"]) == list(DRIVER_STAGES) == list(api)
    for stage, took in driver["stages"].items():
        assert took == {"p50_ms": api[stage]["p50_ms"], "p95_ms": api[stage]["p95_ms"]}
    assert driver["stages"]["predict"] == {"p50_ms": 3.41, "p95_ms": 4.27}


def test_the_driver_state_names_the_convcam_layers_and_kernels():
    state = live_state()
    driver = msgspec.structs.replace(
        state.snapshot().driver, convcam_layers=("a_conv", "b_conv"), convcam_kernels=96
    )
    state.apply(Received(driver, "driver"))
    convcam = OverlayFeed(state, loss_points=10).state_message()["driver"]["convcam"]
    assert convcam == {"layers": ["a_conv", "b_conv"], "kernels": 96}


def test_the_state_names_the_nodes_on_other_pcs_with_their_hosts():
    state = streaming()
    feed = OverlayFeed(state, loss_points=100)
    assert feed.state_message()["elsewhere"] == []
    state.apply(joined_from_other_pcs())
    assert feed.state_message()["elsewhere"] == [f"{n} {w}" for n, w in ELSEWHERE.items()]
