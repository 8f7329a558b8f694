"""The config file is validated once.

Every mistake names the key, the file, the bad value and what is accepted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
import pytest

from engine.cli import build_parser, main
from engine.core.config import Config, default_config, load_config
from engine.core.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid_and_matches_the_defaults_it_documents():
    config = load_config(REPO_CONFIG)
    assert config.source == str(REPO_CONFIG)
    assert config.sim.hood_width == 480 and config.sim.hood_height == 270


def test_missing_sections_take_their_defaults(tmp_path):
    config = load_config(write(tmp_path, "[sim]\nseed = 5\n"))
    assert config.sim.seed == 5
    assert config.app == default_config().app


def test_unknown_key_names_key_file_and_accepted_keys(tmp_path):
    path = write(tmp_path, "[sim]\nsead = 5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "'sim.sead'" in message and "seed" in message


def test_unknown_section_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'simulator'"):
        load_config(write(tmp_path, "[simulator]\nseed = 5\n"))


def test_wrong_type_names_value_and_expected_type(tmp_path):
    expected = r"'sim.hood_width' = 'wide' has the wrong type; expected int"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, '[sim]\nhood_width = "wide"\n'))


def test_bool_is_not_accepted_as_a_number(tmp_path):
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(write(tmp_path, "[sim]\nseed = true\n"))


def test_integer_is_accepted_where_a_float_is_expected(tmp_path):
    assert load_config(write(tmp_path, "[sim]\ntick_hz = 60\n")).sim.tick_hz == 60.0


def test_out_of_range_value_names_the_accepted_range(tmp_path):
    expected = r"'sim.tick_hz' = 0.5 is out of range; accepted: 1.0 to 240.0"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, "[sim]\ntick_hz = 0.5\n"))


def test_uses_per_sample_must_be_a_whole_number_from_one(tmp_path):
    expected = r"'data.uses_per_sample' = 0 is out of range; accepted: 1 to 10000"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, "[data]\nuses_per_sample = 0\n"))
    assert load_config(write(tmp_path, "[data]\nuses_per_sample = 50\n")).data.uses_per_sample == 50


def test_choice_lists_what_is_accepted(tmp_path):
    expected = r"'sim.window' = 'maybe' is not accepted; use one of 'auto'"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, '[sim]\nwindow = "maybe"\n'))


def test_section_given_as_a_value_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"'sim' must be a table"):
        load_config(write(tmp_path, "sim = 3\n"))


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[sim\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_config_check_exits_0_for_a_good_file_and_2_for_a_bad_one(tmp_path, caplog):
    assert main(["config", "check", str(REPO_CONFIG)]) == 0
    bad = write(tmp_path, "[app]\nlog_level = 'LOUD'\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "'app.log_level' = 'LOUD'" in caplog.text


def test_help_lists_every_subcommand(capsys):
    subcommands = next(
        action.choices
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert {"config", "sim"} <= set(subcommands)
    for name in subcommands:
        assert name in out


def _float_keys() -> list[tuple[str, str]]:
    """Every float key of every section, as (section, key)."""
    keys = []
    for section in msgspec.structs.fields(Config):
        if not isinstance(section.type, type) or not issubclass(section.type, msgspec.Struct):
            continue
        for key in msgspec.structs.fields(section.type):
            if msgspec.inspect.type_info(key.type).__class__ is msgspec.inspect.FloatType:
                keys.append((section.name, key.name))
    return keys


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_number_is_refused_for_every_float_key(tmp_path, value):
    keys = _float_keys()
    assert ("sim", "tick_hz") in keys and len(keys) > 40
    for section, key in keys:
        path = write(tmp_path, f"[{section}]\n{key} = {value}\n")
        expected = rf"'{section}\.{key}' = {value} is not a finite number; accepted: "
        with pytest.raises(ConfigError, match=expected):
            load_config(path)


def test_a_value_nested_thousands_deep_is_a_config_error(tmp_path):
    for text in ("x = " + "[" * 5000 + "]" * 5000, "[sim]\ntick_hz = " + "[" * 50 + "]" * 50):
        with pytest.raises(ConfigError, match=r"config.toml: "):
            load_config(write(tmp_path, text + "\n"))


@pytest.mark.parametrize(
    "text", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a=" * 40 + "1" + "}" * 40]
)
def test_config_check_of_a_deeply_nested_value_exits_2_with_one_line(tmp_path, caplog, text):
    path = write(tmp_path, text + "\n")
    assert main(["config", "check", str(path)]) == 2
    (line,) = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert line.startswith(f"{path}: a value is nested too deeply to be read; accepted: at most")


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_config_says_once_that_it_runs_on_the_defaults(tmp_path, caplog, text):
    path = write(tmp_path, text)
    assert load_config(path) == msgspec.structs.replace(default_config(), source=str(path))
    load_config(path)
    said = [r.getMessage() for r in caplog.records if "running on every default" in r.getMessage()]
    assert said == [f"{path} sets no keys: running on every default"]


def test_a_config_that_sets_a_key_says_nothing_of_defaults(tmp_path, caplog):
    load_config(write(tmp_path, "[sim]\nseed = 5\n"))
    assert "running on every default" not in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[data.bins]\n"a\\nb" = {kind = 5}\n', """'data.bins."a\\nb".kind' = 5 is not"""),
        (
            '[chat.cooldowns]\n"x\\u202ey" = {global_s = -1}\n',
            """'chat.cooldowns."x\\u202ey".global_s'""",
        ),
        (
            '[chat.moments]\n"x\\ny" = "hi"\n',
            """'chat.moments."x\\ny"' is not accepted as a name""",
        ),
        ('[sim]\n"\\n" = 1\n', "unknown key 'sim.\\n'; accepted keys here: "),
    ],
)
def test_a_key_with_a_newline_or_bidi_override_is_quoted_in_one_printable_line(
    tmp_path, text, expected
):
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert expected in str(refused.value) and str(refused.value).isprintable()


def test_source_is_set_by_the_loader_not_by_the_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'source'"):
        load_config(write(tmp_path, 'source = "elsewhere.toml"\n'))
