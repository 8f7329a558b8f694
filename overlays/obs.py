"""OBS through obs-websocket 5 (obsws-python): the password, one session, the live link.

Example::

    link = ObsLink(config.obs, state, actions.moments, obs_password(data_dir))
    await link.start()               # connects in the background, retrying with backoff
    actions.on_tag = link.moment_tagged   # a tag saves the replay buffer with the moment
    await link.stop()

While the app streams, `ObsLink` keeps one connection to OBS: it applies its
state to the app's state as a `ConnectionChanged` (so /api/status and the
consoles show it), writes the streamed model's name and creation date into
the scene's model label when OBS has one (`obs setup` makes it where OBS has
no browser source), and saves the replay buffer for every tagged moment while
the buffer runs, recording the saved file with the moment. OBS absent, restarting or
refusing the password never stops the app: the link retries, doubling its
delay from `reconnect_min_s` up to `reconnect_max_s` (`retry_delays`). The
cap is how late a restarted OBS is noticed at worst; an attempt on a local
OBS that is away is a refused TCP connect, so a cap of a few seconds (the
default 2 s) costs nothing and puts the labels and replays back at once.

obsws-python is synchronous; every request runs in a worker thread, one at a
time (its client is not thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import obsws_python
import websocket
from obsws_python.error import OBSSDKError, OBSSDKRequestError, OBSSDKTimeoutError

from engine.core.config import ObsConfig
from engine.core.errors import ConfigError, DeviceError
from engine.core.secrets import SECRETS_DIR
from engine.core.store import AppState, ConnectionChanged, Noted
from engine.records.moments import Moment, Moments

log = logging.getLogger("charles.obs")
# obsws-python logs the password at INFO when it connects and a traceback for every failed
# request; this module logs each failure once, with what to do about it.
logging.getLogger("obsws_python").setLevel(logging.CRITICAL)

PASSWORD_ENV = "CHARLES_OBS_PASSWORD"
PASSWORD_FILE = "obs_password"
# The text source `obs setup` makes for the model's name where browser sources are missing.
MODEL_LABEL = "Charles model label"
# obs-websocket request status codes (protocol.md, RequestStatus).
RESOURCE_NOT_FOUND = 600
OUTPUT_NOT_AVAILABLE = 604
# How often the link looks at the streamed version, and asks OBS whether it is still there.
TICK_S = 0.25
CHECK_S = 5.0
# OBS writes the replay file after SaveReplayBuffer answers; it takes a second or two.
SAVE_TIMEOUT_S = 20.0
SAVE_POLL_S = 0.2


class ObsError(DeviceError):
    """OBS cannot be reached or refused something; the message says what to do."""


class ObsRequestError(ObsError):
    """OBS answered a request with a failure status (`code` from obs-websocket)."""

    def __init__(self, request: str, code: int, comment: str) -> None:
        super().__init__(f"OBS refused {request}: {comment or 'no reason given'} (code {code})")
        self.request = request
        self.code = code


def obs_password(data_dir: str | Path) -> str:
    """The obs-websocket password: $CHARLES_OBS_PASSWORD, else <data_dir>/secrets/obs_password.

    "" when neither is set (OBS may have authentication off).
    """
    from_environment = os.environ.get(PASSWORD_ENV)
    if from_environment:
        return from_environment
    path = Path(data_dir) / SECRETS_DIR / PASSWORD_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the OBS password in {path}: {error}") from None


def store_obs_password(data_dir: str | Path, password: str) -> Path:
    """Keep the password in <data_dir>/secrets/obs_password, readable only by this user."""
    folder = Path(data_dir) / SECRETS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask and ignored if it exists
    path = folder / PASSWORD_FILE
    temporary = path.with_name(f".{PASSWORD_FILE}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    os.replace(temporary, path)  # never a half-written password in place
    return path


class ObsSession:
    """One authenticated obs-websocket connection; blocking calls, for a worker thread."""

    def __init__(self, client: obsws_python.ReqClient, where: str) -> None:
        self._client = client
        self.where = where

    @classmethod
    def connect(cls, config: ObsConfig, password: str) -> ObsSession:
        """Connect and identify; ObsError saying why not (nothing listening, password, ...)."""
        where = f"{config.host}:{config.port}"
        try:
            client = obsws_python.ReqClient(
                host=config.host, port=config.port, password=password, timeout=config.timeout_s
            )
        except ConnectionRefusedError:
            raise ObsError(
                f"nothing listens at {where}: start OBS and enable Tools > WebSocket Server "
                "Settings > Enable WebSocket server, with the port of [obs] port"
            ) from None
        except OBSSDKError as error:
            raise ObsError(_identify_problem(str(error), where)) from None
        except (OSError, websocket.WebSocketException, ValueError) as error:
            raise ObsError(
                f"cannot connect to OBS at {where}: {error or type(error).__name__}"
            ) from None
        return cls(client, where)

    def request(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one obs-websocket request; its response data ({} when it has none)."""
        try:
            response = self._client.send(name, data, raw=True)
        except OBSSDKRequestError as error:
            raise ObsRequestError(name, error.code, _comment(error)) from None
        except (OBSSDKTimeoutError, OSError, websocket.WebSocketException, ValueError) as error:
            raise ObsError(
                f"lost OBS at {self.where} during {name}: {error or type(error).__name__}"
            ) from None
        return response or {}

    def close(self) -> None:
        """Close the connection (never raises: it is often already gone)."""
        with contextlib.suppress(Exception):
            self._client.disconnect()


class ObsLink:
    """The app's connection to OBS while streaming: status, model label, replays on tags."""

    def __init__(self, config: ObsConfig, state: AppState, moments: Moments, password: str) -> None:
        self.config = config
        self.state = state
        self.moments = moments
        self._password = password
        self._session: ObsSession | None = None
        self._requests = asyncio.Lock()  # obsws-python's client takes one request at a time
        self._saving = asyncio.Lock()  # one replay at a time: each save gets its own file
        self._task: asyncio.Task[None] | None = None
        self._saves: set[asyncio.Task[None]] = set()
        self._status = ""

    @property
    def connected(self) -> bool:
        """Whether a session to OBS is open now."""
        return self._session is not None

    async def start(self) -> None:
        """Connect in the background (the app does not wait for OBS)."""
        if not self.config.enabled:
            self._set_status("off ([obs] enabled = false)")
            return
        self._set_status(f"connecting to {self.config.host}:{self.config.port}")
        self._task = asyncio.create_task(self._run(), name="obs-link")

    async def stop(self) -> None:
        """Wait briefly for replays being saved, then disconnect."""
        if self._saves:
            await asyncio.wait(self._saves, timeout=SAVE_TIMEOUT_S)
        for task in [self._task, *self._saves]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._saves] if t), return_exceptions=True)
        self._task = None
        if self.config.enabled:
            self._set_status("stopped")

    def moment_tagged(self, moment: Moment) -> None:
        """StreamActions' tag hook: save the replay buffer for this moment, in the background."""
        if not self.config.enabled or not self.config.save_replays:
            return
        task = asyncio.create_task(self._save_for(moment), name=f"obs-replay-{moment.id}")
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def save_replay(self) -> str | None:
        """Save the replay buffer now; the file OBS wrote, or None when it is not running."""
        async with self._saving:
            status = await self._call("GetReplayBufferStatus", missing_ok=True)
            if not status.get("outputActive"):
                return None
            before = await self._last_replay()
            await self._call("SaveReplayBuffer")
            deadline = asyncio.get_running_loop().time() + SAVE_TIMEOUT_S
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(SAVE_POLL_S)
                path = await self._last_replay()
                if path and path != before:
                    return path
            raise ObsError(f"OBS did not report a saved replay within {SAVE_TIMEOUT_S:g} s")

    # -- the connection ------------------------------------------------------------------

    async def _run(self) -> None:
        delays = retry_delays(self.config)
        delay = next(delays)
        while True:
            try:
                session = await asyncio.to_thread(ObsSession.connect, self.config, self._password)
            except ObsError as error:
                self._set_status(f"not connected: {error}; retrying in {delay:g} s")
                await asyncio.sleep(delay)
                delay = next(delays)
                continue
            delays = retry_delays(self.config)
            delay = next(delays)
            self._session = session
            broken = False
            try:
                await self._serve()
            except ObsError as error:
                self._set_status(f"lost: {error}; reconnecting")
            except Exception:  # a bug here must not end the link for the rest of the stream
                log.exception("OBS link failed")
                self._set_status(f"lost: unexpected error (see the log); retrying in {delay:g} s")
                broken = True
            finally:
                self._session = None
                await asyncio.to_thread(session.close)
            if broken:
                await asyncio.sleep(delay)  # not at once: the same error would come straight back

    async def _serve(self) -> None:
        version = await self._call("GetVersion")
        obs_version = version.get("obsVersion", "?")
        labelled: tuple[str, str] | None = None
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while True:
            wanted = (self.state.version, self.state.version_created)
            if wanted != labelled:
                await self._label(*wanted)
                labelled = wanted
            if loop.time() >= next_check:
                next_check = loop.time() + CHECK_S
                replay = await self._replay_state()
                self._set_status(f"connected (OBS {obs_version}, replay buffer {replay})")
            await asyncio.sleep(TICK_S)

    async def _label(self, version: str, created: str) -> None:
        """Write the model's name and creation date into the label source, if the scene has one."""
        text = model_label_text(version, created)
        try:
            await self._call(
                "SetInputSettings", {"inputName": MODEL_LABEL, "inputSettings": {"text": text}}
            )
        except ObsRequestError as error:
            # Only a lost connection ends the session; a refused request is logged and left.
            if error.code != RESOURCE_NOT_FOUND:  # not found: browser sources show the model
                log.warning("OBS model label not updated: %s", error)
            return
        log.info("OBS model label: %s", text.replace("\n", " / "))

    async def _replay_state(self) -> str:
        try:
            status = await self._call("GetReplayBufferStatus")
        except ObsRequestError as error:
            if error.code == OUTPUT_NOT_AVAILABLE:
                return "not set up (OBS: Settings > Output > Replay Buffer)"
            return f"unknown ({error})"
        return "on" if status.get("outputActive") else "off"

    async def _save_for(self, moment: Moment) -> None:
        if not self.connected:
            log.info("moment %d: no replay saved, OBS is not connected", moment.id)
            return
        try:
            path = await self.save_replay()
        except ObsError as error:
            log.warning("moment %d: replay not saved: %s", moment.id, error)
            return
        if path is None:
            log.info("moment %d: no replay saved, OBS's replay buffer is not running", moment.id)
            return
        await asyncio.to_thread(self.moments.set_replay, moment.id, path)
        self.state.apply(Noted(f"replay of moment {moment.id} saved: {path}"))
        log.info("moment %d: replay saved to %s", moment.id, path)

    async def _last_replay(self) -> str | None:
        try:
            return (await self._call("GetLastReplayBufferReplay")).get("savedReplayPath") or None
        except ObsRequestError:
            return None  # nothing saved yet in this OBS session

    async def _call(
        self, name: str, data: dict[str, Any] | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise ObsError("OBS is not connected")
        async with self._requests:
            try:
                return await asyncio.to_thread(session.request, name, data)
            except ObsRequestError as error:
                if missing_ok and error.code == OUTPUT_NOT_AVAILABLE:
                    return {}
                raise

    def _set_status(self, text: str) -> None:
        self.state.apply(ConnectionChanged("obs", text))
        # Each change is logged once, not every retry.
        head = text.split(";")[0]
        if head != self._status.split(";")[0]:
            level = logging.WARNING if text.startswith(("not connected", "lost")) else logging.INFO
            log.log(level, "OBS: %s", text)
        self._status = text


def retry_delays(config: ObsConfig) -> Iterator[float]:
    """The waits between attempts to reach OBS: doubling from reconnect_min_s, capped at max.

    Doubling spares a remote OBS that answers slowly the first few seconds;
    the cap bounds how long a restarted OBS waits for the stream to notice it.
    """
    delay = min(config.reconnect_min_s, config.reconnect_max_s)
    while True:
        yield delay
        delay = min(delay * 2, config.reconnect_max_s)


def model_label_text(version: str, created: str) -> str:
    """The label's two lines: the model's name, and when it was created (local time)."""
    if not version:
        return "no model"
    try:
        when = datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return version
    return f"{version}\ncreated {when}"


def _identify_problem(message: str, where: str) -> str:
    if "no password" in message:
        return (
            f"OBS at {where} asks for a password: store it with `charles-stream obs password` "
            f"or set {PASSWORD_ENV}"
        )
    if "failed to identify" in message:
        return (
            f"OBS at {where} refused the password (Tools > WebSocket Server Settings > Show "
            f"Connect Info shows it): store it again with `charles-stream obs password` or "
            f"set {PASSWORD_ENV}"
        )
    return f"OBS at {where}: {message}"


def _comment(error: OBSSDKRequestError) -> str:
    # obsws-python puts the server's comment into the message after "With message: ".
    text = str(error)
    marker = "With message: "
    return text.split(marker, 1)[1] if marker in text else text
