"""The Twitch adapter: real twitchio against a local Twitch (tests/twitch_server.py).

A `channel.chat.message` notification travels through twitchio into the
router; the reply arrives as a Helix Send Chat Message request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.commands import Router
from bot.messages import Priority
from bot.outbox import MARGIN_S, WINDOW_S
from bot.tokens import TokenStore
from bot.twitch import TwitchChat
from engine.app.actions import StreamActions
from engine.core.config import ChatConfig, CooldownConfig, TwitchConfig
from tests.bot_helpers import DEMO, XCEPTION, bot_tokens, streaming_actions, twitch_config
from tests.hub_helpers import wait_until
from tests.twitch_server import FakeTwitch, running_twitch

pytestmark = pytest.mark.slow


@pytest.fixture
async def twitch():
    async with running_twitch() as server:
        yield server


@pytest.fixture
async def actions(tmp_path) -> StreamActions:
    return await streaming_actions(tmp_path / "data")


@contextlib.asynccontextmanager
async def running_bot(
    actions: StreamActions,
    store: TokenStore,
    config: TwitchConfig,
    chat: ChatConfig | None = None,
) -> AsyncIterator[TwitchChat]:
    chat = chat or ChatConfig()
    bot = TwitchChat(config, chat, Router(chat, actions), actions.state, store)
    task = asyncio.create_task(bot.run())
    try:
        yield bot
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def twitch_state(actions: StreamActions) -> str:
    return actions.state.connections.get("twitch", "")


async def test_chat_message_goes_through_twitchio_to_the_router_and_back_as_a_helix_message(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await twitch.wait(twitch.subscribed)
        message_id = await twitch.chat("viewer42", "!model", badges=["subscriber"])
        await twitch.wait(lambda: twitch.sent)
    (sent,) = twitch.sent
    assert sent["message"].startswith("On stream: model_0000_demo_v1")
    assert sent["reply_parent_message_id"] == message_id
    assert sent["sender_id"] == twitch.account("charlesbot").user_id
    assert sent["broadcaster_id"] == twitch.channel.user_id


async def test_a_spam_burst_stays_under_twitchs_limit_where_it_counts_and_moderators_get_answers(
    twitch: FakeTwitch, actions, tmp_path
):
    """Twitch's real 20 per 30 s, 63 commands: about 35 s.

    The first reply takes 2.5 s on its way to Twitch: counted from before its
    POST, the 21st reply would reach Twitch 29.5 s after it. Then the window
    fills (18 viewers, 2 moderators) and a burst of 40 viewers and 3
    moderators comes: the moderators' replies wait, the newest 7 viewers'
    with them, the rest are dropped.
    """
    store = bot_tokens(twitch, tmp_path / "data")
    chat = ChatConfig(cooldowns={"stats": CooldownConfig()})  # every viewer's !stats answered
    twitch.arrival_delays_s = [2.5]
    moderators: list[str] = []

    async def moderator(index: int) -> None:
        model = XCEPTION if len(moderators) % 2 == 0 else DEMO
        moderators.append(
            await twitch.chat(f"mod{index}", f"!switch {model}", badges=["moderator"])
        )

    async def replies(count: int) -> None:
        await twitch.wait(lambda: len(twitch.sent) == count)

    async with running_bot(actions, store, twitch_config(twitch), chat) as bot:
        await twitch.wait(twitch.subscribed)
        for index in range(18):  # one at a time: viewers may have 18 of each window
            await twitch.chat(f"viewer{index}", "!stats")
            await replies(index + 1)
        for index in range(2):  # the two kept for moderators
            await moderator(index)
            await replies(19 + index)
        for index in range(18, 58):
            await twitch.chat(f"viewer{index}", "!stats")
            if index % 13 == 0:
                await moderator(index)
        commands = 58 + len(moderators)
        await twitch.wait(
            lambda: len(twitch.sent) + sum(bot.outbox.dropped.values()) == commands, timeout=120
        )
        await wait_until(lambda: "33 replies dropped over Twitch's limit" in twitch_state(actions))
    assert len(twitch.sent) == 30
    assert bot.outbox.dropped == {Priority.NORMAL: 33}
    answered = [sent["reply_parent_message_id"] for sent in twitch.sent]
    assert answered[18:20] == moderators[:2]
    # The burst's moderators go first when the window allows (in the order their switches end).
    assert set(answered[20:23]) == set(moderators[2:])
    assert all(sent["message"].startswith("model_0000_demo_v1 ·") for sent in twitch.sent[23:])
    # Where Twitch counts (on arrival), any 21 replies span Twitch's 30 s and the margin.
    times = twitch.sent_at
    spans = [later - first for first, later in zip(times, times[20:], strict=False)]
    assert min(spans) >= WINDOW_S + MARGIN_S


async def test_link_state_shows_connected_then_off(twitch: FakeTwitch, actions, tmp_path):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await wait_until(lambda: twitch_state(actions).startswith("connected"))
        assert twitch_state(actions) == "connected as charlesbot in #charles"
    assert twitch_state(actions) == "off"


async def test_moderator_badge_switches_and_a_name_alone_does_not(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await twitch.wait(twitch.subscribed)
        # The channel's own name, but without the broadcaster badge: just a viewer.
        await twitch.chat("charles_moderator", f"!switch {XCEPTION}", badges=["vip"])
        await twitch.wait(lambda: len(twitch.sent) == 1)
        assert actions.state.version == "model_0000_demo_v1"
        await twitch.chat("mod42", f"!switch {XCEPTION}", badges=["moderator"])
        await twitch.wait(lambda: len(twitch.sent) == 2)
    assert actions.state.version == f"{XCEPTION}_v1"
    assert "moderators" in twitch.sent[0]["message"]
    assert twitch.sent[1]["message"].startswith(f"Switched to {XCEPTION}_v1")


async def test_the_bot_does_not_answer_its_own_messages(twitch: FakeTwitch, actions, tmp_path):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await twitch.wait(twitch.subscribed)
        await twitch.chat("charlesbot", "!model")
        await twitch.chat("viewer42", "!models")
        await twitch.wait(lambda: twitch.sent)
    assert [sent["message"][:7] for sent in twitch.sent] == ["Models:"]


async def test_on_the_broadcasters_own_account_the_streamers_lines_count(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data", login="charles")
    async with running_bot(actions, store, twitch_config(twitch, bot="")):
        await twitch.wait(twitch.subscribed)
        await twitch.chat("charles", "!stats", badges=["broadcaster"])
        await twitch.wait(lambda: twitch.sent)
        await twitch.chat("charles", twitch.sent[0]["message"], badges=["broadcaster"])  # echo
        await twitch.chat("viewer42", "!models")
        await twitch.wait(lambda: len(twitch.sent) == 2)
    assert twitch.sent[0]["sender_id"] == twitch.channel.user_id
    assert twitch.sent[1]["message"].startswith("Models:")


async def test_session_reconnect_moves_the_link_and_chat_keeps_flowing(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await twitch.wait(twitch.subscribed)
        first_session = next(iter(twitch.sessions))
        await twitch.reconnect()
        await twitch.wait(lambda: first_session not in twitch.sessions and twitch.subscribed())
        await twitch.chat("viewer42", "!stats")
        await twitch.wait(lambda: twitch.sent)
    assert twitch.welcomes == 2
    assert twitch.sent[0]["message"].startswith("model_0000_demo_v1 ·")


async def test_dropped_link_reconnects_with_backoff_resubscribes_and_shows_its_state(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    async with running_bot(actions, store, twitch_config(twitch)):
        await twitch.wait(twitch.subscribed)
        twitch.refuse_websockets = True
        await twitch.drop()
        await wait_until(lambda: twitch_state(actions).startswith("reconnecting"))
        twitch.refuse_websockets = False
        # twitchio retries after a random 0-6 s (its backoff; 0-24 s if that retry came before
        # the state was seen and was refused too), then subscribes again.
        await twitch.wait(twitch.subscribed, timeout=40)
        await wait_until(lambda: twitch_state(actions).startswith("connected"))
        await twitch.chat("viewer42", "!model")
        await twitch.wait(lambda: twitch.sent)
    events = [event for event in actions.state.events if event.startswith("twitch:")]
    assert events[1:4] == [
        "twitch: connected as charlesbot in #charles",
        "twitch: reconnecting: the EventSub link dropped",
        "twitch: connected as charlesbot in #charles",
    ]


async def test_twitch_unreachable_at_start_is_retried_until_it_answers(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    twitch.refuse_websockets = True
    async with running_bot(actions, store, twitch_config(twitch)):
        await wait_until(lambda: twitch_state(actions).startswith("reconnecting in 1 s"))
        twitch.refuse_websockets = False
        await wait_until(lambda: twitch_state(actions).startswith("connected"), timeout=60)


async def test_expired_token_is_refreshed_and_the_new_pair_is_saved(
    twitch: FakeTwitch, actions, tmp_path
):
    store = bot_tokens(twitch, tmp_path / "data")
    stored = store.load()
    twitch.expire(stored.access)
    async with running_bot(actions, store, twitch_config(twitch)):
        await wait_until(lambda: store.load().refresh != stored.refresh)
        await twitch.wait(twitch.subscribed)
        await twitch.chat("viewer42", "!model")
        await twitch.wait(lambda: twitch.sent)
    assert twitch.refreshes == 1
    assert store.load().access in twitch.access  # the saved pair is the live one
    assert store.path.stat().st_mode & 0o777 == 0o600


async def test_without_tokens_the_state_says_to_run_twitch_auth(
    twitch: FakeTwitch, actions, tmp_path
):
    chat = ChatConfig()
    store = TokenStore(tmp_path / "data")
    bot = TwitchChat(twitch_config(twitch), chat, Router(chat, actions), actions.state, store)
    await asyncio.wait_for(bot.run(), timeout=5)
    assert "run `charles-stream twitch auth`" in twitch_state(actions)


async def test_a_token_of_another_account_is_refused_with_both_names(
    twitch: FakeTwitch, actions, tmp_path
):
    chat = ChatConfig()
    store = bot_tokens(twitch, tmp_path / "data", login="someone_else")
    bot = TwitchChat(twitch_config(twitch), chat, Router(chat, actions), actions.state, store)
    await asyncio.wait_for(bot.run(), timeout=5)
    state = twitch_state(actions)
    assert "someone_else" in state and "'charlesbot'" in state
