"""What chat and the API can ask of the stream: switch the model, tag a moment.

Example::

    actions = StreamActions(data_dir, state, hub)
    await actions(Action("switch", model="model_0000_demo", new=True, user="streamer"))
    await actions(Action("tag", text="straight into the pond", user="viewer42"))

One place does each action, whoever asks: `POST /api/switch` and `/api/tag`
(the hub's `on_action`) and, later, chat commands. A switch records the
timeline ("stopped streaming X at batch M", "started streaming Y from batch N
(how)"), makes Y the app's streamed version and tells the trainer and the
driver; a trainer or driver that is restarting meanwhile hears it when it
reconnects (the hub greets them with the streamed version). A bad model name
raises ValueError naming it, which the API answers with 400. A tag's note and
user are cleaned here with chat's `plain_text`, whoever asks, so a control or
bidi character never reaches a stored moment or the overlay's alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.commands import MAX_NAME_CHARS
from bot.text import plain_text
from engine.app.hub import Hub
from engine.core.actions import Action
from engine.core.store import AlertRaised, AppState, VersionStreamed
from engine.core.wire import Alert, SwitchModel
from engine.records.moments import MAX_NOTE_CHARS, Moment, Moments
from engine.records.timeline import Timeline
from models.registry import Registry
from models.versions import resolve_stream_model

log = logging.getLogger("charles.actions")


class StreamActions:
    """Carries out switch and tag actions against the app's state, hub and records."""

    def __init__(self, data_dir: str | Path, state: AppState, hub: Hub) -> None:
        self.data_dir = Path(data_dir)
        self.state = state
        self.hub = hub
        self.timeline = Timeline(self.data_dir)
        self.moments = Moments(self.data_dir)
        # One switch at a time: two quick ones must not interleave their timeline rows.
        self._switching = asyncio.Lock()
        # Told of every tagged moment (OBS saves its replay buffer); must return at once.
        self.on_tag: Callable[[Moment], None] | None = None

    async def __call__(self, action: Action) -> dict[str, Any]:
        """Do `action`; the dict is the API's JSON reply."""
        if action.kind == "switch":
            return await self.switch(action.model, new=action.new, user=action.user)
        return await self.tag(action.text, user=action.user)

    async def switch(self, model: str, *, new: bool = False, user: str = "api") -> dict[str, Any]:
        """Stream `model` (a line or a version; `new`: the line's next version) from now on."""
        async with self._switching:
            # Creating a version may count parameters in a subprocess: off the event loop.
            version, batches, how = await asyncio.to_thread(
                resolve_stream_model, self.data_dir, model, new=new
            )
            previous = self.state.version
            if version == previous:
                return {"version": version, "switched": False, "batch": self.current_batch()}
            if previous:
                self.timeline.stopped(previous, self.current_batch())
            self.timeline.started(version, batches, how)
            created = await asyncio.to_thread(self._created, version)
            # Also drops the trainer's last report: the old version's numbers are not the new one's.
            self.state.apply(VersionStreamed(version, created))
            for role in ("trainer", "driver"):
                await self.hub.send(role, SwitchModel(version))
            text = f"{user} switched to {version} ({how}, batch {batches:,})"
            self.state.apply(AlertRaised(Alert(kind="switch", text=text)))
            log.info("%s", text)
            return {"version": version, "switched": True, "batch": batches, "how": how}

    async def tag(self, text: str, *, user: str = "api", name: str | None = None) -> dict[str, Any]:
        """Tag this moment of the stream with a note (and a name for named moments)."""
        text = plain_text(text, MAX_NOTE_CHARS)
        user = plain_text(user, MAX_NAME_CHARS) or "?"
        moment = await asyncio.to_thread(
            self.moments.tag,
            version=self.state.version,
            batch=self.current_batch(),
            note=text,
            user=user,
            name=name,
        )
        self.state.apply(AlertRaised(Alert(kind="moment", text=f"{user}: {moment.note}")))
        if self.on_tag is not None:
            self.on_tag(moment)
        return moment.as_dict()

    def current_batch(self) -> int:
        """The streamed version's batch: the trainer's newest report, else its last checkpoint."""
        batch = self.state.snapshot().streamed_batch()
        return 0 if batch is None else batch

    def _created(self, version: str) -> str:
        with Registry(self.data_dir) as registry:
            return registry.version(version).created.isoformat()
