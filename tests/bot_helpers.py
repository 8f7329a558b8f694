"""What the bot's tests share: a data directory with model versions, real actions, Twitch config.

Also `LouderRouter`: the router with two more commands, each declared in one
place, the way a new command is added.
"""

from __future__ import annotations

from pathlib import Path

from bot.commands import Router
from bot.cooldowns import Cooldown
from bot.declarations import command
from bot.messages import ChatMessage
from bot.permissions import MODERATORS
from bot.tokens import TokenStore, TwitchTokens
from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.core.config import HubConfig, TwitchConfig
from engine.core.store import AppState
from models.registry import Registry
from models.spec import ParameterCounts, spec_path
from tests.twitch_server import BOT_SCOPES, FakeTwitch

DEMO = "model_0000_demo"
XCEPTION = "model_0003_xception"


class LouderRouter(Router):
    """The router plus !shout (everyone, its own cooldown) and !pause (moderators, no cooldown)."""

    @command(
        "shout",
        help="says it louder",
        usage="TEXT",
        cooldown=Cooldown(global_s=7.0, user_s=70.0),
    )
    async def _shout(self, message: ChatMessage, arguments: str) -> str:
        return arguments.upper() or "WHAT?"

    @command("pause", help="pauses the stream", allowed=MODERATORS)
    async def _pause(self, message: ChatMessage, arguments: str) -> str:
        return "paused"


class Clock:
    """A monotonic clock for the router that only the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def register_versions(data_dir: Path, line: str, count: int = 1) -> list[str]:
    """`count` versions of `line` with today's spec (no model is built to count parameters)."""
    spec_toml = spec_path(line).read_text(encoding="utf-8")
    with Registry(data_dir) as registry:
        return [
            registry.create_version(
                line, spec_toml=spec_toml, parameters=ParameterCounts(1_000, 900, 100)
            ).name
            for _ in range(count)
        ]


async def streaming_actions(data_dir: Path, state: AppState | None = None) -> StreamActions:
    """Real StreamActions (hub not started: switches reach no node) streaming model_0000_demo_v1.

    model_0003_xception_v1 exists too, so chat can switch and vote between two models.
    """
    register_versions(data_dir, DEMO)
    register_versions(data_dir, XCEPTION)
    state = state or AppState()
    actions = StreamActions(data_dir, state, Hub(HubConfig(port=0), "hub-token", state))
    await actions.switch(DEMO, user="app")
    return actions


def bot_tokens(twitch: FakeTwitch, data_dir: Path, login: str = "charlesbot") -> TokenStore:
    """Tokens for `login` from the fake Twitch, stored where the bot reads them."""
    access, refresh = twitch.grant(login)
    store = TokenStore(data_dir)
    store.save(
        TwitchTokens(
            access=access,
            refresh=refresh,
            user_id=twitch.account(login).user_id,
            login=login,
            scopes=BOT_SCOPES,
            client_id=twitch.client_id,
        )
    )
    return store


def twitch_config(twitch: FakeTwitch, *, bot: str = "charlesbot") -> TwitchConfig:
    """[twitch] pointing at the fake Twitch, channel "charles"."""
    return TwitchConfig(
        channel=twitch.channel.login,
        client_id=twitch.client_id,
        bot=bot,
        helix_url=twitch.helix_url,
        auth_url=twitch.auth_url,
        eventsub_url=twitch.eventsub_url,
    )
