"""[chat] and [twitch]: a bad value names the key, the value and what is accepted."""

from __future__ import annotations

import pytest

from engine.core.config import load_config
from engine.core.errors import ConfigError


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
        load_config(path)
    assert named in str(error.value)


def test_given_cooldowns_replace_only_their_own_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[chat.cooldowns]\nstats = { global_s = 1.0 }\n", encoding="utf-8")
    chat = load_config(path).chat
    assert (chat.cooldown("stats").global_s, chat.cooldown("stats").user_s) == (1.0, 0.0)
    assert chat.cooldown("tag").global_s == 15.0
    assert chat.cooldown("water") == chat.cooldowns["default"]
