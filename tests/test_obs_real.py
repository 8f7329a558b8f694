"""`obs setup`, the model label, replays on tags and reconnects, against Debian's real OBS.

One OBS (tests/obs_process.py) serves the module; it boots in about 10 s under
Xvfb with software OpenGL. The reconnect test restarts it, so it runs last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from engine.app.actions import StreamActions
from engine.app.hub import Hub
from engine.cli import main
from engine.core.config import Config, HubConfig
from engine.core.store import AppState, VersionStreamed
from engine.records.moments import Moments
from overlays.obs import MODEL_LABEL, PASSWORD_ENV, ObsError, ObsLink, ObsSession
from overlays.obs_setup import setup_scene
from tests.hub_helpers import wait_until
from tests.obs_process import PASSWORD, ObsProcess, needs_obs

pytestmark = [pytest.mark.obs, pytest.mark.x11, needs_obs]
SCENE = "Charles"
CREATED = "2026-11-20T10:00:00+00:00"


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> ObsProcess:
    process = ObsProcess(tmp_path_factory.mktemp("obs"))
    try:  # Xvfb is stopped also when OBS fails to start
        process.start()
        yield process
    finally:
        process.close()


def stream_config(obs: ObsProcess) -> Config:
    return msgspec.structs.replace(
        Config(),
        hub=HubConfig(port=8765),
        obs=msgspec.structs.replace(obs.config, scene=SCENE, reconnect_max_s=1.0),
    )


def label_text(obs: ObsProcess) -> str:
    session = obs.session()
    try:
        return session.request("GetInputSettings", {"inputName": MODEL_LABEL})["inputSettings"][
            "text"
        ]
    finally:
        session.close()


def test_setup_says_that_debians_obs_lacks_browser_sources_and_makes_the_label(
    obs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[app]\ndata_dir = "{tmp_path}"\n[obs]\nport = {obs.port}\nscene = "{SCENE}"\n',
        encoding="utf-8",
    )
    assert main(["obs", "setup", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "no browser source" in captured.err
    assert "Debian" in captured.err
    assert f"created {MODEL_LABEL}" in captured.out
    assert label_text(obs) == "model_0000_demo"


def test_setup_twice_leaves_the_same_scene(obs):
    session = obs.session()
    try:
        setup_scene(session, stream_config(obs))
        first = _scene_snapshot(session)
        report = setup_scene(session, stream_config(obs))
        second = _scene_snapshot(session)
    finally:
        session.close()
    assert report.created == []
    assert second == first
    assert [name for name, _, _ in first] == [MODEL_LABEL]


def test_a_wrong_password_is_refused_with_what_to_do(obs):
    with pytest.raises(ObsError, match="refused the password") as refused:
        ObsSession.connect(obs.config, "not-the-password")
    assert "charles-stream obs password" in str(refused.value)


def streaming(version: str) -> AppState:
    state = AppState()
    state.apply(VersionStreamed(version, CREATED))
    return state


@pytest.mark.asyncio
async def test_a_switch_updates_the_model_label(obs, tmp_path):
    state = streaming("model_0000_demo_v1")
    link = ObsLink(stream_config(obs).obs, state, Moments(tmp_path), PASSWORD)
    await link.start()
    try:
        await wait_until(lambda: state.connections["obs"].startswith("connected"), timeout=60)
        state.apply(VersionStreamed("model_0003_xception_v2", CREATED))
        await wait_until(
            lambda: label_text(obs).startswith("model_0003_xception_v2\ncreated "), timeout=60
        )
    finally:
        await link.stop()


@pytest.mark.asyncio
async def test_a_tag_saves_the_replay_buffer_and_records_the_file(obs, tmp_path):
    await asyncio.to_thread(_start_replay_buffer, obs)
    state = streaming("model_0000_demo_v1")
    actions = StreamActions(tmp_path, state, Hub(HubConfig(port=0), "token", state))
    link = ObsLink(stream_config(obs).obs, state, actions.moments, PASSWORD)
    actions.on_tag = link.moment_tagged
    await link.start()
    try:
        await wait_until(lambda: "replay buffer on" in state.connections["obs"], timeout=60)
        moment = await actions.tag("straight into the pond", user="viewer42")
        await wait_until(lambda: actions.moments.list()[0].replay is not None, timeout=30)
    finally:
        await link.stop()
    replay = Path(actions.moments.list()[0].replay)
    assert replay.parent == obs.replay_dir
    assert replay.stat().st_size > 0
    assert moment["replay"] is None  # the tag answered at once; the file came after


@pytest.mark.asyncio
async def test_the_link_reconnects_after_obs_restarts_and_relabels(obs, tmp_path):
    state = streaming("model_0000_demo_v1")
    link = ObsLink(stream_config(obs).obs, state, Moments(tmp_path), PASSWORD)
    await link.start()
    try:
        await wait_until(lambda: state.connections["obs"].startswith("connected"), timeout=60)
        await asyncio.to_thread(obs.stop)
        await wait_until(lambda: state.connections["obs"].startswith(("lost", "not connected")))
        state.apply(VersionStreamed("model_0003_xception_v3", CREATED))  # while OBS was away
        await asyncio.to_thread(obs.start)
        await wait_until(lambda: state.connections["obs"].startswith("connected"), timeout=60)
        await wait_until(lambda: label_text(obs).startswith("model_0003_xception_v3"), timeout=60)
    finally:
        await link.stop()


# OBS fills these in from the source's rendered size on its own video thread, so a
# text source made a moment ago reads 0 x 0 until its first frame: not setup's doing.
RENDERED_SIZE = frozenset({"sourceWidth", "sourceHeight", "width", "height"})


def _scene_snapshot(session: ObsSession) -> list[tuple[str, int, dict]]:
    """Each item's name, id and the transform setup chose (not the rendered size)."""
    items = session.request("GetSceneItemList", {"sceneName": SCENE})["sceneItems"]
    snapshot = []
    for item in items:
        transform = session.request(
            "GetSceneItemTransform", {"sceneName": SCENE, "sceneItemId": item["sceneItemId"]}
        )["sceneItemTransform"]
        chosen = {key: value for key, value in transform.items() if key not in RENDERED_SIZE}
        snapshot.append((item["sourceName"], item["sceneItemId"], chosen))
    return snapshot


def _start_replay_buffer(obs: ObsProcess) -> None:
    session = obs.session()
    try:
        setup_scene(session, stream_config(obs))
        # OBS asks "no sources, start anyway?" in a dialog when the program scene is empty.
        session.request("SetCurrentProgramScene", {"sceneName": SCENE})
        if not session.request("GetReplayBufferStatus")["outputActive"]:
            session.request("StartReplayBuffer")
    finally:
        session.close()
