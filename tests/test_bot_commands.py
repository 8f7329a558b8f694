"""The chat router: every command, roles, cooldowns, aliases, against real actions and records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.commands import Router, streamed_seconds
from bot.cooldowns import DEFAULT_COOLDOWN, Cooldown
from bot.declarations import command
from bot.messages import ChatMessage, Priority
from bot.permissions import roles_from_badges
from engine.core.config import ChatConfig, CooldownConfig
from engine.core.store import Received
from engine.core.wire import BufferFill, DriverStatus, TrainerStatus
from engine.records.timeline import TimelineEvent
from tests.bot_helpers import DEMO, XCEPTION, Clock, LouderRouter, streaming_actions

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
    assert await say(router, "!help") == (
        "Commands: !help [COMMAND] !model !models !stats !tag [note] !timeline !vote NAME !water"
        " · moderators: !switch NAME [new]"
    )


async def test_help_with_a_name_says_what_the_command_or_moment_does(router, clock):
    # A reply never starts with the prefix (the bot cannot command itself): "» " goes first.
    assert await say(router, "!help vote", user="a") == (
        "» !vote NAME: votes for the model to stream next; the first vote opens the vote"
    )
    clock.now += 30
    assert await say(router, "!help !switch", user="b") == (
        "» !switch NAME [new]: puts a model line or version on stream now; with new, a new version "
        "of the line (the broadcaster and moderators only)"
    )
    clock.now += 30
    assert await say(router, "!help water", user="c") == (
        '» !water [note]: tags the moment "Charles went for a swim" (and your note)'
    )
    clock.now += 30
    assert (await say(router, "!help nosuch", user="d")).startswith("Commands: !help")


async def test_model_says_version_created_batch_and_time_on_stream(router, actions):
    report = TrainerStatus(version="model_0000_demo_v1", status="training", batch=42)
    actions.state.apply(Received(report, "trainer"))
    text = await say(router, "!model")
    assert text.startswith("On stream: model_0000_demo_v1 (created ")
    assert "batch 42" in text and "streamed for 0 s" in text


async def test_models_lists_lines_and_their_versions(router):
    text = await say(router, "!models")
    assert f"{DEMO} v1" in text and f"{XCEPTION} v1" in text
    assert "model_0004_inceptionresnetv2 (no version yet)" in text
    assert "on stream: model_0000_demo_v1" in text


async def test_stats_reports_training_and_driving_numbers(router, actions):
    trainer = TrainerStatus(
        version="model_0000_demo_v1",
        status="training",
        batch=12_345,
        loss={"total": 0.0213, "steering": 0.01},
        buffers={"steering": BufferFill(fill=1_990, capacity=2_000, needed=1_800)},
        samples_per_s=412.0,
    )
    driver = DriverStatus(version="model_0000_demo_v1", batch=12_000, pps=31.2, fps=58.7)
    actions.state.apply(Received(trainer, "trainer"))
    actions.state.apply(Received(driver, "driver"))
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


async def test_what_moderators_are_told_outranks_viewers_replies_under_the_rate_limit(
    router, clock
):
    async def priority(text: str, roles) -> Priority:
        clock.now += 3600  # no cooldown in the way
        reply = await router.handle(ChatMessage("someone", text, roles, id="id"))
        return reply.priority

    assert await priority(f"!switch {XCEPTION}", MODERATOR) is Priority.HIGH
    assert await priority("!switch nosuch", BROADCASTER) is Priority.HIGH  # refused, told first
    assert await priority("!stats", MODERATOR) is Priority.HIGH
    assert await priority("!stats", VIEWER) is Priority.NORMAL
    assert await priority(f"!switch {XCEPTION}", VIEWER) is Priority.NORMAL  # "Only ... can"


async def test_a_vote_result_is_announced_with_high_priority(router, clock):
    await router.handle(ChatMessage("viewer42", f"!vote {XCEPTION}", VIEWER, id="id"))
    clock.now += 60
    announcement = await router.close_due_vote()
    assert announcement.priority is Priority.HIGH


async def test_switch_to_an_unknown_model_names_it(router, actions):
    text = await say(router, "!switch ../../etc/passwd", roles=MODERATOR)
    assert text == "No model line or version ../../etc/passwd; !models lists them"
    assert actions.state.version == "model_0000_demo_v1"


async def test_switch_to_a_version_whose_checkpoints_are_all_damaged_is_refused_in_chat(
    router, actions, tmp_path
):
    damaged = tmp_path / "data" / "models" / f"{XCEPTION}_v1" / "batch-000000000020"
    damaged.mkdir(parents=True)
    (damaged / "checkpoint.json").write_text("null", encoding="utf-8")
    text = await say(router, f"!switch {XCEPTION}_v1", roles=MODERATOR)
    assert text.startswith(f"Cannot switch to {XCEPTION}_v1: "), text
    assert "checkpoint" in text
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


async def test_declared_cooldowns_are_the_defaults_and_config_entries_win(actions):
    router = Router(ChatConfig(cooldowns={"tag": CooldownConfig(global_s=1.0)}), actions)
    assert router.cooldowns.of("tag") == Cooldown(global_s=1.0, user_s=0.0)
    assert router.cooldowns.of("stats") == Router.commands["stats"].cooldown
    assert router.cooldowns.of("stats") == Cooldown(global_s=10.0, user_s=30.0)
    assert router.cooldowns.of("water") == DEFAULT_COOLDOWN


async def test_a_new_command_declared_once_is_listed_in_help(actions):
    router = LouderRouter(ChatConfig(), actions)
    assert await say(router, "!help") == (
        "Commands: !help [COMMAND] !model !models !shout TEXT !stats !tag [note] !timeline "
        "!vote NAME !water · moderators: !pause !switch NAME [new]"
    )
    assert await say(router, "!help shout", roles=MODERATOR) == "» !shout TEXT: says it louder"
    assert await say(router, "!shout vroom", user="a") == "VROOM"


async def test_a_new_command_gets_its_declared_default_cooldown(actions, clock):
    router = LouderRouter(ChatConfig(), actions, clock=clock)
    assert router.cooldowns.of("shout") == Cooldown(global_s=7.0, user_s=70.0)
    assert await say(router, "!shout a", user="a") == "A"
    clock.now += 6.9
    assert await say(router, "!shout b", user="b") is None
    clock.now += 0.2
    assert await say(router, "!shout b", user="b") == "B"
    clock.now += 60
    assert await say(router, "!shout a", user="a") is None
    clock.now += 3
    assert await say(router, "!shout a", user="a") == "A"


async def test_a_new_command_without_a_cooldown_rests_like_default(actions):
    router = LouderRouter(ChatConfig(), actions)
    assert router.cooldowns.of("pause") == DEFAULT_COOLDOWN


async def test_a_new_moderators_command_is_refused_to_viewers(actions, clock):
    router = LouderRouter(ChatConfig(), actions, clock=clock)
    assert await say(router, "!pause", user="a") == "Only the broadcaster and moderators can !pause"
    assert await say(router, "!pause", user="b", roles=roles_from_badges(["vip"])) is None
    assert await say(router, "!pause", roles=MODERATOR) == "paused"
    assert await say(router, "!pause", roles=BROADCASTER) == "paused"
    clock.now += DEFAULT_COOLDOWN.global_s
    assert await say(router, "!pause", user="b", roles=roles_from_badges(["vip"])) == (
        "Only the broadcaster and moderators can !pause"
    )


def test_a_command_name_declared_twice_in_one_class_is_refused():
    with pytest.raises(TypeError, match=r"Twice\._b declares chat command 'stats' that Twice\._a"):

        class Twice(Router):
            @command("stats", help="one")
            async def _a(self, message: ChatMessage, arguments: str) -> str:
                return "a"

            @command("stats", help="two")
            async def _b(self, message: ChatMessage, arguments: str) -> str:
                return "b"


def test_a_subclass_may_redeclare_a_command_of_its_base():
    class Quiet(Router):
        @command("stats", help="nothing to see", cooldown=Cooldown(global_s=99.0))
        async def _quiet_stats(self, message: ChatMessage, arguments: str) -> str:
            return "shh"

    assert Quiet.commands["stats"].help == "nothing to see"
    assert Router.commands["stats"].help.startswith("training and driving numbers")


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
