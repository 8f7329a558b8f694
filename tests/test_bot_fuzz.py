"""10,000 fuzzed chat lines: no crash, and nothing unsafe reaches replies, alerts or records."""

from __future__ import annotations

import random
import unicodedata

from bot.commands import Router
from bot.messages import ChatMessage
from bot.permissions import roles_from_badges
from bot.text import MAX_REPLY_CHARS, plain_text, reply_text
from engine.core.config import ChatConfig
from engine.records.moments import MAX_NOTE_CHARS
from tests.bot_helpers import Clock, streaming_actions

MESSAGES = 10_000
HTML = (
    "<script>alert(1)</script>",
    '<img src=x onerror="fetch(`//evil`)">',
    "</div><iframe src=javascript:alert(1)>",
    "&lt;b&gt;&#x3C;svg onload=alert(1)&#x3E;",
)
SPECIAL = (
    "\n/ban charlesbot",
    "\r\n.timeout viewer 600",
    "\u202eevil\u202c",
    "\u200b\u200d\ufeff",
    "\x00\x07\x1b[31m",
    "\ud800",
    "'; DROP TABLE moments; --",
    "../../../../etc/passwd",
    "%s%n{0}{__class__}",
    "\U0001f697\U0001f4a8\U0001f30a",
    "Z\u0351\u0352\u0357\u035b\u0363",
    "\u0645\u0631\u062d\u0628\u0627 \u4f60\u597d \u3053\u3093\u306b\u3061\u306f",
)
COMMANDS = ("!tag", "!water", "!vote", "!switch", "!stats", "!model", "!models", "!timeline",
            "!help", "!TAG", "!!tag", "! tag", "!tag\u200b", "!nosuch", "")  # fmt: skip
BADGES = ("broadcaster", "moderator", "vip", "subscriber", "founder", "bits", "turbo")


def fuzzed_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(1, 80)))
    if kind < 0.4:
        return "".join(rng.choices(SPECIAL + HTML, k=rng.randrange(200, 1000)))[:10_240]  # 10 kB
    return " ".join(rng.choice(SPECIAL + HTML) for _ in range(rng.randrange(1, 4)))


def fuzzed_message(rng: random.Random, number: int) -> ChatMessage:
    text = f"{rng.choice(COMMANDS)} {fuzzed_text(rng)}" if rng.random() < 0.8 else fuzzed_text(rng)
    if rng.random() < 0.01:
        text = "!switch " + rng.choice(("model_0003_xception", "model_0000_demo_v1"))
    user = fuzzed_text(rng) if rng.random() < 0.3 else f"viewer{number % 500}"
    badges = rng.sample(BADGES, rng.randrange(0, 3))
    return ChatMessage(user, text, roles_from_badges(badges), user_id=str(number % 700))


def is_plain(text: str) -> bool:
    return "\n" not in text and all(not unicodedata.category(c).startswith("C") for c in text)


async def test_ten_thousand_fuzzed_messages_crash_nothing_and_inject_nothing(tmp_path):
    actions = await streaming_actions(tmp_path / "data")
    clock = Clock()
    router = Router(ChatConfig(), actions, clock=clock)
    rng = random.Random(20260501)
    replies = []
    for number in range(MESSAGES):
        clock.now += 0.05
        reply = await router.handle(fuzzed_message(rng, number))
        if reply is not None:
            replies.append(reply.text)
        if number % 100 == 0:
            closed = await router.close_due_vote()
            if closed is not None:
                replies.append(closed.text)

    assert len(replies) > 100  # the fuzz reached the commands, not only the ignore path
    for text in replies:
        assert is_plain(text) and 0 < len(text) <= MAX_REPLY_CHARS, text[:100]
        assert not text.startswith(("/", ".", "!")), text[:100]  # no chat or bot command
    moments = actions.moments.list()
    assert moments, "some fuzzed !tag and !water commands must have been stored"
    for moment in moments:
        assert is_plain(moment.note) and len(moment.note) <= MAX_NOTE_CHARS
        assert is_plain(moment.user)
    for alert in actions.state.alerts:
        assert is_plain(alert.text), alert.text[:100]
    known = {"model_0000_demo_v1", "model_0003_xception_v1"}
    assert {event.version for event in actions.timeline.events()} <= known
    assert actions.state.version in known


def test_plain_text_keeps_scripts_and_emoji_and_drops_controls():
    assert plain_text("a\u202eb\u200bc\n\td\x00", 100) == "abc d"
    assert plain_text("\u4f60\u597d \U0001f697 <b>", 100) == "\u4f60\u597d \U0001f697 <b>"
    assert plain_text("x" * 300, 10) == "x" * 9 + "\u2026"


def test_replies_never_start_as_a_chat_command():
    assert reply_text("/ban someone") == "\u00bb /ban someone"
    assert reply_text(".timeout someone") == "\u00bb .timeout someone"
    assert len(reply_text("y" * 2000)) == MAX_REPLY_CHARS
