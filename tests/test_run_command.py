"""Plain `charles-stream` runs the stream app, and `--for` stops it cleanly.

The whole stream (collectors, trainer, driver) is tested in tests/test_app.py;
here the app runs with no processes, which shows the command's own part fast.
"""

from __future__ import annotations

import time

import pytest

from engine.cli import main
from engine.records.timeline import Timeline

CONFIG = """
[app]
data_dir = "{data_dir}"

[hub]
port = 0

[obs]
enabled = false

[stream]
collectors = 0
trainer = false
driver = false
"""


def test_plain_command_runs_the_app_for_the_given_time_and_records_the_timeline(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data"), encoding="utf-8")
    started = time.monotonic()
    assert main(["--config", str(path), "--for", "1"]) == 0
    assert time.monotonic() - started >= 1.0
    events = Timeline(tmp_path / "data").events()
    assert [(e.kind, e.version) for e in events] == [
        ("started", "model_0000_demo_v1"),
        ("stopped", "model_0000_demo_v1"),
    ]
    assert (tmp_path / "data" / "secrets" / "hub_token").stat().st_mode & 0o777 == 0o600


def test_run_rejects_a_negative_duration(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--for", "-3"])
    assert exit_info.value.code == 2
    assert "-3" in capsys.readouterr().err
