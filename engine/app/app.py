"""`charles-stream`: the one asyncio process that runs the stream.

Example::

    code = asyncio.run(run_app(config, config_path="config.toml", for_seconds=60))

It resolves the `[stream] model` to a version (creating v1 of a line that has
none), opens the hub, records "started streaming ..." in the timeline, and
lets the supervisor start the declared processes (NPC collectors, trainer,
driver: engine/app/processes.py) with the hub's address and token in their
environment. TensorFlow never runs here: it lives in the trainer and the
driver. While it runs, a terminal shows the Player and Trainer consoles (or
the app's log says what happens); each process's own output goes to
`<data_dir>/logs/<name>.log`, never to the console. Ctrl-C, SIGTERM or
`--for` end it cleanly: the driver goes neutral first, the trainer saves a
checkpoint, the collectors stop, and the timeline records where the version
stopped.

Routes of later parts (overlays, chat) hook in through `Hub.app` before the
hub starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live

from bot.commands import check_config as check_chat_config
from bot.service import ChatBot
from engine.app.actions import StreamActions
from engine.app.consoles import render
from engine.app.control import ControlDock
from engine.app.hub import Hub
from engine.app.model_files import ModelFiles
from engine.app.processes import check_recorder_games, process_table
from engine.app.signals import on_stop_signals
from engine.app.supervisor import Supervisor
from engine.core.config import Config
from engine.core.memory import released_memory
from engine.core.secrets import hub_token
from engine.core.store import AppState, ConnectionChanged, ProcessState
from engine.node.client import HUB_TOKEN_ENV, HUB_URL_ENV
from engine.node.hub_files import HUB_DATA_DIR_ENV
from overlays.obs import ObsLink, obs_password
from overlays.server import OverlayServer

log = logging.getLogger("charles.app")

# Terminal view redraws per second.
VIEW_HZ = 4.0
# Of a process that failed, its log's last lines go on the console (why it failed, mostly).
FAILURE_LINES = 8


async def run_app(
    config: Config,
    *,
    config_path: str | None,
    for_seconds: float | None = None,
    view: bool | None = None,
) -> int:
    """Run the stream until Ctrl-C, SIGTERM or `for_seconds`; the process exit code.

    `view`: draw the live consoles (default: when stderr is a terminal).
    """
    view = sys.stderr.isatty() if view is None else view
    app = StreamApp(config, config_path=config_path)
    stop = asyncio.Event()
    # SIGINT and SIGTERM set `stop` (the app then shuts down in order) instead of killing it.
    with (
        on_stop_signals(functools.partial(_request_stop, stop)),
        released_memory(config.supervisor.release_memory_s),
    ):
        await app.start()
        try:
            await _wait(stop, for_seconds, app.state if view else None)
        finally:
            await app.stop()
    return 0


class StreamApp:
    """The hub, the actions and the supervised processes of one stream, started and stopped.

    The processes' own output (stdout and stderr) goes to
    `<data_dir>/logs/<name>.log`, with or without the terminal view: it holds
    what the console must not show, such as TensorFlow's C++ start-up lines
    ("failed call to cuInit" on a machine without a GPU, oneDNN and CPU
    feature notes) that read like failures to a newcomer, and it would
    scribble over the consoles. The app's own log (starts, exits, restarts,
    alerts) stays on the console.
    """

    def __init__(self, config: Config, *, config_path: str | None) -> None:
        # [chat] against the bot's commands (the loader cannot know them), before anything is made.
        check_chat_config(config)
        # [stream] recorders' game profiles, so a misspelt one refuses the start (exit 2).
        check_recorder_games(config.stream)
        self.config = config
        self.config_path = config_path
        self.data_dir = Path(config.app.data_dir)
        self.state = AppState()
        # Overlays/OBS and chat say how their links are once they run; until then the API says so.
        for link in ("obs", "twitch"):
            self.state.apply(ConnectionChanged(link, "not configured"))
        self.token = hub_token(self.data_dir)
        self.hub = Hub(config.hub, self.token, self.state, data_dir=self.data_dir)
        self.actions = StreamActions(self.data_dir, self.state, self.hub)
        self.hub.set_action_handler(self.actions)
        # Chat: Twitch when [twitch] is set, else the terminal; POST /api/chat either way.
        self.chat = ChatBot(config, self.actions, hub_token=self.token)
        self.chat.add_routes(self.hub.app)
        # Overlay pages (/overlay/, /ws/overlay) serve with the hub; OBS connects in the background
        # and saves its replay buffer for every tagged moment.
        self.overlays = OverlayServer(config.overlay, self.state)
        self.overlays.add_routes(self.hub.app)
        self.obs = ObsLink(
            config.obs, self.state, self.actions.moments, obs_password(self.data_dir)
        )
        self.actions.on_tag = self.obs.moment_tagged
        # The streamer's dock (/control): sign in with the token or the link printed at start.
        self.control = ControlDock(
            self.token, self.actions, loss=self.overlays.feed.loss, chat=self.chat.router
        )
        self.control.add_routes(self.hub.app)
        # Versions and checkpoints for trainers and drivers on other machines (their own data dir).
        self.model_files = ModelFiles(
            self.data_dir, self.token, self.state, keep=config.models.keep_checkpoints
        )
        self.model_files.add_routes(self.hub.app)
        self.supervisor: Supervisor | None = None
        self.log_dir = self.data_dir / "logs"

    async def start(self) -> None:
        """Open the hub, put `[stream] model` on stream, start the declared processes."""
        await self.hub.start()
        base = "http://" + self.hub.url().removeprefix("ws://").removesuffix("/ws/node")
        log.info("control dock (one-time sign-in link): %s", self.control.once_url(base))
        try:
            await self.obs.start()
            await self.actions.switch(self.config.stream.model, user="app")
            # Each process reads the config file itself; the data directory comes along
            # explicitly, so `run --data DIR` (already in self.config) holds for all of them.
            data_args = ("--data", str(self.data_dir.resolve()))
            self.supervisor = Supervisor(
                [
                    dataclasses.replace(spec, args=spec.args + data_args)
                    for spec in process_table(self.config, self.config_path, self.state.version)
                ],
                self.config.supervisor,
                {
                    HUB_URL_ENV: self.hub.url(),
                    HUB_TOKEN_ENV: self.token,
                    # They share the app's data directory: checkpoints need no copying.
                    HUB_DATA_DIR_ENV: str(self.data_dir.resolve()),
                },
                self.state,
                log_dir=self.log_dir,
                on_change=self._process_changed,
            )
            log.info("each process's output goes to %s", self.log_dir / "<name>.log")
            self.control.processes = self.supervisor
            await self.supervisor.start()
            await self.chat.start()
        except BaseException:
            await self.stop()
            raise

    def _process_changed(self, process: ProcessState) -> None:
        tail = failure_tail(self.log_dir, process)
        if tail is not None:
            log.warning("%s", tail)

    async def stop(self) -> None:
        """Driver neutral, collectors stopped, trainer checkpoint (in that order), then the hub."""
        try:
            await self.chat.stop()  # no chat action may start while the rest stops
            if self.supervisor is not None:
                log.info("stopping: driver neutral, collectors send their last sets, trainer saves")
                await self.supervisor.stop()
            if self.state.version:
                self.actions.timeline.stopped(self.state.version, self.actions.current_batch())
        finally:
            await self.obs.stop()
            await self.hub.stop()


def failure_tail(log_dir: Path, process: ProcessState) -> str | None:
    """For a process that just failed (waiting to restart, or given up): its log's last lines.

    Its output goes to its log file, not the console, so without this the
    console would only say "trainer exited with code 1" and leave the
    newcomer to find out why. None for any other change, or an empty log.
    """
    if process.state not in ("backoff", "crash_loop") or process.last_exit in (None, 0):
        return None
    path = log_dir / f"{process.name}.log"
    try:
        with path.open("rb") as output:
            output.seek(max(0, output.seek(0, 2) - 16_384))  # the end is enough
            lines = output.read().decode("utf-8", "replace").splitlines()[-FAILURE_LINES:]
    except OSError:
        return None
    if not any(line.strip() for line in lines):
        return None
    shown = "\n".join(f"  | {line}" for line in lines)
    return f"{process.name}'s last output ({path}):\n{shown}"


async def _wait(stop: asyncio.Event, for_seconds: float | None, viewed: AppState | None) -> None:
    """Until `stop` is set or `for_seconds` pass, redrawing the consoles if there is a view."""
    loop = asyncio.get_running_loop()
    deadline = None if for_seconds is None else loop.time() + for_seconds
    live = Live(render(viewed.snapshot()), console=Console(stderr=True)) if viewed else None
    with live or contextlib.nullcontext():
        while not stop.is_set():
            timeout = 1.0 / VIEW_HZ
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
                if timeout <= 0:
                    log.info("--for %.0f s is up", for_seconds)
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if live is not None:
                live.update(render(viewed.snapshot()))


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    if stop.is_set():
        log.warning("%s again: still stopping (processes get SIGKILL at the shutdown timeout)",
                    signal.Signals(signum).name)  # fmt: skip
    else:
        log.info("%s received: stopping", signal.Signals(signum).name)
    stop.set()
