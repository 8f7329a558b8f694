"""`obs setup` with `[driver] game = "torcs"` against Debian's real OBS and the real TORCS: the
capture source OBS gets shows the game's window, as the driver sees it.

Debian's OBS under a bare Xvfb offers only the screen capture (`xshm_input`: its window capture
needs a window manager with EWMH), so the source reads TORCS's X server cropped to the window.
TORCS runs on a screen larger than its window so that the crop is tested, not just the screen.
What OBS renders of the source (GetSourceScreenshot) is compared with a grab of the window.
"""

from __future__ import annotations

import base64
import logging
import time

import cv2
import numpy as np
import pytest

from engine.cli import main
from overlays.obs import PASSWORD_ENV, ObsRequestError
from overlays.obs_setup import GAME_CAPTURE
from tests.obs_process import PASSWORD, ObsProcess, needs_obs
from tests.torcs_process import TorcsProcess, require_installed

pytestmark = [pytest.mark.obs, pytest.mark.x11, pytest.mark.slow, needs_obs]

SCENE = "Charles"
SCREEN = (640, 480)  # TORCS's 320x240 window at its top left corner
# OBS renders at 10 frames/s with software OpenGL; its first renders of a new source are empty.
PICTURE_S = 60.0
SMALL = (64, 48)

log = logging.getLogger("tests.obs_torcs")


def test_obs_setup_points_the_capture_source_at_the_torcs_window(tmp_path, monkeypatch, capsys):
    require_installed()
    with TorcsProcess(tmp_path / "torcs", screen=SCREEN) as torcs:
        obs = ObsProcess(tmp_path / "obs")
        try:  # Xvfb is stopped also when OBS fails to start
            obs.start()
            monkeypatch.setenv("DISPLAY", torcs.display)  # where setup looks for the window
            monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
            path = tmp_path / "config.toml"
            path.write_text(
                f'[app]\ndata_dir = "{tmp_path}"\n[obs]\nport = {obs.port}\nscene = "{SCENE}"\n'
                '[driver]\ngame = "torcs"\n',
                encoding="utf-8",
            )
            # 1: Debian's OBS lacks browser sources (the overlay tiles), not the capture.
            assert main(["obs", "setup", "--config", str(path)]) == 1
            captured = capsys.readouterr()
            assert f"created {GAME_CAPTURE}" in captured.out
            assert "does not show game" not in captured.err  # the window was found
            session = obs.session()
            try:
                answer = session.request("GetInputSettings", {"inputName": GAME_CAPTURE})
                assert answer["inputKind"] == "xshm_input"
                settings = answer["inputSettings"]
                assert settings["server"] == torcs.display and settings["advanced"] is True
                assert (settings["cut_left"], settings["cut_top"]) == (0, 0)
                assert (settings["cut_right"], settings["cut_bot"]) == (
                    SCREEN[0] - torcs.width,
                    SCREEN[1] - torcs.height,
                )
                # As a streamer would after setup: the scene on air, so OBS draws the source.
                session.request("SetCurrentProgramScene", {"sceneName": SCENE})
                difference, size = _until_obs_shows(session, torcs.grab)
            finally:
                session.close()
        finally:
            obs.close()
    log.info("OBS's capture vs the TORCS window: %.1f levels, %dx%d", difference, *size)
    assert size == (torcs.width, torcs.height)  # the window, cropped out of the screen
    assert difference < 12.0, f"OBS's capture differs from the TORCS window by {difference:.1f}"


def _until_obs_shows(session, grab) -> tuple[float, tuple[int, int]]:
    """Wait until OBS's picture of the source matches the window: difference, picture size."""
    deadline = time.monotonic() + PICTURE_S
    difference, size = float("inf"), (0, 0)
    while difference >= 12.0 and time.monotonic() < deadline:
        try:
            shot = session.request(
                "GetSourceScreenshot",
                {"sourceName": GAME_CAPTURE, "imageFormat": "png"},
            )
        except ObsRequestError:
            time.sleep(0.5)  # no picture yet
            continue
        png = base64.b64decode(shot["imageData"].split(",", 1)[1])
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        size = (bgr.shape[1], bgr.shape[0])
        seen = cv2.resize(bgr[:, :, ::-1], SMALL, interpolation=cv2.INTER_AREA).astype(float)
        window = cv2.resize(grab(), SMALL, interpolation=cv2.INTER_AREA).astype(float)
        difference = float(np.abs(seen - window).mean())
        if difference >= 12.0:
            time.sleep(0.5)
    return difference, size
