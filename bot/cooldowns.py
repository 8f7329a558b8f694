"""Per-command cooldowns: for everyone after any use, and per user.

Example::

    cooldowns = Cooldowns(config.chat, {"stats": Cooldown(global_s=10.0, user_s=30.0)})
    if cooldowns.ready("stats", "viewer42", now):
        cooldowns.use("stats", "viewer42", now)      # then answer
    cooldown_of(config.chat, "water")                # Cooldown(global_s=5.0, user_s=30.0)

How long a command rests comes from, in this order: its own `[chat.cooldowns]`
entry, the default its declaration gives (`@command(cooldown=...)` in
`bot/commands.py`), the `[chat.cooldowns] default` entry, `DEFAULT_COOLDOWN`.
So a new command brings its own default, and the config file only holds what
a streamer changed.

A command on cooldown is ignored silently: answering "wait 20 s" would cost
the chat the very messages the cooldown saves. The times are those of the
router's clock (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.core.config import ChatConfig

# Per-user entries are pruned once there are this many, so a raid of new names cannot grow
# the table without bound.
PRUNE_AT = 10_000
# The [chat.cooldowns] entry for every command or moment without one of its own.
DEFAULT_KEY = "default"


@dataclass(frozen=True)
class Cooldown:
    """How often one command runs: once per `global_s` for everyone, once per `user_s` per user."""

    global_s: float = 0.0
    user_s: float = 0.0


# What "default" means when the config file does not say: named moments, refusals.
DEFAULT_COOLDOWN = Cooldown(global_s=5.0, user_s=30.0)


def cooldown_of(chat: ChatConfig, name: str, declared: Cooldown | None = None) -> Cooldown:
    """The cooldown of command or moment `name` whose declaration gives `declared` (or none).

    The config's own entry, else `declared`, else the config's "default" entry,
    else `DEFAULT_COOLDOWN`.
    """
    entry = chat.cooldowns.get(name) if name != DEFAULT_KEY else None
    if entry is not None:
        return Cooldown(global_s=entry.global_s, user_s=entry.user_s)
    if declared is not None:
        return declared
    entry = chat.cooldowns.get(DEFAULT_KEY)
    if entry is not None:
        return Cooldown(global_s=entry.global_s, user_s=entry.user_s)
    return DEFAULT_COOLDOWN


class Cooldowns:
    """When each command was last used, overall and by each user.

    `declared`: command name -> the cooldown its declaration gives (None: the default).
    Any other name (a named moment, a refusal) rests like "default".
    """

    def __init__(self, config: ChatConfig, declared: Mapping[str, Cooldown | None]) -> None:
        # The config and the declarations are fixed for the router's life: look each name up once.
        self._config = config
        self._declared = declared
        self._by_name: dict[str, Cooldown] = {}
        self._last_global: dict[str, float] = {}
        self._last_by_user: dict[tuple[str, str], float] = {}
        names = {*declared, *config.cooldowns, *config.moments, DEFAULT_KEY}
        self._longest_user_s = max(self.of(name).user_s for name in names)

    def of(self, command: str) -> Cooldown:
        """The cooldown of `command` (a command, a moment, or any other key: the default)."""
        cooldown = self._by_name.get(command)
        if cooldown is None:
            cooldown = cooldown_of(self._config, command, self._declared.get(command))
            self._by_name[command] = cooldown
        return cooldown

    def ready(self, command: str, user: str, now: float) -> bool:
        """Whether `user` may use `command` at `now`."""
        cooldown = self.of(command)
        last = self._last_global.get(command)
        if last is not None and now - last < cooldown.global_s:
            return False
        last = self._last_by_user.get((command, user))
        return last is None or now - last >= cooldown.user_s

    def use(self, command: str, user: str, now: float) -> None:
        """Start both cooldowns of `command` for `user` at `now`."""
        self._last_global[command] = now
        if self.of(command).user_s > 0:
            if len(self._last_by_user) >= PRUNE_AT:
                self._prune(now)
            self._last_by_user[(command, user)] = now

    def _prune(self, now: float) -> None:
        longest = self._longest_user_s
        live = {key: at for key, at in self._last_by_user.items() if now - at < longest}
        if len(live) >= PRUNE_AT:
            # More users within one cooldown than the table holds: the oldest half forget theirs.
            newest = sorted(live.items(), key=lambda item: item[1])[len(live) // 2 :]
            live = dict(newest)
        self._last_by_user = live
