"""Chat text made safe to pass on: one printable line, cut to a length.

Example::

    plain_text("hi\\u202e <b>there</b>\\n", 200)   # -> "hi <b>there</b>"
    reply_text("/ban someone")                   # -> "\\u00bb /ban someone" (never a chat command)

Whatever a viewer typed can end up in a stored moment, an overlay alert, a log
line or a chat reply. Control and format characters (newlines, bidi
overrides, zero-width characters, lone surrogates) go; whitespace runs become
one space. HTML is left as text: the overlays render alerts as text, never as
markup.
"""

from __future__ import annotations

import unicodedata

# Twitch's Send Chat Message takes at most 500 characters.
MAX_REPLY_CHARS = 500
ELLIPSIS = "\u2026"
# Twitch reads a message starting with one of these as a chat command (/ban, .timeout).
COMMAND_STARTS = ("/", ".")
SAFE_START = "\u00bb "


def plain_text(text: str, limit: int) -> str:
    """One line of printable text of at most `limit` characters (cut with an ellipsis)."""
    cleaned = " ".join(
        "".join(
            " " if char.isspace() else char
            for char in text
            if char.isspace() or not unicodedata.category(char).startswith("C")
        ).split()
    )
    if len(cleaned) > limit:
        cleaned = cleaned[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return cleaned


def reply_text(text: str) -> str:
    """A chat reply: plain text within Twitch's length, never read as a chat command."""
    cleaned = plain_text(text, MAX_REPLY_CHARS)
    if cleaned.startswith(COMMAND_STARTS):
        cleaned = plain_text(SAFE_START + cleaned, MAX_REPLY_CHARS)
    return cleaned
