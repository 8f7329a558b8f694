"""Plain `charles-stream` runs the embedded default and `--for` stops it cleanly."""

from __future__ import annotations

import time

import pytest

from engine.cli import main


def test_plain_command_runs_the_built_in_game_for_the_given_time(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    caplog.set_level("INFO")
    started = time.monotonic()
    assert main(["--for", "1"]) == 0
    elapsed = time.monotonic() - started
    assert "running headless" in caplog.text
    assert "1.0 game s, 30 frames" in caplog.text
    assert elapsed >= 0.9  # real time: the embedded default is watched, not fast-forwarded


def test_run_rejects_a_negative_duration(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--for", "-3"])
    assert exit_info.value.code == 2
    assert "-3" in capsys.readouterr().err
