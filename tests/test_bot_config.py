"""[chat] and [twitch]: a bad value names the key, the value and what is accepted.

Which names aliases, moments and cooldowns may use comes from the declared
chat commands (`bot/chat_config.py`), so these load a file and run the bot's
check on it, as `charles-stream config check` and the app do.
"""

from __future__ import annotations

import pytest

from bot.chat_config import check_chat_config
from bot.commands import Router, check_config
from bot.cooldowns import DEFAULT_COOLDOWN, Cooldown, cooldown_of
from engine.app.app import StreamApp
from engine.cli import main
from engine.core.config import ChatConfig, Config, CooldownConfig, load_config
from engine.core.errors import ConfigError
from tests.bot_helpers import LouderRouter, streaming_actions

BUILT_IN = "help, model, models, stats, switch, tag, timeline, vote"


def checked(path) -> Config:
    """The config at `path`, loaded and checked against the chat commands."""
    config = load_config(path)
    check_config(config)
    return config


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[chat]\nprefix = ""', "'chat.prefix' = ''"),
        ("[chat.aliases]\nm = 'nosuch'", "'chat.aliases.m' = 'nosuch' names no command"),
        ("[chat.aliases]\nstats = 'model'", "'chat.aliases.stats' would hide"),
        ("[chat.moments]\nstats = 'a swim'", "'chat.moments.stats' has the name of a built-in"),
        ("[chat.moments]\nWater = 'a swim'", "'chat.moments.Water' is not accepted as a name"),
        ("[chat.cooldowns]\nnosuch = { global_s = 1.0 }", "'chat.cooldowns.nosuch' names no"),
        ("[chat]\nvote_window_s = 1.0", "'chat.vote_window_s' = 1.0 is out of range"),
        ("[twitch]\nchannel = 'a b'", "'twitch.channel' = 'a b' is not a Twitch login"),
        ("[twitch]\nchannel = 'charles'", "'twitch.channel' = 'charles' needs 'twitch.client_id'"),
        ("[twitch]\neventsub_url = 'http://x/ws'", "'twitch.eventsub_url' = 'http://x/ws'"),
    ],
)
def test_bad_chat_and_twitch_settings_are_named(tmp_path, toml, named):
    path = tmp_path / "config.toml"
    path.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        checked(path)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[chat.aliases]\nm = 'nosuch'",
            f"'chat.aliases.m' = 'nosuch' names no command or moment; accepted: {BUILT_IN}, water",
        ),
        (
            "[chat.aliases]\nwater = 'stats'",
            "'chat.aliases.water' would hide the command or moment of that name; pick another "
            "alias",
        ),
        (
            "[chat.moments]\nvote = 'a swim'",
            f"'chat.moments.vote' has the name of a built-in command; built-in: {BUILT_IN}",
        ),
        (
            "[chat.moments]\nsplash = 'a swim'\n[chat.cooldowns]\nwave = { global_s = 1.0 }",
            f"'chat.cooldowns.wave' names no command or moment; accepted: default, {BUILT_IN}, "
            "splash",
        ),
    ],
)
def test_chat_names_are_checked_with_the_whole_message(tmp_path, toml, message):
    path = tmp_path / "config.toml"
    path.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        checked(path)
    assert str(error.value) == f"{path}: {message}"


def test_the_checks_accept_only_the_commands_they_are_given():
    # model and tag exist, but a bot that declared only help and stats would not answer them.
    declared = {name: Router.commands[name] for name in ("help", "stats")}
    with pytest.raises(ConfigError) as error:
        check_chat_config(ChatConfig(aliases={"m": "model"}), "x.toml", declared)
    assert str(error.value) == (
        "x.toml: 'chat.aliases.m' = 'model' names no command or moment; accepted: help, stats, "
        "water"
    )
    with pytest.raises(ConfigError, match=r"'chat\.cooldowns\.model' names no command or moment"):
        check_chat_config(
            ChatConfig(cooldowns={"model": CooldownConfig(global_s=1.0)}), "x.toml", declared
        )


def test_a_new_commands_name_is_taken_for_moments_and_aliases():
    with pytest.raises(ConfigError) as error:
        check_chat_config(ChatConfig(moments={"shout": "loud"}), "x.toml", LouderRouter.commands)
    assert str(error.value) == (
        "x.toml: 'chat.moments.shout' has the name of a built-in command; built-in: help, model, "
        "models, pause, shout, stats, switch, tag, timeline, vote"
    )
    with pytest.raises(ConfigError, match=r"'chat\.aliases\.pause' would hide the command"):
        check_chat_config(ChatConfig(aliases={"pause": "stats"}), "x.toml", LouderRouter.commands)


async def test_the_router_refuses_a_config_that_hides_one_of_its_commands(tmp_path):
    actions = await streaming_actions(tmp_path / "data")
    chat = ChatConfig(aliases={"shout": "stats"})
    Router(chat, actions)  # the built-in router has no !shout: the alias is fine
    with pytest.raises(ConfigError) as error:
        LouderRouter(chat, actions, source="stream.toml")
    assert str(error.value) == (
        "stream.toml: 'chat.aliases.shout' would hide the command or moment of that name; pick "
        "another alias"
    )


def test_given_cooldowns_replace_only_their_own_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[chat.cooldowns]\nstats = { global_s = 1.0 }\n", encoding="utf-8")
    chat = checked(path).chat
    assert cooldown_of(chat, "stats", Router.commands["stats"].cooldown) == Cooldown(1.0, 0.0)
    assert cooldown_of(chat, "tag", Router.commands["tag"].cooldown) == Cooldown(15.0, 60.0)
    assert cooldown_of(chat, "water") == DEFAULT_COOLDOWN == Cooldown(5.0, 30.0)


def test_a_given_default_is_for_moments_not_for_declared_commands(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[chat.cooldowns]\ndefault = { global_s = 2.0 }\n", encoding="utf-8")
    chat = checked(path).chat
    assert cooldown_of(chat, "water") == Cooldown(2.0, 0.0)
    assert cooldown_of(chat, "tag", Router.commands["tag"].cooldown) == Cooldown(15.0, 60.0)


def test_config_check_exits_2_naming_a_bad_alias(tmp_path, caplog):
    path = tmp_path / "config.toml"
    path.write_text("[chat.aliases]\nm = 'nosuch'\n", encoding="utf-8")
    assert main(["config", "check", str(path)]) == 2
    assert f"{path}: 'chat.aliases.m' = 'nosuch' names no command or moment" in caplog.text


def test_the_app_refuses_a_bad_alias_before_it_makes_anything(tmp_path):
    data_dir = tmp_path / "data"
    path = tmp_path / "config.toml"
    path.write_text(
        f"[app]\ndata_dir = '{data_dir}'\n[chat.aliases]\nm = 'nosuch'\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"'chat\.aliases\.m' = 'nosuch' names no command"):
        StreamApp(load_config(path), config_path=str(path))
    assert not data_dir.exists()
