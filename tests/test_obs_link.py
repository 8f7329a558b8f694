"""The app without OBS, the OBS password's storage, and the link against a local obs-websocket."""

from __future__ import annotations

import io
import itertools
import socket

import aiohttp
import msgspec

from engine.app.app import StreamApp
from engine.cli import main
from engine.core.config import Config, HubConfig, ObsConfig, StreamConfig
from engine.core.store import AppState, VersionStreamed
from engine.records.moments import Moments
from overlays.obs import (
    MODEL_LABEL,
    PASSWORD_ENV,
    ObsLink,
    obs_password,
    retry_delays,
    store_obs_password,
)
from tests.driver_helpers import create_version
from tests.hub_helpers import wait_until
from tests.obs_server import PASSWORD, FakeObs, running_fake_obs


async def test_the_app_streams_tags_and_serves_overlays_while_obs_is_absent(tmp_path):
    config = msgspec.structs.replace(
        Config(),
        app=msgspec.structs.replace(Config().app, data_dir=str(tmp_path)),
        hub=HubConfig(port=0),
        stream=StreamConfig(collectors=0, trainer=False, driver=False),
        obs=ObsConfig(port=_closed_port(), reconnect_min_s=0.1, reconnect_max_s=0.2),
    )
    create_version(tmp_path)  # the streamed line has a version: no parameter count to run
    app = StreamApp(config, config_path=None)
    await app.start()
    try:
        await wait_until(lambda: app.state.connections["obs"].startswith("not connected"))
        base = f"http://127.0.0.1:{app.hub.port}"
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {app.token}"}
        ) as session:
            async with session.get(f"{base}/api/status") as response:
                status = await response.json()
            async with session.post(f"{base}/api/tag", json={"text": "OBS is away"}) as response:
                tagged = response.status
            async with session.get(f"{base}/overlay/") as response:
                overlay = response.status
        # Several attempts have failed (the delay is at its cap); the app went on regardless.
        await wait_until(lambda: app.state.connections["obs"].endswith("retrying in 0.2 s"))
    finally:
        await app.stop()
    assert "nothing listens at 127.0.0.1" in status["connections"]["obs"]
    assert (tagged, overlay) == (200, 200)
    moment = Moments(tmp_path).list()[0]
    assert (moment.note, moment.replay) == ("OBS is away", None)


def test_by_default_a_restarted_obs_waits_at_most_2_s_to_be_noticed():
    # Doubling from reconnect_min_s, capped at reconnect_max_s: each wait is a refused connect.
    assert list(itertools.islice(retry_delays(ObsConfig()), 5)) == [1.0, 2.0, 2.0, 2.0, 2.0]
    custom = ObsConfig(reconnect_min_s=0.5, reconnect_max_s=3.0)
    assert list(itertools.islice(retry_delays(custom), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_the_link_connects_to_an_obs_that_starts_after_the_delay_reached_its_cap(tmp_path):
    port = _closed_port()
    state = AppState()
    config = ObsConfig(port=port, reconnect_min_s=0.1, reconnect_max_s=0.2)
    link = ObsLink(config, state, Moments(tmp_path), PASSWORD)
    await link.start()
    try:
        await wait_until(lambda: state.connections["obs"].endswith("retrying in 0.2 s"))
        async with running_fake_obs(FakeObs(port=port)):
            await wait_until(lambda: state.connections["obs"].startswith("connected"))
    finally:
        await link.stop()


async def test_a_link_that_is_off_says_so_and_connects_nowhere(tmp_path):
    state = AppState()
    link = ObsLink(ObsConfig(enabled=False, port=_closed_port()), state, Moments(tmp_path), "")
    await link.start()
    await link.stop()
    assert state.connections["obs"] == "off ([obs] enabled = false)"


async def test_the_link_labels_the_streamed_model_where_the_scene_has_a_label(tmp_path):
    fake = FakeObs(kinds=("text_ft2_source_v2",))
    fake.add_input("Scene", MODEL_LABEL, "text_ft2_source_v2", {"text": "old"})
    state = AppState()
    state.apply(VersionStreamed("model_0003_xception_v2", "2026-11-20T10:00:00+00:00"))
    async with running_fake_obs(fake) as obs:
        link = ObsLink(ObsConfig(port=obs.port), state, Moments(tmp_path), PASSWORD)
        await link.start()
        try:
            await wait_until(lambda: fake.inputs[MODEL_LABEL]["settings"]["text"] != "old")
            # This OBS has no replay-buffer request: the link stays connected and says so.
            await wait_until(lambda: state.connections["obs"].startswith("connected"))
            connection = state.connections["obs"]
        finally:
            await link.stop()
    assert "replay buffer unknown" in connection
    assert fake.inputs[MODEL_LABEL]["settings"]["text"].startswith(
        "model_0003_xception_v2\ncreated 2026-11-"
    )


def test_the_password_comes_from_the_environment_before_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert obs_password(tmp_path) == ""
    store_obs_password(tmp_path, "from-file")
    assert obs_password(tmp_path) == "from-file"
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert obs_password(tmp_path) == "from-env"


def test_obs_password_command_stores_it_readable_only_by_the_user(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["obs", "password", "--data", str(tmp_path)]) == 0
    path = tmp_path / "secrets" / "obs_password"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert obs_password(tmp_path) == "s3cret"


def test_obs_password_command_refuses_an_empty_password(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["obs", "password", "--data", str(tmp_path)]) == 2
    assert not (tmp_path / "secrets" / "obs_password").exists()


def _closed_port() -> int:
    """A port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
