"""Capture runs ahead: the newest frame wins, stale ones are dropped, the game keeps real time."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from engine.core.config import CaptureConfig
from engine.core.errors import ConfigError
from engine.driver.capture import Capture, CaptureError, SimSource, screen_area, window_area
from engine.sim.game import Controls, Game
from tests.driver_helpers import small_sim

MODEL_SIZE = (128, 72)
# Only ends a hung test: a passing one never waits this long, however busy the machine.
WAIT_S = 60.0
MONITORS = [
    {"left": 0, "top": 0, "width": 2560, "height": 1080},
    {"left": 0, "top": 0, "width": 1280, "height": 1080},
    {"left": 1280, "top": 0, "width": 1280, "height": 1080},
]


def sim_capture(**changes: object) -> Capture:
    source = SimSource(Game(small_sim(**changes), seed=2))
    return Capture(source, size=MODEL_SIZE, max_fps=200.0)


def test_frames_come_resized_for_the_model_with_the_game_state():
    with sim_capture() as capture:
        frame = capture.next_frame(after=-1, timeout=WAIT_S)
    assert frame is not None
    assert frame.image.shape == (108, 192, 3)
    assert frame.model_input.shape == (72, 128, 3) and frame.model_input.dtype == np.uint8
    assert frame.telemetry is not None and frame.telemetry.time > 0


def test_a_slow_reader_gets_the_newest_frame_and_the_rest_are_dropped():
    with sim_capture() as capture:
        first = capture.next_frame(after=-1, timeout=WAIT_S)
        # A slow prediction, during which the game goes on: frames come and go unread.
        deadline = time.monotonic() + WAIT_S
        while capture.frames_dropped < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        newest = capture.next_frame(after=first.index, timeout=WAIT_S)
        dropped = capture.frames_dropped
    assert newest.index >= first.index + 5
    assert dropped >= newest.index - first.index - 1


def test_next_frame_waits_for_a_newer_frame_than_the_one_it_had():
    with sim_capture() as capture:
        first = capture.next_frame(after=-1, timeout=WAIT_S)
        second = capture.next_frame(after=first.index, timeout=WAIT_S)
    assert second.index > first.index and second.captured_at > first.captured_at


def test_the_built_in_game_runs_in_real_time():
    with sim_capture() as capture:
        first = capture.next_frame(after=-1, timeout=WAIT_S)
        started = time.monotonic()
        time.sleep(1.0)
        last = capture.next_frame(after=first.index, timeout=WAIT_S)
        wall = time.monotonic() - started
    game_time = last.telemetry.time - first.telemetry.time
    assert game_time == pytest.approx(wall, abs=0.2)


def test_a_respawn_moves_the_car_between_ticks():
    source = SimSource(Game(small_sim(), seed=2))
    with Capture(source, size=MODEL_SIZE, max_fps=200.0) as capture:
        before = capture.next_frame(after=-1, timeout=WAIT_S)
        source.request_respawn()
        assert source.wait_respawned(timeout=WAIT_S)
        after = capture.next_frame(after=before.index, timeout=WAIT_S)
    moved = np.hypot(after.telemetry.x - before.telemetry.x, after.telemetry.y - before.telemetry.y)
    assert moved > 5.0


def test_chase_frames_are_rendered_on_the_side_when_asked_for():
    source = SimSource(Game(small_sim(), seed=2), chase_hz=20.0)
    with Capture(source, size=MODEL_SIZE, max_fps=200.0) as capture:
        frame = capture.next_frame(after=-1, timeout=WAIT_S)
        capture.next_frame(after=frame.index, timeout=WAIT_S)
        chase = source.latest_chase()
    assert chase is not None and chase.shape == (90, 160, 3)


def test_controls_set_from_another_thread_drive_the_game():
    source = SimSource(Game(small_sim(), seed=2))
    with Capture(source, size=MODEL_SIZE, max_fps=200.0) as capture:
        frame = capture.next_frame(after=-1, timeout=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while frame.telemetry.speed < 2.0 and time.monotonic() < deadline:
            source.game.set_controls(Controls(0.0, 1.0))  # fresh input for the dead-man switch
            frame = capture.next_frame(after=frame.index, timeout=WAIT_S)
    assert frame.telemetry.speed >= 2.0


class FailingSource:
    name = "failing"

    def open(self) -> None:
        pass

    def grab(self, stop: threading.Event):
        raise OSError("the X server went away")

    def close(self) -> None:
        pass


def test_a_failing_source_is_reported_to_the_reader():
    with (
        Capture(FailingSource(), size=MODEL_SIZE, max_fps=30.0) as capture,
        pytest.raises(CaptureError, match="failing failed: the X server went away"),
    ):
        capture.next_frame(after=-1, timeout=WAIT_S)


def test_no_frame_within_the_timeout_gives_none():
    capture = Capture(FailingSource(), size=MODEL_SIZE, max_fps=30.0)  # never started
    assert capture.next_frame(after=-1, timeout=0.05) is None


def test_region_is_relative_to_its_monitor():
    area = screen_area(CaptureConfig(backend="mss", monitor=2, region=(10, 20, 480, 270)), MONITORS)
    assert area == {"left": 1290, "top": 20, "width": 480, "height": 270}


def test_no_region_means_the_whole_monitor():
    area = screen_area(CaptureConfig(backend="mss", monitor=1), MONITORS)
    assert area == {"left": 0, "top": 0, "width": 1280, "height": 1080}


def test_a_monitor_that_does_not_exist_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"'capture.monitor' = 3 does not exist; accepted: 0.*2"):
        screen_area(CaptureConfig(backend="mss", monitor=3), MONITORS)


def test_a_region_outside_its_monitor_is_a_clear_error():
    config = CaptureConfig(backend="mss", monitor=1, region=(1000, 0, 480, 270))
    with pytest.raises(ConfigError, match="reaches outside monitor 1 \\(1280x1080\\)"):
        screen_area(config, MONITORS)


def test_a_malformed_region_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"'capture.region' = \[0, 0, 480\]"):
        CaptureConfig(region=(0, 0, 480))


@pytest.mark.skipif(sys.platform == "win32", reason="window titles work there")
def test_window_title_off_windows_says_to_use_a_region():
    with pytest.raises(ConfigError, match=r"works on Windows only.*capture\.region"):
        window_area("Grand Theft Auto V")
