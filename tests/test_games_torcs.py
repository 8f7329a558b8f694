"""The TORCS profile against the real game: `games check torcs` finds the window of a program
nobody here wrote, by the profile's title, and grabs its pixels through mss; the profile's
unstuck sequence, pressed through XTest, backs the car up (TORCS has no reset key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core.config import Config
from engine.driver.controller import open_controller
from engine.driver.unstuck import choose_action
from engine.games.profile import apply_to_config, load_profile
from tests.torcs_process import FIRST_GLYPH, TorcsProcess, require_installed

pytestmark = [pytest.mark.x11, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
# The game's answer to a key: a few frames at 20-80 frames/s; generous for two busy cores.
GAME_S = 30.0


def test_games_check_torcs_finds_the_torcs_window(tmp_path):
    require_installed()
    # The main menu is enough: the window exists and draws from the start.
    with TorcsProcess(tmp_path, race=False) as torcs:
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", "games", "check", "torcs", "--json"],
            cwd=REPO,
            env={**os.environ, "DISPLAY": torcs.display},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torcs" in found["title"].lower()
    assert (found["width"], found["height"]) == (torcs.width, torcs.height)
    assert (found["frame_width"], found["frame_height"]) == (torcs.width, torcs.height)
    assert found["mean_brightness"] > 5.0  # the menu's picture, not a black window


def test_the_torcs_profiles_unstuck_sequence_backs_the_car_up_through_xtest(tmp_path, monkeypatch):
    """The sequence the driver presses when stuck, without the driver: reverse, and motion."""
    require_installed()
    profile = load_profile("torcs")
    config = apply_to_config(profile, Config())
    with TorcsProcess(tmp_path) as torcs:
        assert torcs.gear_glyph() == FIRST_GLYPH  # standing on the grid
        monkeypatch.setenv("DISPLAY", torcs.display)  # the keys go to the game's X server
        with open_controller(config.controller, profile=profile) as keys:
            action = choose_action(config.unstuck, object(), keys, profile)
            assert action.description == "press key Down (1.00 s)"
            _, standing = torcs.motion(0.5)
            action()  # returns after the release
        # TORCS's automatic gearbox turned the held brake into reverse; the car rolls back.
        # (Waited for, not measured once: on busy cores TORCS may draw nothing for a moment.)
        _until(torcs.in_reverse, "reverse gear (R)")
        _until(lambda: torcs.motion(0.5)[1] > max(1.0, 5 * standing), "the car rolling back")


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + GAME_S
    while not condition():
        assert time.monotonic() < deadline, f"TORCS did not show {what} within {GAME_S:g} s"
        time.sleep(0.1)
