"""The overlay's own history: loss points of the streamed version, numbered alerts."""

from __future__ import annotations

from engine.core.store import HISTORY_LENGTH, AppState
from engine.core.wire import Alert
from overlays.feed import LOSS_TAIL, AlertFeed, LossHistory, OverlayFeed
from tests.overlay_helpers import VERSION, trainer_status


def test_loss_history_keeps_one_point_per_reported_batch():
    state = AppState(version=VERSION)
    history = LossHistory(limit=100)
    for batch in (20, 20, 40, 40, 60):  # the same report seen twice is one point
        state.trainer = trainer_status(batch, 1.0 / batch)
        history.observe(state)
    assert [point[1] for point in history.as_json()["points"]] == [20, 40, 60]
    assert history.as_json()["points"][-1][2]["total"] == 1.0 / 60


def test_loss_history_ignores_another_versions_trainer():
    state = AppState(version="model_0003_xception_v1")
    history = LossHistory(limit=100)
    state.trainer = trainer_status(20, 0.5)  # still the previous version's report
    assert not history.observe(state)
    assert len(history) == 0


def test_loss_history_starts_again_when_the_streamed_version_switches():
    state = AppState(version=VERSION)
    history = LossHistory(limit=100)
    state.trainer = trainer_status(20, 0.5)
    history.observe(state)
    generation = history.generation
    state.version = "model_0003_xception_v1"
    history.observe(state)
    assert len(history) == 0
    assert history.generation != generation
    assert history.as_json()["version"] == "model_0003_xception_v1"


def test_loss_history_starts_again_when_the_trainer_resumes_from_an_older_checkpoint():
    state = AppState(version=VERSION)
    history = LossHistory(limit=100)
    for batch in (20, 40, 60):
        state.trainer = trainer_status(batch, 0.5)
        history.observe(state)
    generation = history.generation
    state.trainer = trainer_status(40, 0.5)
    history.observe(state)
    assert [point[1] for point in history.as_json()["points"]] == [40]
    assert history.generation != generation


def test_loss_history_is_bounded_and_state_messages_carry_only_its_tail():
    state = AppState(version=VERSION)
    history = LossHistory(limit=50)
    for batch in range(1, 201):
        state.trainer = trainer_status(batch, 1.0 / batch)
        history.observe(state)
    assert len(history) == 50
    tail = history.tail()["tail"]
    assert len(tail) == LOSS_TAIL
    assert tail[-1][1] == 200
    assert [point[0] for point in tail] == list(range(201 - LOSS_TAIL, 201))


def test_every_alert_is_numbered_once_also_when_the_deque_rolls_over():
    state = AppState()
    feed = AlertFeed()
    for index in range(HISTORY_LENGTH):
        state.alerts.append(Alert(kind="unstuck", text=f"stuck {index}"))
    feed.observe(state, now_s=1.0)
    assert not feed.observe(state, now_s=2.0)  # nothing new
    for index in range(3):  # pushes the three oldest out of AppState's deque
        state.alerts.append(Alert(kind="moment", text=f"moment {index}"))
    assert feed.observe(state, now_s=3.0)
    shown = feed.as_json()
    assert [entry[2] for entry in shown[-3:]] == ["moment 0", "moment 1", "moment 2"]
    assert [entry[0] for entry in shown[-4:]] == list(range(HISTORY_LENGTH, HISTORY_LENGTH + 4))
    assert shown[-1][3] == 3000


def test_identical_alerts_in_a_row_are_each_shown():
    state = AppState()
    feed = AlertFeed()
    state.alerts.append(Alert(kind="vote", text="viewer votes model_0003"))
    feed.observe(state, now_s=1.0)
    state.alerts.append(Alert(kind="vote", text="viewer votes model_0003"))
    feed.observe(state, now_s=2.0)
    assert [entry[0] for entry in feed.as_json()] == [1, 2]


def test_state_message_shows_the_streamed_model_and_its_batch():
    state = AppState(version=VERSION, version_created="2026-11-20T10:00:00+00:00")
    state.trainer = trainer_status(1180, 0.05)
    feed = OverlayFeed(state, loss_points=10)
    feed.observe(1.0)
    message = feed.state_message()
    assert message["model"] == {
        "version": VERSION,
        "created": "2026-11-20T10:00:00+00:00",
        "batch": 1180,
    }
    assert message["loss"]["tail"][-1][1] == 1180
