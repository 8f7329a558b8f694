"""Chat commands declared once, on their handlers: name, help line, usage, cooldown, audience.

Example::

    class Router(CommandHandlers):
        @command("switch", help="puts a model on stream now", usage="NAME [new]",
                 cooldown=Cooldown(), allowed=MODERATORS,
                 refusal_hint="vote with {prefix}vote NAME")
        async def _switch(self, message: ChatMessage, arguments: str) -> str | None: ...

    Router.commands["switch"].usage           # "NAME [new]"
    sorted(Router.commands)                    # ["help", "model", ..., "vote"]

In the spirit of twitchio 3's `ext.commands` (name, help, cooldown and guard on
the handler), without its transport: the router dispatches on `commands`,
`!help` words itself from it, cooldowns fall back to the declared ones
(`bot/cooldowns.py`) and `[chat]` is checked against its names
(`bot/chat_config.py`). Adding a command is one decorated method.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from bot.cooldowns import Cooldown
from bot.messages import ChatMessage
from bot.permissions import EVERYONE, Audience

# What a viewer types after the prefix; the same rule [chat] aliases and moments follow.
COMMAND_NAME = re.compile(r"[a-z0-9_]{1,25}")

# A handler: (the object it belongs to, the message, the text after the command) -> the reply.
Handler = Callable[[Any, ChatMessage, str], Awaitable[str | None]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class ChatCommand:
    """One chat command as declared on its handler."""

    name: str
    # One line for `!help NAME`: what the command does.
    help: str
    # What follows the name, as `!help` shows it ("NAME [new]"); "" for none.
    usage: str
    # Its default cooldown; None: the [chat.cooldowns] "default" one. A config entry wins.
    cooldown: Cooldown | None
    allowed: Audience
    # Appended to the refusal others get ("{prefix}" is the chat prefix); "" for none.
    refusal_hint: str
    handler: Handler


def command(
    name: str,
    *,
    help: str,
    usage: str = "",
    cooldown: Cooldown | None = None,
    allowed: Audience = EVERYONE,
    refusal_hint: str = "",
) -> Callable[[H], H]:
    """Declare the decorated method of a `CommandHandlers` class as chat command `name`."""
    if not COMMAND_NAME.fullmatch(name):
        raise ValueError(f"chat command name {name!r}: use 1-25 lowercase letters, digits or '_'")
    if not help.strip():
        raise ValueError(f"chat command {name!r} needs a help line")

    def declare(handler: H) -> H:
        handler.__chat_command__ = ChatCommand(  # type: ignore[attr-defined]
            name=name,
            help=help,
            usage=usage,
            cooldown=cooldown,
            allowed=allowed,
            refusal_hint=refusal_hint,
            handler=handler,
        )
        return handler

    return declare


class CommandHandlers:
    """A class whose `@command` methods are its chat commands; `commands` lists them by name.

    A subclass keeps its bases' commands and adds (or replaces, by name) its own.
    """

    commands: ClassVar[Mapping[str, ChatCommand]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        commands = dict(cls.commands)
        mine: dict[str, str] = {}
        for attribute, value in vars(cls).items():
            declared = getattr(value, "__chat_command__", None)
            if not isinstance(declared, ChatCommand):
                continue
            if declared.name in mine:
                raise TypeError(
                    f"{cls.__name__}.{attribute} declares chat command {declared.name!r} that "
                    f"{cls.__name__}.{mine[declared.name]} declares already"
                )
            mine[declared.name] = attribute
            commands[declared.name] = declared
        cls.commands = dict(sorted(commands.items()))
