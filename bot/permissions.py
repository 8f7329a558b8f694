"""Who may do what in chat, from Twitch's badges (never from user names).

Example::

    roles = roles_from_badges(["moderator", "subscriber"])    # {"moderator", "subscriber"}
    is_moderator(roles)                                       # True: no cooldowns
    MODERATORS.admits(roles)                                  # True: may !switch

A name can be anything a viewer registers, a badge only Twitch grants: the
broadcaster badge comes with the channel, moderator and VIP badges with the
broadcaster's say-so. The console and `charles-stream chat` speak as the
broadcaster (whoever holds the hub token runs the stream).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Literal

Role = Literal["broadcaster", "moderator", "vip", "subscriber"]

# Twitch badge set IDs -> the role they prove. Lead moderators are moderators; founders
# were among the first subscribers and keep a founder badge instead of the subscriber one.
BADGE_ROLES: dict[str, Role] = {
    "broadcaster": "broadcaster",
    "moderator": "moderator",
    "lead_moderator": "moderator",
    "vip": "vip",
    "subscriber": "subscriber",
    "founder": "subscriber",
}

BROADCASTER: frozenset[Role] = frozenset({"broadcaster"})


def roles_from_badges(badge_set_ids: Iterable[str]) -> frozenset[Role]:
    """The roles a message's badges prove; unknown badges (bits, turbo, ...) prove none."""
    return frozenset(BADGE_ROLES[badge] for badge in badge_set_ids if badge in BADGE_ROLES)


def is_moderator(roles: frozenset[Role]) -> bool:
    """Broadcaster or moderator: may switch models directly and has no cooldowns."""
    return "broadcaster" in roles or "moderator" in roles


class Audience(enum.Enum):
    """Who may use a chat command, as its declaration says (`bot/declarations.py`).

    The value is how a refusal names the audience: "Only the broadcaster and
    moderators can !switch".
    """

    EVERYONE = "everyone"
    MODERATORS = "the broadcaster and moderators"

    def admits(self, roles: frozenset[Role]) -> bool:
        """Whether someone with `roles` may use a command declared for this audience."""
        return self is Audience.EVERYONE or is_moderator(roles)


EVERYONE = Audience.EVERYONE
MODERATORS = Audience.MODERATORS
