"""The chat router: every command, roles, cooldowns, aliases, against real actions and records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.commands import Router, streamed_seconds
from bot.messages import ChatMessage
from bot.permissions import roles_from_badges
from engine.core.config import ChatConfig, CooldownConfig
from engine.core.wire import BufferFill, DriverStatus, TrainerStatus
from engine.records.timeline import TimelineEvent
from tests.bot_helpers import DEMO, XCEPTION, Clock, streaming_actions

VIEWER = frozenset()
MODERATOR = roles_from_badges(["moderator"])
BROADCASTER = roles_from_badges(["broadcaster"])


@pytest.fixture
async def actions(tmp_path):
    return await streaming_actions(tmp_path / "data")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def router(actions, clock):
    return Router(ChatConfig(), actions, clock=clock)


async def say(router: Router, text: str, user: str = "viewer42", roles=VIEWER) -> str | None:
    reply = await router.handle(ChatMessage(user, text, roles, id=f"id-{user}"))
    return reply.text if reply else None


def test_roles_come_from_badges_only():
    assert roles_from_badges(["broadcaster", "subscriber"]) == {"broadcaster", "subscriber"}
    assert roles_from_badges(["lead_moderator"]) == {"moderator"}
    assert roles_from_badges(["founder", "bits", "turbo"]) == {"subscriber"}
    assert roles_from_badges([]) == frozenset()


async def test_help_lists_commands_and_named_moments(router):
    text = await say(router, "!help")
    assert "!stats" in text and "!vote NAME" in text and "!water" in text and "!switch" in text


async def test_model_says_version_created_batch_and_time_on_stream(router, actions):
    actions.state.trainer = TrainerStatus(version="model_0000_demo_v1", status="training", batch=42)
    text = await say(router, "!model")
    assert text.startswith("On stream: model_0000_demo_v1 (created ")
    assert "batch 42" in text and "streamed for 0 s" in text


async def test_models_lists_lines_and_their_versions(router):
    text = await say(router, "!models")
    assert f"{DEMO} v1" in text and f"{XCEPTION} v1" in text
    assert "model_0004_inceptionresnetv2 (no version yet)" in text
    assert "on stream: model_0000_demo_v1" in text


async def test_stats_reports_training_and_driving_numbers(router, actions):
    actions.state.trainer = TrainerStatus(
        version="model_0000_demo_v1",
        status="training",
        batch=12_345,
        loss={"total": 0.0213, "steering": 0.01},
        buffers={"steering": BufferFill(fill=1_990, capacity=2_000, needed=1_800)},
        samples_per_s=412.0,
    )
    actions.state.driver = DriverStatus(
        version="model_0000_demo_v1", batch=12_000, pps=31.2, fps=58.7
    )
    text = await say(router, "!stats")
    assert text == (
        "model_0000_demo_v1 · batch 12,345 · loss 0.0213 · buffer steering 1,990/2,000 · "
        "412 samples/s · 31 PPS / 59 FPS · on stream 0 s"
    )


async def test_stats_before_any_report_says_what_is_missing(router):
    assert await say(router, "!stats") == (
        "model_0000_demo_v1 · trainer starting · driver not running · on stream 0 s"
    )


async def test_tag_stores_the_moment_raises_an_alert_and_answers(router, actions):
    text = await say(router, "!tag   straight into   the pond ", user="viewer7")
    (moment,) = actions.moments.list()
    assert (moment.user, moment.note, moment.version, moment.name) == (
        "viewer7",
        "straight into the pond",
        "model_0000_demo_v1",
        None,
    )
    assert text == f"Moment #{moment.id} tagged: model_0000_demo_v1 at batch 0"
    assert actions.state.alerts[-1].kind == "moment"
    assert actions.state.alerts[-1].text == "viewer7: straight into the pond"


async def test_named_moment_tags_with_its_name_and_text(router, actions):
    text = await say(router, "!water")
    (moment,) = actions.moments.list()
    assert (moment.name, moment.note) == ("water", "Charles went for a swim")
    assert text == f"Charles went for a swim! Moment #{moment.id} at batch 0"
    assert actions.state.alerts[-1].text == "viewer42: Charles went for a swim"


async def test_timeline_shows_the_latest_events(router):
    text = await say(router, "!timeline")
    assert text.startswith("Timeline: ")
    assert "started streaming model_0000_demo_v1 from batch 0 (from scratch)" in text


async def test_moderator_switches_immediately(router, actions):
    text = await say(router, f"!switch {XCEPTION}", roles=MODERATOR)
    assert text == f"Switched to {XCEPTION}_v1 (from scratch, batch 0)"
    assert actions.state.version == f"{XCEPTION}_v1"


async def test_switch_to_the_streamed_model_says_so(router):
    assert await say(router, "!switch model_0000_demo_v1", roles=BROADCASTER) == (
        "model_0000_demo_v1 is on stream already"
    )


async def test_viewer_cannot_switch(router, actions):
    text = await say(router, f"!switch {XCEPTION}", user="broadcaster")
    assert text == "Only the broadcaster and moderators can !switch; vote with !vote NAME"
    assert actions.state.version == "model_0000_demo_v1"


async def test_switch_to_an_unknown_model_names_it(router, actions):
    text = await say(router, "!switch ../../etc/passwd", roles=MODERATOR)
    assert text == "No model line or version ../../etc/passwd; !models lists them"
    assert actions.state.version == "model_0000_demo_v1"


async def test_switch_without_a_name_shows_usage(router):
    assert (await say(router, "!switch", roles=MODERATOR)).startswith("usage: !switch NAME [new]")


async def test_unknown_commands_and_plain_chat_get_no_reply(router):
    assert await say(router, "!nosuchcommand") is None
    assert await say(router, "nice driving") is None
    assert await say(router, "") is None
    assert await say(router, "!") is None


async def test_command_names_ignore_case_and_leading_spaces(router):
    assert (await say(router, "   !MODELS")).startswith("Models:")


async def test_global_cooldown_holds_everyone_until_it_passes(router, clock):
    assert await say(router, "!stats", user="a") is not None
    clock.now += 9.9
    assert await say(router, "!stats", user="b") is None
    clock.now += 0.2
    assert await say(router, "!stats", user="b") is not None


async def test_user_cooldown_holds_only_that_user(router, clock):
    assert await say(router, "!stats", user="a") is not None
    clock.now += 11
    assert await say(router, "!stats", user="a") is None
    assert await say(router, "!stats", user="b") is not None
    clock.now += 20
    assert await say(router, "!stats", user="a") is not None


async def test_moderators_have_no_cooldowns(router):
    assert await say(router, "!stats", roles=MODERATOR) is not None
    assert await say(router, "!stats", roles=MODERATOR) is not None


async def test_prefix_aliases_and_cooldowns_come_from_config(actions, clock):
    config = ChatConfig(
        prefix="?",
        aliases={"s": "stats", "swim": "water"},
        cooldowns={"stats": CooldownConfig(global_s=0.0, user_s=0.0)},
    )
    router = Router(config, actions, clock=clock)
    assert (await say(router, "?s")).startswith("model_0000_demo_v1")
    assert (await say(router, "?s")).startswith("model_0000_demo_v1")
    assert (await say(router, "?swim")).startswith("Charles went for a swim!")
    assert await say(router, "!stats") is None


async def test_a_failing_action_answers_instead_of_raising(router, actions, monkeypatch):
    def broken(**_):
        raise OSError("disk full")

    monkeypatch.setattr(actions.moments, "tag", broken)
    assert await say(router, "!tag oops") == "Sorry, !tag failed; the app's log says why"


def test_streamed_seconds_adds_every_period_of_the_version():
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def event(minutes: int, kind: str, version: str) -> TimelineEvent:
        return TimelineEvent(start + timedelta(minutes=minutes), kind, version, 0)

    events = [
        event(0, "started", "a_v1"),
        event(10, "stopped", "a_v1"),
        event(10, "started", "b_v1"),
        event(30, "stopped", "b_v1"),
        event(30, "started", "a_v1"),
    ]
    assert streamed_seconds(events, "a_v1", start + timedelta(minutes=35)) == (300.0, 900.0)
    assert streamed_seconds(events, "b_v1", start + timedelta(minutes=35)) == (0.0, 1200.0)
