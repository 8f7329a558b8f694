"""Per-command cooldowns: for everyone after any use, and per user.

Example::

    cooldowns = Cooldowns(config.chat)
    if cooldowns.ready("stats", "viewer42", now):
        cooldowns.use("stats", "viewer42", now)      # then answer

A command on cooldown is ignored silently: answering "wait 20 s" would cost
the chat the very messages the cooldown saves. The times are those of the
router's clock (monotonic seconds).
"""

from __future__ import annotations

from engine.core.config import ChatConfig

# Per-user entries are pruned once there are this many, so a raid of new names cannot grow
# the table without bound.
PRUNE_AT = 10_000


class Cooldowns:
    """When each command was last used, overall and by each user."""

    def __init__(self, config: ChatConfig) -> None:
        self._config = config
        self._last_global: dict[str, float] = {}
        self._last_by_user: dict[tuple[str, str], float] = {}
        self._longest_user_s = max(c.user_s for c in config.cooldowns.values())

    def ready(self, command: str, user: str, now: float) -> bool:
        """Whether `user` may use `command` at `now`."""
        cooldown = self._config.cooldown(command)
        last = self._last_global.get(command)
        if last is not None and now - last < cooldown.global_s:
            return False
        last = self._last_by_user.get((command, user))
        return last is None or now - last >= cooldown.user_s

    def use(self, command: str, user: str, now: float) -> None:
        """Start both cooldowns of `command` for `user` at `now`."""
        self._last_global[command] = now
        if self._config.cooldown(command).user_s > 0:
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
