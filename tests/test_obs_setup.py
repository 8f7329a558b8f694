"""`obs setup` against an OBS with browser sources: a local obs-websocket 5 server (obs_server.py).

obsws-python is the real client; the server records the requests, so the
browser sources' kind, URL, size and position are checked as OBS receives them.
The same command against Debian's real OBS is in test_obs_real.py.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from engine.cli import main
from engine.core.config import CaptureConfig, Config, DriverConfig, HubConfig, ObsConfig
from engine.core.errors import ConfigError, UsageError
from overlays.layout import TILES
from overlays.obs import MODEL_LABEL, PASSWORD_ENV, ObsSession
from overlays.obs_setup import (
    GAME_CAPTURE,
    GameWindow,
    SetupReport,
    capture_settings,
    overlay_base_url,
    setup_scene,
)
from tests.obs_server import PASSWORD, FakeObs, running_fake_obs

SCENE = "Charles"


def stream_config(obs: FakeObs, *, backend: str = "sim", game: str = "") -> Config:
    return msgspec.structs.replace(
        Config(),
        hub=HubConfig(port=8765),
        obs=ObsConfig(port=obs.port, scene=SCENE),
        capture=CaptureConfig(backend=backend),
        driver=DriverConfig(game=game),
    )


# TORCS's window as `game_window` finds it on an X screen larger than the window.
TORCS_WINDOW = GameWindow(
    "torcs", "torcs-bin", 0x400002, "torcs-bin", 10, 20, 320, 240, 1280, 720, ":7"
)


async def run_setup(obs: FakeObs, config: Config) -> SetupReport:
    session = await asyncio.to_thread(ObsSession.connect, config.obs, PASSWORD)
    try:
        return await asyncio.to_thread(setup_scene, session, config)
    finally:
        await asyncio.to_thread(session.close)  # the fake answers the close on this loop


async def test_setup_makes_a_browser_source_per_tile_at_its_layout_position():
    async with running_fake_obs(FakeObs()) as obs:
        report = await run_setup(obs, stream_config(obs))
    assert report.complete
    assert sorted(report.created) == sorted(f"Charles {name}" for name in TILES)
    for tile in TILES.values():
        name = f"Charles {tile.name}"
        assert obs.inputs[name]["kind"] == "browser_source"
        settings = obs.inputs[name]["settings"]
        assert settings["url"] == (
            f"http://127.0.0.1:8765/overlay/{tile.name}?width={tile.width}&height={tile.height}"
        )
        assert (settings["width"], settings["height"]) == (tile.width, tile.height)
        transform = obs.item(SCENE, name)["transform"]
        assert (transform["positionX"], transform["positionY"]) == (tile.x, tile.y)
        assert (transform["boundsWidth"], transform["boundsHeight"]) == (tile.width, tile.height)


async def test_setup_scales_the_layout_to_the_obs_canvas():
    async with running_fake_obs(FakeObs(canvas=(1280, 720))) as obs:
        await run_setup(obs, stream_config(obs))
    hood = obs.item(SCENE, "Charles hood")["transform"]
    assert hood["positionX"] == pytest.approx(1280 * 1280 / 1920)
    assert hood["boundsWidth"] == pytest.approx(640 * 1280 / 1920)
    assert hood["boundsHeight"] == pytest.approx(360 * 720 / 1080)


async def test_setup_again_updates_the_sources_instead_of_adding_copies():
    async with running_fake_obs(FakeObs()) as obs:
        config = stream_config(obs)
        await run_setup(obs, config)
        items_before = [item["sceneItemId"] for item in obs.scenes[SCENE]]
        again = await run_setup(obs, config)
    assert again.created == []
    assert sorted(again.updated) == sorted(f"Charles {name}" for name in TILES)
    assert [item["sceneItemId"] for item in obs.scenes[SCENE]] == items_before
    assert len(obs.requested("CreateInput")) == len(TILES)
    assert len(obs.requested("CreateScene")) == 1


async def test_setup_puts_a_capture_source_at_the_main_tile_for_a_real_game():
    async with running_fake_obs(FakeObs()) as obs:
        report = await run_setup(obs, stream_config(obs, backend="mss"))
    assert "Charles camera" not in obs.inputs
    assert obs.inputs["Charles game capture"]["kind"] == "xshm_input"  # the fake's only capture
    transform = obs.item(SCENE, "Charles game capture")["transform"]
    assert (transform["boundsWidth"], transform["boundsHeight"]) == (1280, 720)
    assert report.complete


async def test_a_game_profile_makes_the_capture_source_even_with_the_sim_capture(monkeypatch):
    # [driver] game decides the main tile: the driver captures the game's window, not the sim.
    monkeypatch.delenv("DISPLAY", raising=False)  # the game's window cannot be looked up
    async with running_fake_obs(FakeObs()) as obs:
        report = await run_setup(obs, stream_config(obs, game="torcs"))
    assert "Charles camera" not in obs.inputs
    assert obs.inputs[GAME_CAPTURE]["kind"] == "xshm_input"
    assert obs.inputs[GAME_CAPTURE]["settings"] == {}  # no target yet: nothing wrong to show
    assert not report.complete
    assert "does not show game 'torcs' yet" in report.problems[0]
    assert "obs setup` again once the game's window is open" in report.problems[0]


async def test_an_unknown_game_profile_is_refused_before_obs_changes():
    async with running_fake_obs(FakeObs()) as obs:
        with pytest.raises(UsageError, match="unknown game profile 'nfs'"):
            await run_setup(obs, stream_config(obs, game="nfs"))
    assert obs.requested("CreateInput") == [] and obs.requested("CreateScene") == []


def test_a_window_capture_targets_the_games_window_by_id_title_and_class():
    settings = capture_settings("xcomposite_input", TORCS_WINDOW, SetupReport("s"))
    assert settings == {"capture_window": f"{0x400002}\r\ntorcs-bin\r\ntorcs-bin"}


def test_a_screen_capture_is_cropped_to_the_games_window_on_its_x_server():
    settings = capture_settings("xshm_input", TORCS_WINDOW, SetupReport("s"))
    assert settings == {
        "screen": 0,
        "advanced": True,
        "server": ":7",
        "cut_left": 10,
        "cut_top": 20,
        "cut_right": 1280 - 330,
        "cut_bot": 720 - 260,
    }


def test_windows_captures_match_the_games_title():
    window = GameWindow("gta5", "Grand Theft Auto V: Enhanced")
    game = capture_settings("game_capture", window, SetupReport("s"))
    assert game == {
        "window": "Grand Theft Auto V#3A Enhanced::",
        "priority": 1,
        "capture_mode": "window",
    }
    assert capture_settings("window_capture", window, SetupReport("s"))["priority"] == 1


def test_a_capture_kind_without_window_settings_says_to_pick_the_window():
    report = SetupReport("s")
    assert capture_settings("pipewire-window-capture-source", TORCS_WINDOW, report) == {}
    assert "game 'torcs''s window 'torcs-bin' by settings: pick it in" in report.problems[0]


def test_a_region_profile_gets_a_cropped_screen_but_no_window_capture():
    region = GameWindow("arcade", "", 0, "", 100, 50, 640, 480, 1920, 1080, ":0")
    cropped = capture_settings("xshm_input", region, SetupReport("s"))
    assert (cropped["cut_left"], cropped["cut_right"], cropped["cut_bot"]) == (100, 1180, 550)
    report = SetupReport("s")
    assert capture_settings("xcomposite_input", region, report) == {}
    assert "game 'arcade''s region by settings" in report.problems[0]


async def test_setup_keeps_the_streamers_sources_and_removes_only_its_own_stale_ones():
    fake = FakeObs(scenes={SCENE: []})
    fake.add_input(SCENE, "Webcam", "image_source", {})
    fake.add_input(SCENE, "Charles old tile", "image_source", {})
    async with running_fake_obs(fake) as obs:
        report = await run_setup(obs, stream_config(obs))
    names = [item["sourceName"] for item in obs.scenes[SCENE]]
    assert report.removed == ["Charles old tile"]
    # The layout's tiles bottom to top, the streamer's own source above them.
    assert names == [f"Charles {name}" for name in TILES] + ["Webcam"]


async def test_setup_without_browser_sources_says_so_and_makes_the_model_label():
    kinds = ("image_source", "text_ft2_source_v2", "xshm_input")
    async with running_fake_obs(FakeObs(kinds=kinds)) as obs:
        report = await run_setup(obs, stream_config(obs))
    assert not report.complete
    assert "browser_source" in report.problems[0]
    assert "camera, hood, convcam" in report.problems[0]
    assert obs.inputs[MODEL_LABEL]["kind"] == "text_ft2_source_v2"
    transform = obs.item(SCENE, MODEL_LABEL)["transform"]
    model = TILES["model"]
    assert (transform["positionX"], transform["positionY"]) == (model.x, model.y)


async def test_obs_setup_command_prints_what_it_made(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    async with running_fake_obs(FakeObs()) as obs:
        path = tmp_path / "config.toml"
        path.write_text(
            f'[app]\ndata_dir = "{tmp_path}"\n[obs]\nport = {obs.port}\nscene = "{SCENE}"\n',
            encoding="utf-8",
        )
        code = await asyncio.to_thread(main, ["obs", "setup", "--config", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "created Charles loss" in out
    assert "http://127.0.0.1:8765/overlay/" in out


async def test_obs_setup_command_exits_1_when_the_password_is_wrong(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    async with running_fake_obs(FakeObs()) as obs:
        path = tmp_path / "config.toml"
        path.write_text(f'[app]\ndata_dir = "{tmp_path}"\n[obs]\nport = {obs.port}\n')
        code = await asyncio.to_thread(main, ["obs", "setup", "--config", str(path)])
    assert code == 1
    assert "refused the password" in caplog.text
    assert "not-the-password" not in caplog.text


def test_overlay_address_needs_a_fixed_hub_port():
    config = msgspec.structs.replace(Config(), hub=HubConfig(port=0))
    with pytest.raises(ConfigError, match=r"\[obs\] overlay_url"):
        overlay_base_url(config)
    loopback = msgspec.structs.replace(Config(), hub=HubConfig(host="127.0.0.1", port=9000))
    assert overlay_base_url(loopback) == "http://127.0.0.1:9000"


def test_overlays_of_a_hub_serving_tls_beyond_loopback_use_its_plain_local_port():
    hub = HubConfig(host="0.0.0.0", port=9000, local_port=9001)
    wildcard = msgspec.structs.replace(Config(), hub=hub)
    assert overlay_base_url(wildcard) == "http://127.0.0.1:9001"
    no_local_port = msgspec.structs.replace(wildcard, hub=HubConfig(host="0.0.0.0", local_port=0))
    with pytest.raises(ConfigError, match=r"\[hub\] local_port = 0"):
        overlay_base_url(no_local_port)
