"""The TORCS profile against the real game: `games check torcs` finds the window of a program
nobody here wrote, by the profile's title, and grabs its pixels through mss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.torcs_process import TorcsProcess, require_installed

pytestmark = [pytest.mark.x11, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


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
