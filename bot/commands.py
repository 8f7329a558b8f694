"""The chat command router: (user, roles, text) -> action + reply, whatever the transport.

Example::

    router = Router(config.chat, actions)         # actions: the app's Actions
    reply = await router.handle(ChatMessage("viewer42", "!stats", frozenset()))
    reply.text    # "model_0000_demo_v3 · batch 12,345 · loss 0.0213 · ..."
    announcement = await router.close_due_vote()  # the app calls this when a vote is due

Each command is one `@command` method of `Router` that declares its name,
help line, usage, default cooldown and audience (`bot/declarations.py`); the
dispatch, `!help`, the cooldown defaults, the refusal for viewers and the
`[chat]` checks (`check_config`) all read those declarations. Commands
(prefix and aliases from `[chat]`): `!help [COMMAND]`, `!model`, `!models`,
`!stats`, `!tag [note]`, `!timeline`, `!vote NAME`, the named moments of
`[chat.moments]` (`!water`), and for the broadcaster and moderators
`!switch NAME [new]`. Every action goes through the app's `Actions`
(`engine/core/actions.py`), the one place that switches and tags; numbers
come from the app's state. Unknown commands and plain chat get no reply; a
command on cooldown is ignored silently; the broadcaster and moderators
have no cooldowns. Text a viewer typed is made
plain (`bot/text.py`) before it is stored, alerted or echoed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bot.catalog import ModelCatalog, Models
from bot.chat_config import check_chat_config
from bot.cooldowns import Cooldown, Cooldowns
from bot.declarations import ChatCommand, CommandHandlers, command
from bot.messages import ChatMessage, Priority, Reply
from bot.permissions import EVERYONE, MODERATORS, is_moderator
from bot.text import SAFE_START, plain_text, reply_text
from bot.votes import VoteBox, VoteResult
from engine.core.actions import Actions
from engine.core.config import ChatConfig, Config
from engine.core.errors import CharlesError
from engine.core.store import AlertRaised
from engine.core.wire import Alert
from engine.records.moments import MAX_NOTE_CHARS
from engine.records.timeline import Timeline, TimelineEvent

log = logging.getLogger("charles.chat")

# The same names the API accepts for a model line or version.
MODEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
# Only this much of a message's arguments is read: a 10 kB line costs no more than a short one.
MAX_ARGUMENT_CHARS = 1000
# Names shown where a viewer's text is echoed back (a mistyped model name).
SHOWN_CHARS = 40
# Twitch display names are at most 25 characters; other transports are held to a bit more.
MAX_NAME_CHARS = 40
TIMELINE_EVENTS = 3
VOTE_RESULTS_SHOWN = 3
# A refused command rests under this key of its own (with the "default" cooldown): the
# "moderators only" answer is not repeated to every viewer who tries.
REFUSED = "{}:refused"
# Commands kept for the control dock's chat log (who did what), newest last.
CHAT_LOG_LINES = 50
# Where no [chat] file is named (a router built in a test or a tool).
NO_SOURCE = "<chat config>"


class Router(CommandHandlers):
    """Parses chat lines, checks roles and cooldowns, acts, and words the replies.

    Raises `ConfigError` when `config` names a command that is not declared
    (`source`: the file it came from, for the message).
    """

    def __init__(
        self,
        config: ChatConfig,
        actions: Actions,
        *,
        catalog: ModelCatalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        source: str = NO_SOURCE,
    ) -> None:
        check_chat_config(config, source, self.commands)
        self.config = config
        self.actions = actions
        self.state = actions.state
        self.catalog = catalog or ModelCatalog(actions.data_dir)
        self.timeline = Timeline(actions.data_dir)
        self.cooldowns = Cooldowns(
            config, {name: declared.cooldown for name, declared in self.commands.items()}
        )
        self.votes = VoteBox(window_s=config.vote_window_s, threshold=config.vote_threshold)
        self._clock = clock
        # What a viewer may type after the prefix -> the command or moment it runs.
        self._names = {name: name for name in (*self.commands, *config.moments)}
        self._names.update(config.aliases)
        # [wall-clock ms, user, command line, reply or ""] of the commands run, for the dock.
        self.log: collections.deque[list[object]] = collections.deque(maxlen=CHAT_LOG_LINES)

    def parse(self, text: str) -> tuple[str, str] | None:
        """(command or moment, arguments) of a chat line, or None if it runs nothing."""
        prefix = self.config.prefix
        body = text.lstrip()
        if not body.startswith(prefix):
            return None
        # Names are at most 25 characters: a longer first word is no name, however long.
        words = body[len(prefix) : len(prefix) + 32].split(None, 1)
        if not words or words[0].lower() not in self._names:
            return None
        arguments = body[len(prefix) + len(words[0]) :][:MAX_ARGUMENT_CHARS].strip()
        return self._names[words[0].lower()], arguments

    async def handle(self, message: ChatMessage) -> Reply | None:
        """Act on one chat line; the reply to send, or None (not a command, on cooldown)."""
        parsed = self.parse(message.text)
        if parsed is None:
            return None
        command, arguments = parsed
        # The name goes into alerts, moments, the timeline and replies: plain text from here on.
        message = dataclasses.replace(message, user=plain_text(message.user, MAX_NAME_CHARS) or "?")
        declared = self.commands.get(command)
        refused = declared is not None and not declared.allowed.admits(message.roles)
        key = REFUSED.format(command) if refused else command
        now = self._clock()
        if not is_moderator(message.roles) and not self.cooldowns.ready(key, message.key, now):
            return None
        self.cooldowns.use(key, message.key, now)
        try:
            if declared is None:
                text = await self._moment(command, message, arguments)
            elif refused:
                text = self._refusal(declared)
            else:
                text = await declared.handler(self, message, arguments)
        except Exception:  # a broken command must not take the chat (or the app) down
            log.exception("chat command %r from %s failed", command, message.user)
            text = f"Sorry, {self.config.prefix}{command} failed; the app's log says why"
        shown = plain_text(message.text, SHOWN_CHARS * 2)
        self.log.append([round(time.time() * 1000), message.user, shown, text or ""])
        if not text:
            return None
        # What a moderator asked (a switch confirmed or refused) outlasts viewers' replies when
        # Twitch's rate limit makes the outbox choose (bot/outbox.py).
        priority = Priority.HIGH if is_moderator(message.roles) else Priority.NORMAL
        return Reply(self._reply_text(text), reply_to=message.id, priority=priority)

    def vote_closes_in(self) -> float | None:
        """Seconds until the running vote closes, or None when no vote runs."""
        if self.votes.closes_at is None:
            return None
        return max(self.votes.closes_at - self._clock(), 0.0)

    async def close_due_vote(self) -> Reply | None:
        """Close a vote whose window is over: apply the winner, the announcement to post."""
        result = self.votes.close_if_due(self._clock())
        if result is None:
            return None
        text = await self._apply_vote(result)
        self.state.apply(AlertRaised(Alert(kind="vote", text=plain_text(text, MAX_NOTE_CHARS))))
        log.info("%s", text)
        return Reply(self._reply_text(text), priority=Priority.HIGH)  # the stream may change

    # -- commands ------------------------------------------------------------------------

    @command(
        "help",
        help="lists the commands, or says what one does",
        usage="[COMMAND]",
        cooldown=Cooldown(global_s=30.0, user_s=60.0),
    )
    async def _help(self, message: ChatMessage, arguments: str) -> str:
        p = self.config.prefix
        asked = arguments.split(None, 1)[0].lower().removeprefix(p) if arguments else ""
        name = self._names.get(asked)
        if name is not None:
            return self._describe(name)
        everyone = [self._shown(c) for c in self.commands.values() if c.allowed is EVERYONE]
        moments = [f"{p}{name}" for name in self.config.moments]
        text = "Commands: " + " ".join([*everyone, *moments])
        moderators = [self._shown(c) for c in self.commands.values() if c.allowed is MODERATORS]
        return f"{text} · moderators: {' '.join(moderators)}" if moderators else text

    @command(
        "model",
        help="the model on stream: its version, batch and time on stream",
        cooldown=Cooldown(global_s=10.0, user_s=30.0),
    )
    async def _model(self, message: ChatMessage, arguments: str) -> str:
        version = self.state.version
        if not version:
            return "No model on stream yet"
        current, total = await self._streamed(version)
        created = _short_time(self.state.version_created)
        return (
            f"On stream: {version} (created {created}), batch {self.actions.current_batch():,}, "
            f"streamed for {_duration(current)} ({_duration(total)} in total)"
        )

    @command(
        "models",
        help="the model lines and their versions, any of which can be voted for",
        cooldown=Cooldown(global_s=15.0, user_s=60.0),
    )
    async def _models(self, message: ChatMessage, arguments: str) -> str:
        models = await self.catalog.current()
        lines = " | ".join(_describe_line(line, models) for line in models.lines)
        return (
            f"Models: {lines} · on stream: {self.state.version or 'none'} · "
            f"{self.config.prefix}vote NAME"
        )

    @command(
        "stats",
        help="training and driving numbers: batch, loss, buffers, samples/s, PPS and FPS",
        cooldown=Cooldown(global_s=10.0, user_s=30.0),
    )
    async def _stats(self, message: ChatMessage, arguments: str) -> str:
        parts = [self.state.version or "no model on stream"]
        trainer, driver = self.state.trainer, self.state.driver
        if trainer is None:
            parts.append("trainer starting")
        else:
            parts.append(f"batch {trainer.batch:,}")
            if trainer.status != "training":
                parts.append(trainer.status.replace("_", " "))
            loss = trainer.loss.get("total", next(iter(trainer.loss.values()), None))
            if loss is not None:
                parts.append(f"loss {loss:.4f}")
            parts += [
                f"buffer {name} {fill.fill:,}/{fill.capacity:,}"
                for name, fill in trainer.buffers.items()
            ]
            parts.append(f"{trainer.samples_per_s:,.0f} samples/s")
        if driver is None:
            parts.append("driver not running")
        else:
            parts.append(f"{driver.pps:.0f} PPS / {driver.fps:.0f} FPS")
        if self.state.version:
            current, _ = await self._streamed(self.state.version)
            parts.append(f"on stream {_duration(current)}")
        return " · ".join(parts)

    @command(
        "switch",
        help="puts a model line or version on stream now; with new, a new version of the line",
        usage="NAME [new]",
        cooldown=Cooldown(),
        allowed=MODERATORS,
        refusal_hint="vote with {prefix}vote NAME",
    )
    async def _switch(self, message: ChatMessage, arguments: str) -> str:
        words = arguments.split()
        if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1].lower() != "new"):
            return self._usage("switch", f"(NAME: {self.config.prefix}models)")
        name = words[0]
        problem = await self._unknown_model(name)
        if problem:
            return problem
        try:
            result = await self.actions.switch(name, new=len(words) == 2, user=message.user)
        except (ValueError, CharlesError) as error:  # e.g. every checkpoint damaged
            return plain_text(f"Cannot switch to {name}: {error}", 300)
        finally:
            self.catalog.forget()
        if not result["switched"]:
            return f"{result['version']} is on stream already"
        return f"Switched to {result['version']} ({result['how']}, batch {result['batch']:,})"

    @command(
        "vote",
        help="votes for the model to stream next; the first vote opens the vote",
        usage="NAME",
        cooldown=Cooldown(global_s=0.0, user_s=2.0),
    )
    async def _vote(self, message: ChatMessage, arguments: str) -> str | None:
        name = arguments.split(None, 1)[0].lower() if arguments else ""
        if not name:
            return self._usage("vote", f"(NAME: {self.config.prefix}models)")
        problem = await self._unknown_model(name)
        if problem:
            return problem
        cast = self.votes.cast(message.key, name, self._clock())
        if cast != "opened":
            return None  # one reply per vote, not per voter: chat would drown in them
        text = (
            f"Vote open for {self.config.vote_window_s:g} s: {self.config.prefix}vote NAME picks "
            f"the next model (needs {self.config.vote_threshold} votes). "
            f"{message.user} votes {name}"
        )
        self.state.apply(AlertRaised(Alert(kind="vote", text=plain_text(text, MAX_NOTE_CHARS))))
        return text

    @command(
        "tag",
        help="tags this moment of the stream, with an optional note",
        usage="[note]",
        cooldown=Cooldown(global_s=15.0, user_s=60.0),
    )
    async def _tag(self, message: ChatMessage, arguments: str) -> str:
        note = plain_text(arguments, MAX_NOTE_CHARS) or "tagged"
        moment = await self.actions.tag(note, user=message.user)
        return (
            f"Moment #{moment['id']} tagged: {moment['version'] or 'no model'} "
            f"at batch {moment['batch']:,}"
        )

    async def _moment(self, name: str, message: ChatMessage, arguments: str) -> str:
        text = self.config.moments[name]
        extra = plain_text(arguments, MAX_NOTE_CHARS)
        note = f"{text}: {extra}" if extra else text
        moment = await self.actions.tag(note, user=message.user, name=name)
        return f"{text}! Moment #{moment['id']} at batch {moment['batch']:,}"

    @command(
        "timeline",
        help="the latest events of the stream: which version streamed from when",
        cooldown=Cooldown(global_s=30.0, user_s=60.0),
    )
    async def _timeline(self, message: ChatMessage, arguments: str) -> str:
        events = await asyncio.to_thread(self.timeline.events)
        if not events:
            return "Nothing streamed yet"
        shown = [
            f"{event.at.astimezone():%b %d %H:%M} {event.describe()}"
            for event in events[-TIMELINE_EVENTS:]
        ]
        return "Timeline: " + " | ".join(shown)

    # -- helpers -------------------------------------------------------------------------

    def _reply_text(self, text: str) -> str:
        """Chat-safe text that never starts with the prefix: the bot cannot command itself."""
        text = reply_text(text)
        return reply_text(SAFE_START + text) if text.startswith(self.config.prefix) else text

    def _shown(self, declared: ChatCommand) -> str:
        """A command as `!help` lists it: "!vote NAME"."""
        shown = f"{self.config.prefix}{declared.name}"
        return f"{shown} {declared.usage}" if declared.usage else shown

    def _describe(self, name: str) -> str:
        """`!help NAME`: what the command or moment `name` does, and who may use it."""
        declared = self.commands.get(name)
        if declared is None:
            moment = self.config.moments[name]
            return f'{self.config.prefix}{name} [note]: tags the moment "{moment}" (and your note)'
        text = f"{self._shown(declared)}: {declared.help}"
        return text if declared.allowed is EVERYONE else f"{text} ({declared.allowed.value} only)"

    def _usage(self, name: str, note: str) -> str:
        """The usage reply of command `name`: "usage: !vote NAME (NAME: !models)"."""
        return f"usage: {self._shown(self.commands[name])} {note}"

    def _refusal(self, declared: ChatCommand) -> str:
        """The answer to someone outside the command's audience."""
        p = self.config.prefix
        text = f"Only {declared.allowed.value} can {p}{declared.name}"
        hint = declared.refusal_hint.format(prefix=p)
        return f"{text}; {hint}" if hint else text

    async def _unknown_model(self, name: str) -> str | None:
        """Why `name` cannot be voted for or switched to, or None if it can."""
        if MODEL_NAME.fullmatch(name) and (await self.catalog.current()).knows(name):
            return None
        shown = plain_text(name, SHOWN_CHARS)
        return f"No model line or version {shown}; {self.config.prefix}models lists them"

    async def _apply_vote(self, result: VoteResult) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in result.counts[:VOTE_RESULTS_SHOWN])
        if result.winner is None:
            return (
                f"Vote over ({counts or 'no votes'}): the top model needs "
                f"{result.threshold} votes; {self.state.version or 'nothing'} stays on stream"
            )
        try:
            switched = await self.actions.switch(result.winner, user="chat vote")
        except (ValueError, CharlesError) as error:
            text = f"Vote over ({counts}): cannot switch to {result.winner}: {error}"
            return plain_text(text, 300)
        finally:
            self.catalog.forget()
        if not switched["switched"]:
            return f"Vote over ({counts}): {switched['version']} stays on stream"
        return f"Vote over ({counts}): switching to {switched['version']}"

    async def _streamed(self, version: str) -> tuple[float, float]:
        """Seconds `version` has been on stream since it last started, and in total."""
        events = await asyncio.to_thread(self.timeline.events)
        return streamed_seconds(events, version, datetime.now(UTC))


def check_config(config: Config) -> None:
    """Raise `ConfigError` if `[chat]` names a command the router does not declare.

    The foundation cannot know the bot's commands; `charles-stream config check`
    and the app call this so a bad alias stops them before anything starts.
    """
    check_chat_config(config.chat, config.source, Router.commands)


def streamed_seconds(
    events: list[TimelineEvent], version: str, now: datetime
) -> tuple[float, float]:
    """(seconds since `version` last went on stream, total seconds on stream) from the timeline."""
    total = 0.0
    started: datetime | None = None
    for event in events:
        if event.version != version:
            continue
        if event.kind == "started":
            started = event.at
        elif started is not None:
            total += (event.at - started).total_seconds()
            started = None
    current = (now - started).total_seconds() if started is not None else 0.0
    return current, total + current


def _describe_line(line: str, models: Models) -> str:
    versions = models.versions.get(line, ())
    if not versions:
        return f"{line} (no version yet)"
    numbers = [name.rsplit("_v", 1)[-1] for name in versions]
    shown = f"v{numbers[0]}" if len(numbers) == 1 else f"v{numbers[0]}-v{numbers[-1]}"
    return f"{line} {shown}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _short_time(iso: str) -> str:
    try:
        return f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return "unknown"
