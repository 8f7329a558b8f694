"""Chat without Twitch: the console, POST /api/chat and `charles-stream chat`; the app starts it."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from bot.commands import Router
from bot.console import ConsoleChat
from bot.messages import ChatMessage
from bot.service import ChatBot
from engine.app.app import StreamApp
from engine.app.hub import Hub
from engine.cli import main
from engine.core.config import AppConfig, ChatConfig, Config, HubConfig, StreamConfig, TwitchConfig
from engine.core.secrets import hub_token
from engine.core.store import status_view
from tests.bot_helpers import DEMO, bot_tokens, register_versions, streaming_actions, twitch_config
from tests.hub_helpers import wait_until
from tests.twitch_server import running_twitch


async def test_console_lines_are_the_broadcasters_chat(tmp_path):
    actions = await streaming_actions(tmp_path / "data")
    written: list[str] = []
    source = io.StringIO("!stats\nhello chat\n!switch model_0003_xception\n")
    console = ConsoleChat(Router(ChatConfig(), actions), source=source, write=written.append)
    await asyncio.wait_for(console.run(), timeout=5)
    assert written == [
        "chat> model_0000_demo_v1 · trainer starting · driver not running · on stream 0 s",
        "chat> Switched to model_0003_xception_v1 (from scratch, batch 0)",
    ]


@pytest.fixture
async def chat_hub(tmp_path):
    """A started hub with the chat route, its config file, and the token the app wrote."""
    data_dir = tmp_path / "data"
    actions = await streaming_actions(data_dir)
    token = hub_token(data_dir)
    config = Config(app=AppConfig(data_dir=str(data_dir)), hub=HubConfig(port=0))
    hub = Hub(config.hub, token, actions.state)
    ChatBot(config, actions, hub_token=token).add_routes(hub.app)
    await hub.start()
    path = tmp_path / "config.toml"
    path.write_text(f'[app]\ndata_dir = "{data_dir}"\n[hub]\nport = {hub.port}\n', encoding="utf-8")
    try:
        yield hub, token, path
    finally:
        await hub.stop()


async def post_chat(port: int, body: object, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/api/chat", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_api_chat_answers_as_the_broadcaster(chat_hub):
    hub, token, _ = chat_hub
    status, body = await post_chat(hub.port, {"text": "!switch model_0003_xception"}, token)
    assert status == 200
    assert body == {"reply": "Switched to model_0003_xception_v1 (from scratch, batch 0)"}


async def test_api_chat_without_a_command_replies_null(chat_hub):
    hub, token, _ = chat_hub
    assert await post_chat(hub.port, {"text": "just chatting", "user": "mod_1"}, token) == (
        200,
        {"reply": None},
    )


async def test_api_chat_needs_the_hub_token(chat_hub):
    hub, _, _ = chat_hub
    status, body = await post_chat(hub.port, {"text": "!switch model_0003_xception"}, "wrong")
    assert status == 401 and "wrong token" in body["error"]
    assert hub.state.version == "model_0000_demo_v1"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"text": ""}, "'text'"),
        ({"text": 5}, "'text'"),
        ({"text": "!stats", "user": "a b"}, "'user'"),
        ({"text": "!stats", "roles": ["broadcaster"]}, "'roles'"),
        (["!stats"], "JSON list"),
    ],
)
async def test_api_chat_rejects_a_bad_body_naming_the_field(chat_hub, body, named):
    hub, token, _ = chat_hub
    status, reply = await post_chat(hub.port, body, token)
    assert status == 400 and named in reply["error"]


async def test_chat_command_says_one_line_to_the_running_app(chat_hub, capsys):
    _, _, path = chat_hub
    code = await asyncio.to_thread(main, ["chat", "--config", str(path), "--say", "!tag nice"])
    assert code == 0
    assert capsys.readouterr().out.startswith("Moment #1 tagged: model_0000_demo_v1 at batch 0")


async def test_chat_command_prompt_answers_each_line(chat_hub, capsys, monkeypatch):
    _, _, path = chat_hub
    monkeypatch.setattr("sys.stdin", io.StringIO("!models\n\nnot a command\n"))
    code = await asyncio.to_thread(main, ["chat", "--config", str(path)])
    # The prompt precedes each answer; the blank line is skipped without a request.
    answers = capsys.readouterr().out.split("chat> ")[1:]
    assert code == 0
    assert answers[0].startswith("Models: model_0000_demo v1")
    assert answers[1:] == ["", "(no reply: not a command, or on cooldown)\n", "\n"]


async def test_a_vote_closes_on_the_apps_clock_and_switches(tmp_path):
    actions = await streaming_actions(tmp_path / "data")
    config = Config(
        app=AppConfig(data_dir=str(tmp_path / "data")),
        chat=ChatConfig(vote_window_s=0.2, vote_threshold=1),
    )
    chat = ChatBot(config, actions, hub_token="token")
    await chat.start()
    try:
        await chat.router.handle(ChatMessage("viewer42", "!vote model_0003_xception"))
        await wait_until(lambda: actions.state.alerts[-1].text.startswith("Vote over"))
    finally:
        await chat.stop()
    assert actions.state.alerts[-1].text == (
        "Vote over (model_0003_xception 1): switching to model_0003_xception_v1"
    )
    assert actions.state.version == "model_0003_xception_v1"


def test_chat_command_without_a_running_app_exits_1(tmp_path, caplog):
    hub_token(tmp_path / "data")
    path = tmp_path / "config.toml"
    path.write_text(f'[app]\ndata_dir = "{tmp_path / "data"}"\n[hub]\nport = 9\n', encoding="utf-8")
    assert main(["chat", "--config", str(path), "--say", "!stats"]) == 1
    assert "no app answers at http://127.0.0.1:9/api/chat" in caplog.text


def test_chat_command_rejects_a_bad_user_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", "--user", "<script>", "--say", "!stats"])
    assert exit_info.value.code == 2
    assert "'<script>'" in capsys.readouterr().err


def stream_config(tmp_path, twitch: TwitchConfig | None = None) -> Config:
    data_dir = tmp_path / "data"
    register_versions(data_dir, DEMO)  # the app streams it without counting its parameters
    return Config(
        app=AppConfig(data_dir=str(data_dir)),
        hub=HubConfig(port=0),
        stream=StreamConfig(model=DEMO, collectors=0, trainer=False, driver=False),
        twitch=twitch or TwitchConfig(),
    )


async def test_app_without_twitch_answers_chat_on_its_api(tmp_path):
    app = StreamApp(stream_config(tmp_path), config_path=None)
    await app.start()
    try:
        status, body = await post_chat(app.hub.port, {"text": "!model"}, app.token)
        assert app.state.connections["twitch"] == "not configured"
    finally:
        await app.stop()
    assert status == 200 and body["reply"].startswith("On stream: model_0000_demo_v1")


async def test_app_with_twitch_configured_joins_the_channel_and_leaves_on_stop(tmp_path):
    async with running_twitch() as twitch:
        bot_tokens(twitch, tmp_path / "data")
        app = StreamApp(stream_config(tmp_path, twitch_config(twitch)), config_path=None)
        await app.start()
        try:
            await twitch.wait(twitch.subscribed)
            await twitch.chat("viewer42", "!stats")
            await twitch.wait(lambda: twitch.sent)
            status = status_view(app.state.snapshot())["connections"]["twitch"]
        finally:
            await app.stop()
        await twitch.wait(lambda: not twitch.sessions)
    assert status == "connected as charlesbot in #charles"
    assert app.state.connections["twitch"] == "off"
    assert json.dumps(twitch.sent[0]["message"]).startswith('"model_0000_demo_v1')
