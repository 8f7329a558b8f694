"""`charles-stream drive --game torcs` against Debian's real TORCS: a model moves the car, the
frame-motion unstuck backs a standing car out, and the overlay pages show the game and Convcam.

The driver sees TORCS only through its window's pixels and touches it only through XTest keys,
as it would the streamer's game; the test reads the same pixels to judge what happened (frame
motion, and the dashboard's gear letter: R when the car backs up). Models are the demo line
with every head fixed to a value (tests/driver_helpers.py), so what the car does is known:
full throttle drives off the grid, zero throttle leaves it standing until the unstuck.

Each test gets a fresh race with the car standing on the grid. Every wait is for an event (a
log line, a picture that moves, a page that drew frames) with a generous limit that only ends
a test that would otherwise hang: TensorFlow and TORCS share two busy cores.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.async_api import async_playwright

from engine.core.store import AppState, VersionStreamed
from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV
from engine.node.hub_files import HUB_DATA_DIR_ENV
from tests.driver_helpers import create_version, save_constant_checkpoint
from tests.hub_helpers import TOKEN, wait_until
from tests.overlay_helpers import launch_chromium, needs_chromium, overlay_hub
from tests.torcs_process import FIRST_GLYPH, REVERSE_GLYPH, TorcsProcess, require_installed

pytestmark = [pytest.mark.x11, pytest.mark.tf, pytest.mark.slow]

log = logging.getLogger("tests.torcs_drive")

REPO = Path(__file__).resolve().parent.parent
# TensorFlow's import and the first prediction, on two cores TORCS is also using.
DRIVER_START_S = 180.0
# Anything the game does once the driver runs: it draws 20-80 frames/s.
GAME_S = 60.0
STOP_S = 30.0
# Mean frame-to-frame difference (levels) of a car under way; on the grid it is about 0.1.
UNDER_WAY = 1.0
# The stuck window: short, so the standing car is unstuck soon after the driver starts.
STUCK_CONFIG = "[unstuck]\nwindow_s = 2.0\n"


@pytest.fixture
def torcs(tmp_path: Path) -> Iterator[TorcsProcess]:
    """A fresh Quick Race, the human-driven car standing on the grid in first gear."""
    require_installed()
    with TorcsProcess(tmp_path / "torcs") as game:
        assert game.gear_glyph() == FIRST_GLYPH, "the car should stand on the grid in first"
        yield game


class Drive:
    """`charles-stream drive --game torcs` as a child process, its log lines read as they come."""

    def __init__(self, torcs: TorcsProcess, tmp_path: Path, throttle: float) -> None:
        data_dir = tmp_path / "data"
        self.version = create_version(data_dir)
        save_constant_checkpoint(data_dir, self.version, 1, steering=0.0, throttle_brake=throttle)
        config = tmp_path / "config.toml"
        config.write_text(STUCK_CONFIG, encoding="utf-8")
        command = [sys.executable, "-m", "engine.cli", "drive", "--model", self.version]
        command += ["--game", "torcs", "--json", "--data", str(data_dir), "--config", str(config)]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "DISPLAY": torcs.display},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name="drive-stderr", daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, text: str, timeout_s: float) -> str:
        """The first log line (from now on) that contains `text`; fails if the driver ended."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"drive logged no {text!r} within {timeout_s:g} s\n{self.tail()}")
            try:
                line = self._new.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"drive ended before logging {text!r}\n{self.tail()}")
            self.lines.append(line)
            if text in line:
                return line

    def stop(self) -> dict:
        """SIGTERM it as the app would, and its JSON summary (it exits 143, keys released)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"drive did not stop within {STOP_S:g} s of SIGTERM\n{self.tail()}")
        assert self.process.returncode == 128 + signal.SIGTERM, self.tail()
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        """End it whatever state it is in (a failed test's clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def tail(self) -> str:
        """The driver's last log lines, for a failure's message."""
        while True:
            try:
                line = self._new.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines[-30:])


@pytest.fixture
def drive(torcs: TorcsProcess, tmp_path: Path) -> Iterator[Callable[[float], Drive]]:
    """Start a drive with a model whose throttle is fixed; it is killed after the test."""
    started: list[Drive] = []

    def start(throttle: float) -> Drive:
        started.append(Drive(torcs, tmp_path, throttle))
        return started[-1]

    yield start
    for running in started:
        running.kill()


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for the game to show something (its pixels are the only way to see it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"TORCS did not show {what} within {timeout_s:g} s")
        time.sleep(0.1)


def test_drive_with_a_model_moves_the_car(torcs, drive):
    _, standing = torcs.motion(1.0)
    driving = drive(1.0)
    driving.wait_for(f"driving {driving.version}", DRIVER_START_S)
    moved: list[float] = []

    def under_way() -> bool:
        fps, difference = torcs.motion(1.0)
        moved.append(difference)
        log.info("TORCS under the driver: %.1f changed frames/s, motion %.2f", fps, difference)
        return difference > UNDER_WAY

    until(under_way, GAME_S, "the car driving off the grid")
    assert torcs.gear_glyph() != REVERSE_GLYPH  # forward, on the model's throttle
    report = driving.stop()
    assert report["stopped_by"] == "SIGTERM"
    assert report["predictions"] > 0 and report["fps"] > 1.0
    assert report["last_pad"]["right_trigger"] > 0.9  # what the keys were told: full throttle
    assert report["distance_m"] is None  # pixels only, no telemetry
    log.info("standing %.2f, driving %s; drive report %s", standing, moved, report)


def test_a_standing_car_is_unstuck_by_backing_out_through_the_profiles_keys(torcs, drive):
    standing = drive(0.0)  # the model never touches the throttle: only the unstuck can move it
    line = standing.wait_for("unstuck #1", DRIVER_START_S + GAME_S)
    # The frame-motion watch saw the screen still, and the profile's sequence was chosen.
    assert "screen changed" in line and "press key Down (1.00 s)" in line, line
    log.info("the driver: %s", line.strip())
    until(torcs.in_reverse, GAME_S, "reverse gear (R) after the unstuck's Down key")
    until(lambda: torcs.motion(0.5)[1] > UNDER_WAY, GAME_S, "the car backing up")
    report = standing.stop()
    assert report["unstucks"] >= 1
    assert report["last_pad"]["right_trigger"] == 0.0 and report["last_pad"]["left_trigger"] == 0.0


@needs_chromium
@pytest.mark.browser
async def test_the_overlay_pages_show_torcs_and_convcam_from_the_driver_node(torcs, tmp_path):
    data_dir = tmp_path / "data"
    version = create_version(data_dir)
    save_constant_checkpoint(data_dir, version, 1, steering=0.0, throttle_brake=0.0)
    config = tmp_path / "config.toml"
    # The car stands (zero throttle, no unstuck for minutes): the page and a grab of the window
    # can then be compared pixel by pixel.
    config.write_text(
        f'[app]\ndata_dir = "{data_dir}"\n[driver]\ngame = "torcs"\nframes_hz = 5.0\n'
        "[unstuck]\nwindow_s = 600.0\n",
        encoding="utf-8",
    )
    state = AppState()
    state.apply(VersionStreamed(version, created=""))
    async with overlay_hub(state) as (hub, _):
        node_log = tmp_path / "driver.log"
        command = [sys.executable, "-m", "engine.driver.node", "--config", str(config)]
        with node_log.open("wb") as output:
            node = subprocess.Popen(
                [*command, "--model", version],
                cwd=REPO,
                env={
                    **os.environ,
                    "DISPLAY": torcs.display,
                    HUB_URL_ENV: hub.url(),
                    HUB_TOKEN_ENV: TOKEN,
                    HUB_DATA_DIR_ENV: str(data_dir),  # the hub's machine: no copies
                },
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                await wait_until(lambda: state.frames is not None, DRIVER_START_S)
            except AssertionError:
                pytest.fail("no frames from the driver node\n" + node_log.read_text()[-3000:])
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright)
                try:
                    # CSP bypassed, as in test_overlay_pages.py: the waits below are evaluated
                    # JavaScript, which the pages' script-src 'self' refuses otherwise.
                    context = await browser.new_context(
                        bypass_csp=True, viewport={"width": 1280, "height": 720}
                    )
                    page = await context.new_page()
                    page.set_default_timeout(60_000)
                    base = f"http://127.0.0.1:{hub.port}/overlay"
                    await page.goto(f"{base}/hood?width=640&height=480")
                    await page.wait_for_function("window.overlayStats.frames[0] > 2")
                    hood = await canvas_image(page)
                    await page.goto(f"{base}/convcam?width=480&height=480")
                    await page.wait_for_function("window.overlayStats.frames[1] > 2")
                    convcam = await canvas_image(page)
                finally:
                    await browser.close()
            window = torcs.grab()
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(STOP_S)
    # The hood tile is the game's window as the driver grabbed it (JPEG, scaled to the tile).
    small = (64, 48)
    page_view = cv2.resize(hood[:, :, :3], small, interpolation=cv2.INTER_AREA).astype(float)
    game_view = cv2.resize(window, small, interpolation=cv2.INTER_AREA).astype(float)
    difference = float(np.abs(page_view - game_view).mean())
    log.info("hood tile vs TORCS window: %.1f levels; convcam std %.1f", difference, convcam.std())
    assert difference < 12.0, f"the hood tile differs from the TORCS window by {difference:.1f}"
    assert game_view.std() > 20.0  # a race picture, so the match means something
    # Convcam: the model's activations on those frames, drawn (not a blank canvas).
    assert convcam[:, :, 3].max() == 255 and convcam[:, :, :3].std() > 5.0


async def canvas_image(page) -> np.ndarray:
    """The page's camera canvas as RGBA pixels (through a PNG data URL)."""
    url = await page.evaluate("document.querySelector('.camera-canvas').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    bgra = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
