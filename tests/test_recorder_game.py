"""Recording a game through its profile on a real X server, alone and as a node of the stream app.

The built-in game runs in its own window on a private Xvfb (`charles-stream
sim`, the `builtin` profile's window); this test is the player, pressing keys
through XTest, so the recorder sees what it would see with a person at the
keyboard. `record --game builtin` finds the window through the shipped profile
and labels the arrow keys held; a temporary profile of that window with other
keys (W A S D), a mask over the left half and F8 as the pause key shows that
`record --game` takes all of them from the profile. The stream app with `[stream] recorders`
(no trainer process: a websocket of role "trainer" stands in for it, as the
hub cannot tell the difference) shows the recorder node's sets reaching the
trainer's side and its reports, paused or not, reaching the app's state.

The buffer is balanced on throttle_brake (5 bins) with smoothing, so cycling
the pedals completes sets within seconds while steering is whatever the player
holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from engine.app.app import StreamApp
from engine.core.config import load_config
from engine.core.wire import Hello, SampleSets, decode, encode
from engine.data.frames import decode_frame
from tests.xtest_player import Player
from tests.xvfb import built_in_game_on_xvfb

pytestmark = pytest.mark.x11

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0  # the game and the recorder import OpenCV, pygame: slow on busy cores
WAIT_S = 60.0
GAME_CONFIG = """
[sim]
window = "on"
"""
RECORD_CONFIG = """
[app]
data_dir = "{data_dir}"

[obs]
enabled = false

[chat]
console = false

[data]
frame_width = 64
frame_height = 36
outputs = ["steering", "throttle_brake"]
balanced_outputs = ["throttle_brake"]

[data.bins]
steering = {{ kind = "axis", divisions = 1 }}
throttle_brake = {{ kind = "trigger_pair", divisions = 1 }}

[collector]
sample_hz = 20.0
report_interval_s = 1.0
"""
# The built-in game's window, other keys, the left half masked, F8 pauses.
PROFILE = """
description = "the built-in game's window, recorded with W A S D, its left half masked"
[window.linux]
title = "charles-stream hood"
[window.windows]
title = "charles-stream hood"
[capture]
masks = [[0, 0, 240, 270]]
[input.keyboard]
steer_left = "a"
steer_right = "d"
accelerate = "w"
brake = "s"
[recorder]
smoothing = 0.15
pause_key = "F8"
"""
# One pedal cycle through every throttle_brake bin (-1, between, 0, between, 1), 4 s:
# accelerate, let go, brake, let go (W and S in PROFILE, Up and Down in `builtin`).
WASD_PEDALS = ("w", "s")


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Xvfb with the built-in game in its window (480x270), driven by keys."""
    config = tmp_path_factory.mktemp("game") / "config.toml"
    config.write_text(GAME_CONFIG, encoding="utf-8")
    with built_in_game_on_xvfb(config, START_TIMEOUT_S) as name:
        yield name


@pytest.fixture
def player(display: str) -> Iterator[Player]:
    keys = Player(display)
    yield keys
    keys.close()


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "masked_builtin.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    text = RECORD_CONFIG.format(data_dir=tmp_path / "data") + extra
    path.write_text(text, encoding="utf-8")
    return path


def test_record_game_builtin_finds_its_window_and_labels_the_arrow_keys(display, player, tmp_path):
    # --smoothing given overrides the profile's, so the pedal cycles fill the graded bins
    # whatever the shipped profile's value is.
    config = write_config(tmp_path)
    command = [sys.executable, "-m", "engine.cli", "record", "--game", "builtin"]
    command += ["--smoothing", "0.15", "--player", "tester", "--seconds", "10"]
    command += ["--config", str(config), "--json"]
    recording = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert recording.stderr is not None
        for line in recording.stderr:  # until the window is found and recording runs
            if "recording:" in line:
                break
        player.hold("Right")
        player.pedal_cycles(2)
        out, err = recording.communicate(timeout=START_TIMEOUT_S)
    finally:
        player.release_all()
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 0, err
    with sqlite3.connect(tmp_path / "data" / "samples" / "samples.db") as connection:
        rows = connection.execute("SELECT source, outputs FROM samples").fetchall()
    assert json.loads(out.strip().splitlines()[-1])["samples"] == len(rows) >= 5
    labels = [json.loads(outputs) for _, outputs in rows]
    steering = [outputs["steering"] for outputs in labels]
    assert steering.count(1.0) >= 0.8 * len(steering), "Right held is steering 1"
    assert {-1.0, 1.0} <= {outputs["throttle_brake"] for outputs in labels}


def test_record_game_takes_window_keys_masks_and_pause_key_from_the_profile(
    display, player, profile, tmp_path
):
    config = write_config(tmp_path)
    command = [sys.executable, "-m", "engine.cli", "record", "--game", str(profile)]
    command += ["--player", "tester", "--seconds", "10", "--config", str(config), "--json"]
    recording = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert recording.stderr is not None
        started = []
        for line in recording.stderr:  # until the window is found and recording runs
            started.append(line)
            if "recording:" in line:
                break
        assert any("F8 pauses/resumes" in line for line in started), started
        player.hold("a")
        player.pedal_cycles(2, WASD_PEDALS)
        out, err = recording.communicate(timeout=START_TIMEOUT_S)
    finally:
        player.release_all()
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    with sqlite3.connect(tmp_path / "data" / "samples" / "samples.db") as connection:
        rows = connection.execute("SELECT source, outputs, frame FROM samples").fetchall()
    assert summary["samples"] == len(rows) >= 5
    assert {source for source, _, _ in rows} == {"human:tester"}
    steering = [json.loads(outputs)["steering"] for _, outputs, _ in rows]
    assert steering.count(-1.0) >= 0.8 * len(steering), "the profile's 'a' is steer_left"
    pedals = {json.loads(outputs)["throttle_brake"] for _, outputs, _ in rows}
    assert {-1.0, 1.0} <= pedals, "the profile's 'w' and 's' are the pedals"
    for _, _, jpeg in rows:
        frame = decode_frame(jpeg, (64, 36)).astype(int)
        # The mask covers the window's left half: frame columns 0-31 (JPEG blurs the edge).
        assert frame[:, :29].max() <= 24, "a masked pixel is not black"
        assert frame[:, 35:].mean() > 30, "the unmasked half is black too"


@pytest.mark.slow
async def test_the_app_starts_a_recorder_whose_sets_reach_the_trainer_and_reports_the_state(
    display, player, profile, tmp_path, monkeypatch
):
    monkeypatch.setenv("DISPLAY", display)  # the app's children inherit it
    recorders = f'recorders = [{{ game = "{profile}", player = "ada" }}]'
    path = write_config(
        tmp_path,
        f"\n[hub]\nport = 0\n\n[stream]\ncollectors = 0\ntrainer = false\ndriver = false\n"
        f"{recorders}\n\n[supervisor]\nbackoff_s = 0.2\n",
    )
    app = StreamApp(load_config(path), config_path=str(path))
    await app.start()
    try:
        assert set(app.state.processes) == {"recorder-0"}
        await until(lambda: "recorder-0" in app.state.collectors, "the recorder's first report")
        first = app.state.collectors["recorder-0"]
        assert first.source == "human:ada" and not first.paused
        received: list[SampleSets] = []
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {app.token}"}) as session,
            session.ws_connect(app.hub.url()) as trainer,
        ):
            await trainer.send_bytes(encode(Hello(role="trainer", name="trainer")))
            reader = asyncio.create_task(read_sets(trainer, received))
            await asyncio.to_thread(drive, player)
            await until(lambda: received, "a sample set at the trainer's end of the hub")
            reader.cancel()
        samples = [
            sample for message in received for sets in message.sets for sample in sets.samples
        ]
        assert {sample.source for sample in samples} == {"human:ada"}
        steering = [sample.outputs["steering"] for sample in samples]
        assert steering.count(-1.0) >= 0.8 * len(steering)
        await until(
            lambda: app.state.collectors["recorder-0"].samples_sent >= 5, "a report of the sets"
        )
        await asyncio.to_thread(player.tap, "F8")
        await until(lambda: app.state.collectors["recorder-0"].paused, "a paused report")
        await asyncio.to_thread(player.tap, "F8")
        await until(lambda: not app.state.collectors["recorder-0"].paused, "a resumed report")
    finally:
        await app.stop()
    assert app.state.processes["recorder-0"].last_exit == 0


def drive(player: Player) -> None:
    player.hold("a")
    player.pedal_cycles(2, WASD_PEDALS)
    player.release("a")


async def read_sets(ws: aiohttp.ClientWebSocketResponse, into: list[SampleSets]) -> None:
    async for received in ws:
        if received.type is aiohttp.WSMsgType.BINARY:
            message = decode(received.data)
            if isinstance(message, SampleSets):
                into.append(message)


async def until(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.05)
