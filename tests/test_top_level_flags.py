"""`charles-stream`'s own flags are run's: in front of another command they are refused."""

from __future__ import annotations

import pytest

from engine.cli import main


@pytest.mark.parametrize(
    ("argv", "flag", "command"),
    [
        (["--config", "other.toml", "config", "check"], "--config", "config"),
        (["--config=other.toml", "train", "--model", "model_0000_demo"], "--config", "train"),
        (["--for", "5", "sim"], "--for", "sim"),
    ],
)
def test_a_run_flag_before_another_command_is_refused_with_where_to_put_it(
    argv, flag, command, capsys
):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"{flag} before the command {command!r} is a flag of `run`" in error
    assert "put it after the command" in error


def test_the_log_level_is_everyones_flag(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nmirror = 2\n", encoding="utf-8")
    assert main(["--log-level", "ERROR", "config", "check", str(bad)]) == 2
