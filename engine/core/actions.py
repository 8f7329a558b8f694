"""What chat and the API may ask of the stream, as a contract the app fulfils.

Example::

    async def on_switch(actions: Actions) -> None:
        await actions.switch("model_0003_xception", new=True, user="streamer")

`Action` is a request as the hub's API parses it; `Actions` is what the chat
bot and the API may call. The app's `engine.app.actions.StreamActions`
carries them out (timeline, moments, hub messages); the bot and the overlays
depend only on this contract, so they sit below the app in the layering and
their tests can hand them any object that fulfils it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from engine.core.store import AppState

ActionKind = Literal["switch", "tag"]


@dataclass(frozen=True)
class Action:
    """Something chat or the API asks the app to do: switch the streamed model, or tag a moment."""

    kind: ActionKind
    model: str = ""
    new: bool = False
    text: str = ""
    user: str = "api"


class Actions(Protocol):
    """The stream's actions, whoever asks for them (chat, the API, the control page)."""

    data_dir: Path
    state: AppState

    async def switch(self, model: str, *, new: bool = False, user: str = "api") -> dict[str, Any]:
        """Stream `model` (a line or a version; `new`: the line's next version) from now on."""

    async def tag(self, text: str, *, user: str = "api", name: str | None = None) -> dict[str, Any]:
        """Tag this moment of the stream with a note (and a name for named moments)."""

    def current_batch(self) -> int:
        """The streamed version's batch as the app knows it now."""
