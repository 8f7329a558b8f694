"""The recorder and game profiles without an X server: settings, crop, masks, config, processes.

What `record --game` and the recorder node take from a profile (keys,
smoothing, pause key, the crop of the window, masks blanked), which flags
override it, how `[stream] recorders` is validated and becomes processes, and
how a recorder's counters become the collectors' report. The same paths on a
real X server: tests/test_recorder_game.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine.app.processes import check_recorder_games, process_table
from engine.cli import main
from engine.core.config import RecorderEntry, StreamConfig, default_config, load_config
from engine.core.errors import ConfigError, UsageError
from engine.core.wire import decode, encode, message_fields
from engine.data.balance import BalancingStage
from engine.data.stats import data_stats
from engine.data.storage import SampleStorage
from engine.games.profile import load_profile
from engine.node.progress import PROGRESS_FILE_ENV, _reporter
from engine.recorder.cli import _region, _settings
from engine.recorder.game import capture_region, masked, recorder_settings
from engine.recorder.inputs import KeyBindings, KeyboardInput
from engine.recorder.node import Reporter, report_of
from engine.recorder.node import main as node_main
from engine.recorder.recorder import Recorder, RecorderStats

PROFILE = """
description = "a test game: WASD keys, a HUD masked out"
[window.linux]
title = "test game"
[window.windows]
title = "test game"
[capture]
crop = [10, 20, 100, 50]
masks = [[10, 20, 30, 10], [100, 60, 50, 50]]
[input.keyboard]
steer_left = "a"
steer_right = "d"
accelerate = "w"
brake = "s"
[recorder]
smoothing = 0.4
pause_key = "F8"
"""


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "testgame.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def flags(**given: object) -> argparse.Namespace:
    values = {"keys": None, "smoothing": None, "pause_key": None, "window": None, "region": None}
    return argparse.Namespace(**{**values, **given})


def test_a_profile_gives_keys_smoothing_and_pause_key(profile_path):
    settings = recorder_settings(load_profile(str(profile_path)))
    assert settings.bindings == KeyBindings(left="a", right="d", accelerate="w", brake="s")
    assert settings.smoothing_s == 0.4
    assert settings.pause_key == "F8"


def test_recorder_keys_in_the_profile_win_over_its_driving_keys(profile_path):
    text = PROFILE + '[recorder.keys]\nsteer_left = "j"\nsteer_right = "l"\n'
    profile_path.write_text(text, encoding="utf-8")
    settings = recorder_settings(load_profile(str(profile_path)))
    assert settings.bindings == KeyBindings(left="j", right="l", accelerate="Up", brake="Down")


def test_flags_given_override_the_profile_and_the_rest_stay_the_profiles(profile_path):
    profile = load_profile(str(profile_path))
    settings = _settings(flags(keys="left=Left,right=Right", smoothing=0.0), profile)
    assert settings.bindings == KeyBindings()  # roles not given take the flag's defaults
    assert settings.smoothing_s == 0.0
    assert settings.pause_key == "F8"
    assert _settings(flags(pause_key="Pause"), profile).pause_key == "Pause"


def test_without_a_profile_the_defaults_stay_as_they_were():
    settings = _settings(flags(), None)
    assert settings.bindings == KeyBindings()
    assert (settings.smoothing_s, settings.pause_key) == (0.0, "F9")


def test_the_crop_is_taken_from_the_window_given_instead_of_the_profiles(profile_path):
    profile = load_profile(str(profile_path))
    assert capture_region(profile, (300, 400, 640, 480)) == (310, 420, 100, 50)
    config = default_config()
    assert _region(flags(region="5,6,200,100"), config, profile) == (15, 26, 100, 50)


def test_a_crop_outside_the_window_is_refused_naming_both(profile_path):
    profile = load_profile(str(profile_path))
    with pytest.raises(Exception, match=r"capture.crop.*\[10, 20, 100, 50\].*50x40"):
        capture_region(profile, (0, 0, 50, 40))


def test_masks_are_black_in_window_pixels_within_the_crop(profile_path):
    profile = load_profile(str(profile_path))
    screen = np.full((50, 100, 3), 200, np.uint8)  # the crop: window pixels (10, 20) on
    screen.flags.writeable = False  # a grabber's array may be read-only: masked() copies
    frame = masked(lambda: screen, profile)()
    assert (frame[0:10, 0:30] == 0).all()  # mask [10, 20, 30, 10] at the crop's corner
    assert (frame[40:50, 90:100] == 0).all()  # mask [100, 60, ...] clipped by the crop
    assert (frame[10:40, 30:90] == 200).all()
    assert (screen == 200).all()


def test_a_profile_without_masks_grabs_unchanged():
    grab = lambda: np.zeros((2, 2, 3), np.uint8)  # noqa: E731
    assert masked(grab, load_profile("builtin")) is grab


def test_record_refuses_an_unknown_or_broken_profile_with_exit_2(tmp_path, caplog):
    assert main(["record", "--game", "no-such-game", "--data", str(tmp_path)]) == 2
    assert "unknown game profile 'no-such-game'" in caplog.text
    broken = tmp_path / "broken.toml"
    broken.write_text('[window.linux]\ntitle = "x"\n[recorder]\npause_key = "F99"\n')
    assert main(["record", "--game", str(broken), "--data", str(tmp_path)]) == 2
    assert f"{broken}: 'recorder.pause_key' = 'F99'" in caplog.text


def test_a_pause_key_that_is_also_a_driving_key_is_refused(profile_path, tmp_path, caplog):
    argv = ["record", "--game", str(profile_path), "--pause-key", "w", "--data", str(tmp_path)]
    assert main(argv) == 2
    assert "pause key 'w' is also a driving key (a, d, w, s)" in caplog.text


def write_stream(tmp_path: Path, recorders: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[stream]\nrecorders = {recorders}\n", encoding="utf-8")
    return path


def test_stream_recorders_default_to_none_and_accept_game_and_player(tmp_path):
    assert default_config().stream.recorders == ()
    config = load_config(write_stream(tmp_path, '[{ game = "builtin", player = "ada" }]'))
    assert config.stream.recorders == (RecorderEntry(game="builtin", player="ada"),)


@pytest.mark.parametrize(
    ("recorders", "message"),
    [
        ('"builtin"', "'stream.recorders' must be a list"),
        ('["builtin"]', r"'stream.recorders\[0\]' must be a table"),
        ('[{ game = "builtin" }]', r"missing key 'stream.recorders\[0\].player'"),
        (
            '[{ game = "builtin", player = "ada", pad = 1 }]',
            r"unknown key 'stream.recorders\[0\].pad'; accepted keys here: game, player",
        ),
        ('[{ game = "", player = "ada" }]', r"'stream.recorders\[0\].game' = '' is not accepted"),
        (
            '[{ game = "builtin", player = "a da" }]',
            r"'stream.recorders\[0\].player' = 'a da' is not accepted; use 1 to 64 letters",
        ),
        (
            '[{ game = "builtin", player = "ada" }, { game = "torcs", player = "ada" }]',
            r"'stream.recorders\[1\].player' = 'ada' is already another recorder's player",
        ),
        (
            "[" + ", ".join(f'{{ game = "builtin", player = "p{i}" }}' for i in range(9)) + "]",
            "lists 9 recorders; accepted: 0 to 8",
        ),
    ],
)
def test_bad_stream_recorders_are_refused_naming_the_entry(tmp_path, recorders, message):
    path = write_stream(tmp_path, recorders)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_each_recorder_entry_is_a_process_with_its_game_and_player():
    stream = StreamConfig(
        collectors=1,
        trainer=False,
        driver=False,
        recorders=(RecorderEntry("builtin", "ada"), RecorderEntry("torcs", "bo")),
    )
    specs = process_table(msgspec.structs.replace(default_config(), stream=stream), "c.toml", "")
    recorders = [spec for spec in specs if spec.module == "engine.recorder.node"]
    assert [spec.name for spec in recorders] == ["recorder-0", "recorder-1"]
    assert recorders[1].args == (
        *("--config", "c.toml", "--index", "1", "--game", "torcs", "--player", "bo"),
    )
    # Stopped with the collectors, after the driver (0) and before the trainer (2), so their
    # last sets still reach it.
    assert {spec.stop_order for spec in recorders} == {1}


def test_a_recorder_with_an_unknown_profile_refuses_the_app_naming_it():
    check_recorder_games(StreamConfig(recorders=(RecorderEntry("builtin", "ada"),)))
    with pytest.raises(UsageError, match=r"'stream.recorders\[0\].game' = 'gta6': unknown game"):
        check_recorder_games(StreamConfig(recorders=(RecorderEntry("gta6", "ada"),)))


def stats(**values: object) -> RecorderStats:
    stage = BalancingStage(default_config().data, window_steps=10)
    return RecorderStats(source="human:ada", balance=stage.stats(), **values)  # type: ignore[arg-type]


def test_a_recorders_counters_become_a_collector_report_with_paused():
    report = report_of(
        stats(paused=True, recording_s=30.0, paused_s=5.0, sets_stored=3, samples_stored=60)
    )
    assert decode(encode(report)) == report
    assert report.source == "human:ada" and report.paused
    assert (report.game_seconds, report.wall_seconds) == (30.0, 35.0)
    assert (report.sets_sent, report.samples_sent) == (3, 60)


def test_reports_go_every_interval_and_at_once_on_pause_or_resume():
    sent = []
    now = [0.0]
    reporter = Reporter(sent.append, 10.0, clock=lambda: now[0])
    recording = stats()
    reporter.tick(recording)  # the first
    now[0] = 5.0
    reporter.tick(recording)  # not due
    recording.paused = True
    reporter.tick(recording)  # paused: at once
    now[0] = 14.0
    reporter.tick(recording)
    now[0] = 15.0
    reporter.tick(recording)  # due
    assert [report.paused for report in sent] == [False, True, True]


def test_every_poll_tells_the_supervisors_watchdog_the_recorder_is_alive(tmp_path, monkeypatch):
    progress_file = tmp_path / "recorder-0.progress"
    progress_file.touch()
    os.utime(progress_file, (0, 0))
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(progress_file))
    _reporter.cache_clear()
    try:
        Reporter(lambda report: None, 10.0).tick(stats(paused=True))  # paused polls count too
    finally:
        _reporter.cache_clear()
    assert progress_file.stat().st_mtime > 0


def test_data_stats_sums_a_stored_recorder_report_like_a_collectors(tmp_path):
    report = message_fields(report_of(stats(episodes=2, sets_stored=1, samples_stored=20)))
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        storage.record_collector_stats("human:ada", report)
        totals = data_stats(storage, default_config().data)
    assert totals["collectors"] == 1 and totals["episodes"] == 2 and totals["respawns"] == 0


def test_the_recorder_node_refuses_a_bad_profile_or_player_with_exit_2(tmp_path, caplog):
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    argv = ["--config", str(config), "--index", "0", "--player", "ada"]
    assert node_main([*argv, "--game", "gta6"]) == 2
    assert "unknown game profile 'gta6'" in caplog.text
    with pytest.raises(SystemExit) as error:
        node_main(["--config", str(config), "--index", "0", "--game", "builtin", "--player", "a b"])
    assert error.value.code == 2


class NoKeys:
    def held(self) -> frozenset[str]:
        return frozenset()


def test_a_report_between_sets_carries_the_balancing_counters_of_now():
    recorder = Recorder(
        default_config(),
        source="human:ada",
        grab=lambda: np.zeros((36, 64, 3), np.uint8),
        inputs=KeyboardInput(KeyBindings(), NoKeys()),
        sink=lambda sample_set: None,
    )
    for step in range(5):
        recorder.poll(step / 30)
    assert recorder.stats.sets_stored == 0 and recorder.stats.balance.steps == 0  # copied at sets
    sent = []
    Reporter(sent.append, 10.0, fresh=recorder.stats_now).tick(recorder.stats)
    assert sent[0].balance.steps == 5
