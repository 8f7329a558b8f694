"""`charles-stream sim`: runs headless or windowed, summarises in JSON, bad input exits 2."""

from __future__ import annotations

import json

import pytest

from engine.cli import main

SUMMARY_KEYS = {
    "seed",
    "seconds",
    "frames",
    "fps",
    "distance_m",
    "laps",
    "offroad_events",
    "progress_m",
    "metres_per_offroad",
}


def last_json_line(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.strip()]
    return json.loads(lines[-1])


def test_headless_autopilot_run_prints_a_json_summary_as_its_last_line(capsys):
    code = main(["sim", "--autopilot", "--headless", "--seconds", "3", "--seed", "2", "--json"])
    summary = last_json_line(capsys.readouterr().out)
    assert code == 0
    assert set(summary) == SUMMARY_KEYS
    assert summary["seed"] == 2 and summary["seconds"] == 3.0 and summary["frames"] == 90
    assert summary["fps"] > 0 and summary["distance_m"] > 10.0
    assert summary["laps"] == 0 and summary["offroad_events"] == 0
    # The eval score of the drive: on the road all the way, so progress is about the distance.
    assert summary["progress_m"] == pytest.approx(summary["distance_m"], rel=0.1)
    assert summary["metres_per_offroad"] == summary["progress_m"]


def test_without_a_driver_the_car_stays_put(capsys):
    assert main(["sim", "--headless", "--seconds", "1", "--json"]) == 0
    summary = last_json_line(capsys.readouterr().out)
    assert summary["distance_m"] == 0.0 and summary["frames"] == 30


def test_realtime_headless_run_takes_about_the_game_time(capsys):
    assert main(["sim", "--headless", "--realtime", "--seconds", "0.5", "--json"]) == 0
    summary = last_json_line(capsys.readouterr().out)
    assert summary["frames"] == 15 and summary["fps"] < 40


def test_seed_defaults_to_the_config_file(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text("[sim]\nseed = 3\n", encoding="utf-8")
    assert main(["sim", "--headless", "--seconds", "0.2", "--json", "--config", str(config)]) == 0
    assert last_json_line(capsys.readouterr().out)["seed"] == 3


@pytest.mark.parametrize(
    "arguments",
    [
        ["--seconds", "-3"],
        ["--seconds", "ten"],
        ["--seconds", "nan"],
        ["--seconds", "0"],
        ["--seed", "1.5"],
        ["--seed", "abc"],
        ["--seed", "-1"],
    ],
)
def test_bad_flags_exit_2_naming_the_value(arguments, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "--headless", *arguments])
    assert exit_info.value.code == 2
    assert arguments[1] in capsys.readouterr().err


def test_bad_config_exits_2_naming_the_key(tmp_path, caplog):
    config = tmp_path / "config.toml"
    config.write_text("[sim]\ntick_hz = -5\n", encoding="utf-8")
    assert main(["sim", "--headless", "--config", str(config)]) == 2
    assert "sim.tick_hz" in caplog.text


def test_missing_config_file_exits_2(tmp_path, caplog):
    assert main(["sim", "--headless", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in caplog.text


def test_window_on_without_a_display_exits_3_saying_why(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    assert main(["sim", "--seconds", "1", "--config", str(config)]) == 3
    assert "DISPLAY" in caplog.text and "--headless" in caplog.text


def test_window_auto_without_a_display_falls_back_to_headless(
    tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "auto"\n', encoding="utf-8")
    assert main(["sim", "--seconds", "0.5", "--json", "--config", str(config)]) == 0
    assert last_json_line(capsys.readouterr().out)["frames"] == 15
    assert "running headless" in caplog.text


def test_window_on_with_an_unreachable_display_exits_3_naming_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DISPLAY", ":59999")  # no X server listens there
    config = tmp_path / "config.toml"
    config.write_text('[sim]\nwindow = "on"\n', encoding="utf-8")
    assert main(["sim", "--seconds", "1", "--config", str(config)]) == 3
    assert "DISPLAY=':59999'" in caplog.text and "--headless" in caplog.text
