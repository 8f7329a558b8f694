"""`charles-stream twitch auth`: the device code flow against a local Twitch, tokens stored 0600."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from bot.tokens import SCOPES, TokenStore
from bot.twitch import TwitchSetupProblem
from bot.twitch_auth import authorize
from engine.cli import main
from tests.bot_helpers import twitch_config
from tests.twitch_server import running_twitch


@pytest.fixture
async def twitch():
    async with running_twitch() as server:
        server.device_login = "charlesbot"
        server.device_polls = 2  # "authorization_pending" twice, as while the streamer types
        yield server


async def test_device_code_flow_stores_the_bots_tokens_with_mode_0600(twitch, tmp_path):
    store = TokenStore(tmp_path / "data")
    shown: list[str] = []
    tokens = await authorize(twitch_config(twitch), store, show=shown.append)
    assert "https://www.twitch.tv/activate" in shown[0] and "charlesbot" in shown[0]
    assert (tokens.login, tokens.user_id) == ("charlesbot", twitch.account("charlesbot").user_id)
    assert set(tokens.scopes) == set(SCOPES)
    assert tokens.access in twitch.access  # a live token of the local Twitch
    assert store.load() == tokens
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.folder.stat().st_mode & 0o777 == 0o700


async def test_signing_in_as_another_account_stores_nothing(twitch, tmp_path):
    twitch.device_login = "someone_else"
    store = TokenStore(tmp_path / "data")
    with pytest.raises(TwitchSetupProblem, match=r"'someone_else'.*'charlesbot'"):
        await authorize(twitch_config(twitch), store, show=lambda _: None)
    assert store.load() is None


async def test_twitch_auth_command_signs_in_and_exits_0(twitch, tmp_path, capsys):
    config = twitch_config(twitch)
    lines = [
        f'{field.name} = "{getattr(config, field.name)}"'
        for field in msgspec.structs.fields(config)
    ]
    path = tmp_path / "config.toml"
    path.write_text(
        f'[app]\ndata_dir = "{tmp_path / "data"}"\n[twitch]\n' + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    code = await asyncio.to_thread(main, ["twitch", "auth", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "enter the code" in out and "Signed in as charlesbot" in out
    assert TokenStore(tmp_path / "data").load().login == "charlesbot"


def test_twitch_auth_without_a_client_id_exits_2(tmp_path, caplog):
    path = tmp_path / "config.toml"
    path.write_text('[twitch]\nbot = "charlesbot"\n', encoding="utf-8")
    assert main(["twitch", "auth", "--config", str(path), "--data", str(tmp_path)]) == 2
    assert "'twitch.client_id' is empty" in caplog.text
