"""Debian's real OBS (obs-studio 29, obs-websocket 5.1) under Xvfb, with its own config folder.

The config folder (HOME and XDG_CONFIG_HOME point into a temporary folder) has
the websocket server on a free port with a password, a small canvas at 10 fps
(software OpenGL is slow), the first-run wizard off, and a profile whose
replay buffer writes into `replay_dir`. A user's own OBS settings are never read
or touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from engine.core.config import ObsConfig
from overlays.obs import ObsError, ObsSession

OBS = shutil.which("obs")
XVFB = shutil.which("Xvfb")
needs_obs = pytest.mark.skipif(
    OBS is None or XVFB is None,
    reason="Debian's obs-studio and xvfb are not installed (`make test` installs them)",
)
PASSWORD = "charles-test-password"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PROFILE = "Charles test"

GLOBAL_INI = """[General]
FirstRun=true
Pre19Defaults=false
Pre21Defaults=false
Pre23Defaults=false
Pre24.1Defaults=false

[Basic]
Profile={profile}
ProfileDir={profile}
SceneCollection={profile}
SceneCollectionFile={profile}

[OBSWebSocket]
FirstLoad=false
ServerEnabled=true
ServerPort={port}
AuthRequired=true
ServerPassword={password}
AlertsEnabled=false
"""

PROFILE_INI = """[General]
Name={profile}

[Video]
BaseCX=320
BaseCY=180
OutputCX=320
OutputCY=180
FPSType=1
FPSInt=10

[Output]
Mode=Simple

[SimpleOutput]
FilePath={replay_dir}
RecFormat=mkv
RecQuality=Stream
StreamEncoder=x264
VBitrate=300
ABitrate=64
RecRB=true
RecRBTime=5
RecRBSize=64
"""


class ObsProcess:
    """One OBS instance on its own X display; stop and start it again to test reconnects."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.replay_dir = root / "replays"
        self.config = ObsConfig(port=self.port, timeout_s=5.0, reconnect_min_s=0.2)
        self._xvfb: subprocess.Popen[bytes] | None = None
        self._obs: subprocess.Popen[bytes] | None = None
        self._display = ""

    def start(self) -> None:
        """Start OBS (and Xvfb the first time); return once its websocket accepts the password."""
        if self._xvfb is None:
            self._write_config()
            self._start_xvfb()
        environment = {
            # opencv-python points Qt at its own plugins when imported; OBS needs the system's.
            **{key: value for key, value in os.environ.items() if not key.startswith("QT_")},
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.root / "home" / ".config"),
            "DISPLAY": self._display,
            "LIBGL_ALWAYS_SOFTWARE": "1",
        }
        log = (self.root / "obs.log").open("ab")
        self._obs = subprocess.Popen(
            [OBS, "--minimize-to-tray", "--disable-updater", "--disable-shutdown-check", "--multi"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop OBS the way a streamer quits it (SIGTERM: it saves its scenes); Xvfb stays."""
        if self._obs is None:
            return
        self._obs.send_signal(signal.SIGTERM)
        try:
            self._obs.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._obs.kill()
            self._obs.wait()
        self._obs = None

    def close(self) -> None:
        """Stop OBS and Xvfb."""
        self.stop()
        if self._xvfb is not None:
            self._xvfb.terminate()
            self._xvfb.wait(STOP_TIMEOUT_S)
            self._xvfb = None

    def session(self) -> ObsSession:
        """A session of the test's own, to look at (or prepare) what OBS has."""
        return ObsSession.connect(self.config, PASSWORD)

    def _write_config(self) -> None:
        settings = self.root / "home" / ".config" / "obs-studio"
        profile = settings / "basic" / "profiles" / PROFILE
        profile.mkdir(parents=True)
        self.replay_dir.mkdir()
        (settings / "global.ini").write_text(
            GLOBAL_INI.format(profile=PROFILE, port=self.port, password=PASSWORD)
        )
        (profile / "basic.ini").write_text(
            PROFILE_INI.format(profile=PROFILE, replay_dir=self.replay_dir)
        )

    def _start_xvfb(self) -> None:
        read_end, write_end = os.pipe()
        self._xvfb = subprocess.Popen(
            [XVFB, "-displayfd", str(write_end), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as display_number:
            self._display = f":{display_number.readline().strip()}"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._accepts_password():
            if self._obs is not None and self._obs.poll() is not None:
                raise RuntimeError(f"OBS exited with {self._obs.returncode}; see obs.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"OBS did not accept connections within {START_TIMEOUT_S} s")
            time.sleep(0.25)

    def _accepts_password(self) -> bool:
        try:
            self.session().close()
        except ObsError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
