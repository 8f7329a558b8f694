"""`charles-stream drive` as a real process: its JSON summary, bad input, and SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.wire import DRIVER_STAGES
from engine.driver.stage_times import WINDOW
from tests.driver_helpers import create_version, save_constant_checkpoint

pytestmark = pytest.mark.tf

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def steering_version(tmp_path_factory) -> tuple[Path, str]:
    """A version whose model always steers 0.5 right at 0.6 throttle."""
    data_dir = tmp_path_factory.mktemp("drive")
    version = create_version(data_dir)
    save_constant_checkpoint(data_dir, version, batch=42, steering=0.5, throttle_brake=0.6)
    return data_dir, version


def start_drive(data_dir: Path, version: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "engine.cli", "drive", "--model", version, "--sim"]
    return subprocess.Popen(
        [*command, "--json", "--data", str(data_dir), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(stream, text: str, timeout: float, count: int = 1) -> list[str]:
    """Lines of `stream` up to the `count`th containing `text` (fails when `timeout` seconds
    pass without a line)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line with {text!r} within {timeout} s; saw: {seen}") from None
        seen.append(line)
        count -= text in line
        if count == 0:
            return seen


def test_sigterm_stops_the_drive_with_the_built_in_game_neutral(steering_version):
    data_dir, version = steering_version
    drive = start_drive(data_dir, version)
    try:
        # The Player Console line shows the pad at work before the signal comes.
        wait_for_line(drive.stderr, "pad steer +0.50", timeout=120)
        drive.send_signal(signal.SIGTERM)
        out, _ = drive.communicate(timeout=60)
    finally:
        drive.kill()
    assert drive.returncode == 128 + signal.SIGTERM
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stopped_by"] == "SIGTERM"
    assert report["last_pad"]["steering"] == pytest.approx(0.5)
    assert report["final_controls"] == {"steering": 0.0, "throttle_brake": 0.0}


@pytest.fixture(scope="module")
def timed_report(steering_version) -> dict:
    """The JSON summary of a 3-second drive of the built-in game (one drive for its tests).

    A busy machine may start the game so slowly that 3 s bring no frame, so
    this summary is only checked for what `--seconds` itself decides."""
    data_dir, version = steering_version
    drive = start_drive(data_dir, version, "--seconds", "3")
    out, err = drive.communicate(timeout=120)
    assert drive.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def driven_report(steering_version) -> dict:
    """The JSON summary of a drive stopped once it has driven: after its second status line
    with the pad at work (every stage has run by then), however long that took."""
    data_dir, version = steering_version
    drive = start_drive(data_dir, version)
    try:
        wait_for_line(drive.stderr, "pad steer +0.50", timeout=300, count=2)
        drive.send_signal(signal.SIGTERM)
        out, _ = drive.communicate(timeout=60)
    finally:
        drive.kill()
    return json.loads(out.strip().splitlines()[-1])


def test_a_timed_drive_stops_by_time_with_the_player_numbers(timed_report):
    report = timed_report
    for key in ("pps", "fps", "distance_m", "offroad_events", "unstucks", "convcam_ms"):
        assert key in report
    assert report["batch"] == 42
    assert report["stopped_by"] == "time"


def test_json_summary_has_the_player_numbers(driven_report):
    report = driven_report
    assert report["pps"] > 0 and report["fps"] > 0
    assert report["distance_m"] > 0.0 and report["batch"] == 42


def test_json_summary_has_every_stage_time_in_loop_order(driven_report):
    stages = driven_report["stages"]
    # Every stage ran before the second status line; the names and order are the wire's.
    assert tuple(stages) == DRIVER_STAGES
    for stage, timing in stages.items():
        assert set(timing) == {"p50_ms", "p95_ms", "turns"}, stage
        assert 0 <= timing["p50_ms"] <= timing["p95_ms"], stage
        assert timing["turns"] >= 1, stage
    # The forward pass is real work: it takes time, at most a turn's worth at the PPS.
    assert 0 < stages["predict"]["p50_ms"] < 1000 / driven_report["pps"]
    # As many turns as predictions, up to the window each stage keeps.
    assert stages["predict"]["turns"] == min(WINDOW, driven_report["predictions"])


def test_an_unknown_version_exits_2_naming_it(tmp_path, caplog):
    args = ["drive", "--model", "model_0000_demo_v9", "--data", str(tmp_path)]
    assert main([*args, "--config", str(REPO / "config.toml")]) == 2
    assert "unknown model version 'model_0000_demo_v9'" in caplog.text


def test_screen_capture_with_the_sim_pad_exits_2_saying_what_to_set(tmp_path, caplog):
    args = ["drive", "--model", "model_0000_demo_v1", "--capture", "mss", "--data", str(tmp_path)]
    assert main([*args, "--config", str(REPO / "config.toml")]) == 2
    assert "controller.backend = 'vgamepad'" in caplog.text


def test_a_missing_virtual_gamepad_exits_1_saying_how_to_fix_it(tmp_path, caplog):
    config = tmp_path / "real-game.toml"
    config.write_text('[controller]\nbackend = "vgamepad"\n[capture]\nbackend = "mss"\n')
    version = create_version(tmp_path)
    args = ["drive", "--model", version, "--data", str(tmp_path), "--config", str(config)]
    assert main(args) == 1
    assert "cannot create a virtual gamepad" in caplog.text
