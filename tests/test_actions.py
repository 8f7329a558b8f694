"""Switch and tag do the same thing whoever asks: timeline rows, the streamed version, moments."""

from __future__ import annotations

import pytest

from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.core.actions import Action
from engine.core.config import HubConfig
from engine.core.store import AppState, Received
from engine.core.wire import TrainerStatus
from models.checkpoints import META_FILE
from tests.driver_helpers import create_version
from tests.test_models_versions import add_checkpoint_directory


def trainer_report(batch: int) -> TrainerStatus:
    return TrainerStatus(version="model_0000_demo_v1", status="training", batch=batch)


def actions_for(tmp_path) -> StreamActions:
    state = AppState()
    return StreamActions(tmp_path, state, Hub(HubConfig(port=0), "token", state))


async def test_switching_records_the_timeline_and_the_streamed_version(tmp_path):
    create_version(tmp_path)
    create_version(tmp_path)
    actions = actions_for(tmp_path)
    await actions(Action("switch", model="model_0000_demo_v1"))
    actions.state.apply(Received(trainer_report(40), "trainer"))
    reply = await actions(Action("switch", model="model_0000_demo_v2", user="mod"))
    assert reply == {
        "version": "model_0000_demo_v2", "switched": True, "batch": 0, "how": "from scratch"
    }  # fmt: skip
    assert actions.state.version == "model_0000_demo_v2"
    assert actions.state.alerts[-1].text.startswith("mod switched to model_0000_demo_v2")
    assert [(e.kind, e.version, e.batch) for e in actions.timeline.events()] == [
        ("started", "model_0000_demo_v1", 0),
        ("stopped", "model_0000_demo_v1", 40),
        ("started", "model_0000_demo_v2", 0),
    ]


async def test_switching_to_the_streamed_version_changes_nothing(tmp_path):
    create_version(tmp_path)
    actions = actions_for(tmp_path)
    await actions.switch("model_0000_demo_v1")
    assert (await actions.switch("model_0000_demo"))["switched"] is False
    assert len(actions.timeline.events()) == 1


async def test_an_unknown_model_is_refused_by_name(tmp_path):
    actions = actions_for(tmp_path)
    with pytest.raises(ValueError, match="no_such_line"):
        await actions.switch("no_such_line")
    assert actions.timeline.events() == []


async def test_a_tag_stores_a_moment_at_the_current_batch(tmp_path):
    create_version(tmp_path)
    actions = actions_for(tmp_path)
    await actions.switch("model_0000_demo_v1")
    actions.state.apply(Received(trainer_report(7), "trainer"))
    reply = await actions(Action("tag", text="<b>water</b>", user="viewer"))
    assert (reply["version"], reply["batch"], reply["note"]) == (
        "model_0000_demo_v1",
        7,
        "<b>water</b>",
    )
    assert actions.moments.list()[0].user == "viewer"


async def test_a_tag_is_cleaned_of_control_and_bidi_characters_whoever_asks(tmp_path):
    # The API and chat both come here: a right-to-left override would reverse the overlay's alert.
    create_version(tmp_path)
    actions = actions_for(tmp_path)
    await actions.switch("model_0000_demo_v1")
    reply = await actions.tag("into\u202e the\x00 pond\u2067", user="vi\u200bewer\n")
    assert reply["note"] == "into the pond"
    assert actions.moments.list()[0].user == "viewer"
    assert actions.state.alerts[-1].text == "viewer: into the pond"


@pytest.mark.parametrize("meta", ["null", "[]", "5"])
async def test_after_a_damaged_checkpoint_the_timeline_says_the_batch_resumed_from(tmp_path, meta):
    # The trainer falls back from batch-20 (damaged) to batch-15: the timeline says 15.
    version = create_version(tmp_path)
    add_checkpoint_directory(tmp_path, version, 15)
    (add_checkpoint_directory(tmp_path, version, 20) / META_FILE).write_text(meta)
    actions = actions_for(tmp_path)
    reply = await actions.switch(version)
    assert reply["batch"] == 15
    (event,) = actions.timeline.events()
    assert event.describe() == f"started streaming {version} from batch 15 (pre-trained off-stream)"
