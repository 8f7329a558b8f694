"""What goes into the chat router and what comes out, whatever the transport.

Example::

    message = ChatMessage(user="viewer42", text="!stats", roles=frozenset({"subscriber"}))
    reply = await router.handle(message)        # Reply(text="...", reply_to=message.id) or None
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bot.permissions import Role


@dataclass(frozen=True)
class ChatMessage:
    """One chat line: who sent it (name, stable id, roles from badges) and its text.

    `user_id` keeps cooldowns and votes per account even if a name changes;
    transports without ids (console, `charles-stream chat`) leave it empty and
    the name stands in.
    """

    user: str
    text: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    user_id: str = ""
    id: str = ""  # the transport's message id, so a reply can thread under it

    @property
    def key(self) -> str:
        """Who this is for cooldowns and votes."""
        return self.user_id or self.user.lower()


class Priority(enum.Enum):
    """Which replies Twitch's rate limit may cost first (`bot/outbox.py`).

    HIGH: what answers the broadcaster or a moderator (a `!switch` confirmed,
    a name refused) and what announces a change to everyone (a vote's
    result): the stream changed, or a moderator waits to know whether it
    did. NORMAL: answers to viewers' questions (`!stats`, `!model`, a
    refusal), which the next viewer to ask gets again anyway.
    """

    HIGH = "high"
    NORMAL = "normal"


@dataclass(frozen=True)
class Reply:
    """Text for the chat (already plain and within Twitch's length), optionally threaded."""

    text: str
    reply_to: str = ""
    priority: Priority = Priority.NORMAL
