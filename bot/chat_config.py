"""`[chat]` checked against the declared chat commands: aliases, moments and cooldowns name them.

Example::

    check_chat_config(config.chat, config.source, Router.commands)
    # ConfigError: config.toml: 'chat.aliases.m' = 'nosuch' names no command or moment;
    #     accepted: help, model, models, stats, switch, tag, timeline, vote, water

The foundation's config loader checks what it can alone (types, ranges, name
format, moment text); which commands exist only the bot knows, from its
declarations (`bot/declarations.py`), so these checks live here and speak like
the loader: the file, the key, the value, what is accepted. The router checks
on construction; `charles-stream config check` and the app run
`bot.commands.check_config` before anything starts.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.cooldowns import DEFAULT_KEY
from engine.core.config import ChatConfig
from engine.core.errors import ConfigError


def check_chat_config(chat: ChatConfig, source: str, commands: Collection[str]) -> None:
    """Raise `ConfigError` if `[chat]` of file `source` names a command that `commands` lacks.

    Moments may not take a command's name, an alias may not hide a command or
    moment and must name one, a cooldown must be "default" or name one.
    """
    built_in = sorted(commands)
    for name in chat.moments:
        if name in commands:
            raise ConfigError(
                f"{source}: 'chat.moments.{name}' has the name of a built-in command; built-in: "
                f"{', '.join(built_in)}"
            )
    targets = (*built_in, *chat.moments)
    for alias, target in chat.aliases.items():
        if alias in targets:
            raise ConfigError(
                f"{source}: 'chat.aliases.{alias}' would hide the command or moment of that name; "
                "pick another alias"
            )
        if target not in targets:
            raise ConfigError(
                f"{source}: 'chat.aliases.{alias}' = {target!r} names no command or moment; "
                f"accepted: {', '.join(targets)}"
            )
    for name in chat.cooldowns:
        if name != DEFAULT_KEY and name not in targets:
            raise ConfigError(
                f"{source}: 'chat.cooldowns.{name}' names no command or moment; accepted: "
                f"{DEFAULT_KEY}, {', '.join(targets)}"
            )
