"""Votes: opened by the first vote, one vote per viewer, a threshold, the winner switched to."""

from __future__ import annotations

import pytest

from bot.commands import Router
from bot.messages import ChatMessage
from bot.votes import VoteBox
from engine.core.config import ChatConfig
from tests.bot_helpers import XCEPTION, Clock, streaming_actions


@pytest.fixture
async def actions(tmp_path):
    return await streaming_actions(tmp_path / "data")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def router(actions, clock):
    return Router(ChatConfig(vote_window_s=60.0, vote_threshold=3), actions, clock=clock)


async def vote(router: Router, user: str, name: str) -> str | None:
    reply = await router.handle(ChatMessage(user, f"!vote {name}", frozenset()))
    return reply.text if reply else None


async def test_first_vote_opens_the_window_and_later_votes_are_silent(router):
    opened = await vote(router, "a", XCEPTION)
    assert opened.startswith("Vote open for 60 s: !vote NAME picks the next model (needs 3 votes)")
    assert await vote(router, "b", XCEPTION) is None
    assert router.vote_closes_in() == 60.0


async def test_winner_with_enough_votes_is_switched_to_when_the_window_closes(
    router, actions, clock
):
    for user in ("a", "b", "c"):
        await vote(router, user, XCEPTION)
    await vote(router, "d", "model_0000_demo")
    clock.now += 59.9
    assert await router.close_due_vote() is None
    assert actions.state.version == "model_0000_demo_v1"
    clock.now += 0.1
    announcement = await router.close_due_vote()
    assert announcement.text == (
        f"Vote over ({XCEPTION} 3, model_0000_demo 1): switching to {XCEPTION}_v1"
    )
    assert actions.state.version == f"{XCEPTION}_v1"
    assert actions.state.alerts[-1].kind == "vote"
    assert router.vote_closes_in() is None


async def test_below_the_threshold_nothing_switches(router, actions, clock):
    await vote(router, "a", XCEPTION)
    await vote(router, "b", XCEPTION)
    clock.now += 60
    announcement = await router.close_due_vote()
    assert "the top model needs 3 votes" in announcement.text
    assert actions.state.version == "model_0000_demo_v1"


async def test_one_vote_per_viewer(router, actions, clock):
    for _ in range(5):
        await vote(router, "same_viewer", XCEPTION)
    clock.now += 60
    announcement = await router.close_due_vote()
    assert f"{XCEPTION} 1" in announcement.text
    assert actions.state.version == "model_0000_demo_v1"


async def test_voting_for_an_unknown_model_is_refused_and_not_counted(router, clock):
    reply = await vote(router, "a", "<script>alert(1)</script>")
    assert reply == "No model line or version <script>alert(1)</script>; !models lists them"
    assert router.vote_closes_in() is None


async def test_a_new_vote_can_open_after_one_closed(router, clock):
    await vote(router, "a", XCEPTION)
    clock.now += 60
    await router.close_due_vote()
    clock.now += 5
    assert (await vote(router, "a", XCEPTION)).startswith("Vote open")


def test_a_tie_goes_to_the_model_that_reached_the_top_count_first():
    votes = VoteBox(window_s=10, threshold=2)
    for user, choice in (("a", "x"), ("b", "y"), ("c", "y"), ("d", "x")):
        votes.cast(user, choice, 0.0)
    result = votes.close_if_due(10.0)
    assert result.winner == "y"
    assert result.counts == (("x", 2), ("y", 2))
    assert result.total == 4
