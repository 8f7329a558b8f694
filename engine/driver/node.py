"""The driver node: the stream's player, wired as `charles-stream drive` wires it, on the hub.

Example::

    python -m engine.driver.node --config config.toml --model model_0000_demo_v1

The driver (`engine.driver.driver`, built by `open_driver_parts` from config: the
built-in game or a real one through mss and vgamepad) runs on the main thread.
Its `DriverStatus`, `Frames` and unstuck `Alert`s go to the hub. From the hub:

- `Checkpointed` -> `Driver.offer_weights`: loaded at the next unstuck or
  reload interval, as in the reference.
- `SwitchModel(version)` -> the version's latest checkpoint (or its fresh
  architecture when it has none) is loaded on a side thread, then driven from
  the next frame on; the car keeps driving with the old model meanwhile.

On another machine (its data directory is not the app's: no
`CHARLES_HUB_DATA_DIR` naming it), a version is first made usable here
(`models.transfer.sync_version`: the hub's record and newest checkpoint),
and a `Checkpointed` whose files this data directory lacks is fetched
through the hub and verified against the trainer's list before it is
offered; bytes that differ are refused (logged, alerted) and the car keeps
the weights it drives with. Fetches and switches run in order on the
model-switch thread, never on the hub link's.

With the built-in game and a display (`[sim] window`: "auto" opens one when a
display exists, "on" requires it, "off" never), the hood and chase views are
shown in the game's two desktop windows, fed by the frames the driver sends
the overlay (`[driver] frames_hz`); closing them leaves the driver running.
SIGTERM leaves the pad neutral and exits 0.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.core.config import Config
from engine.core.errors import CharlesError, DeviceError
from engine.core.wire import Alert, Checkpointed, Frames, Message, SwitchModel
from engine.data.frames import decode_frame
from engine.node.client import NodeError
from engine.node.hub_files import HubFiles, shares_hub_data
from engine.node.process import EXIT_HUB_GONE, exit_process, node_parser, run_node, when_set
from models.registry import version_dir
from models.transfer import (
    HubHttp,
    TransferRefused,
    fetch_checkpoint,
    local_copy,
    sync_version,
)

if TYPE_CHECKING:
    from engine.driver.driver import Driver
    from engine.sim.game import Game

log = logging.getLogger("charles.nodes.driver")

EXIT_NO_DEVICE = 1
# How often the window thread looks for window events while no new frame comes.
_WINDOW_POLL_S = 0.1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m engine.driver.node --model VERSION [--config PATH]`."""
    parser = node_parser("driver", "The stream's driver (player), reporting to the hub.")
    parser.add_argument(
        "--model", required=True, metavar="VERSION", help="the streamed version to drive"
    )
    args = parser.parse_args(argv)
    return run_node(args, lambda config: drive(config, args.model))


def drive(config: Config, version: str) -> int:
    """Drive until SIGTERM (SystemExit, pad neutral) or the hub is lost; returns the exit code."""
    # TensorFlow loads here, after the SIGTERM handler is in place.
    from engine.driver.inference import set_tensorflow_threads

    set_tensorflow_threads(config.driver)
    from engine.driver.capture import CaptureError
    from engine.driver.controller import ControllerError
    from engine.driver.driver import Driver, open_driver_parts
    from engine.driver.inference import load_version
    from engine.node.client import NodeClient

    window = window_wanted(config)
    hub = None if shares_hub_data(config.app.data_dir) else HubFiles.from_environment()
    switches = ModelSwitcher(config, hub=hub)
    client = NodeClient.from_environment("driver", "driver", on_message=switches.receive)
    switches.sync(version)
    try:
        with open_driver_parts(config, load_version(config.app.data_dir, version)) as parts:
            game = getattr(parts.capture.source, "game", None)
            view = GameView(game) if window and game is not None else None

            def send(message: Message) -> None:
                client.send(message)
                if view is not None and isinstance(message, Frames):
                    view.show(message)

            driver = Driver(parts, config.driver, sink=send)
            switches.start(driver, send)
            client.start()
            when_set(client.lost, driver.stop, "hub-lost-watch")
            log.info(
                "driving %s (batch %d) on %s",
                version,
                parts.weights.batch,
                parts.capture.source.name,
            )
            try:
                driver.run()
            finally:
                switches.close()
                if view is not None:
                    view.close()
                client.close()
    except (CaptureError, ControllerError) as error:
        log.error("%s", error)
        return EXIT_NO_DEVICE
    log.error("hub lost: the driver stops with the pad neutral")
    return EXIT_HUB_GONE


def window_wanted(config: Config) -> bool:
    """Whether to show the built-in game's windows: `[sim] window`, and a display for "auto"."""
    if config.capture.backend != "sim" or config.sim.window == "off":
        return False
    from engine.sim.window import display_problem

    problem = display_problem()
    if problem is None:
        return True
    if config.sim.window == "on":
        raise DeviceError(
            f"sim.window = 'on' (in {config.source}) but {problem}; "
            "set sim.window = 'auto' or 'off' to drive headless"
        )
    log.info("%s: driving headless (sim.window = 'auto')", problem)
    return False


class ModelSwitcher:
    """Hands hub messages to the driver; loads switched-to versions and new weights on its thread.

    `hub` is the hub's model files for a driver on another machine (None: it
    shares the app's data directory, where the trainer's files already are).
    """

    def __init__(self, config: Config, *, hub: HubHttp | None = None) -> None:
        self.config = config
        self.hub = hub
        self.data_dir = Path(config.app.data_dir)
        # Checkpoints fetched through the hub, and refused on arrival (bytes unlike their list).
        self.fetched = 0
        self.refused = 0
        self._driver: Driver | None = None
        self._send: Callable[[Message], None] = lambda message: None
        self._requests: queue.Queue[str | Checkpointed | None] = queue.Queue()
        self._thread = threading.Thread(target=self._load_switches, name="model-switch")

    def sync(self, version: str) -> None:
        """On another machine: the hub's record and newest checkpoint of `version`, here."""
        if self.hub is None:
            return
        try:
            copied = sync_version(
                self.hub, self.data_dir, version, keep=self.config.models.keep_checkpoints
            )
        except OSError as error:
            # The hub is away (exit 1, a restart may find it), not a bad model (exit 2).
            raise NodeError(f"cannot fetch {version} from the hub: {error}") from None
        if copied is not None:
            self.fetched += 1
            log.info("fetched %s batch %d from the hub", version, copied)

    def start(self, driver: Driver, send: Callable[[Message], None]) -> None:
        """Begin serving `driver` (before the hub link delivers); alerts go to `send`."""
        self._driver, self._send = driver, send
        self._thread.start()

    def receive(self, message: Message) -> None:
        """A message from the hub (on the hub link's thread: loading happens elsewhere)."""
        if self._driver is None:
            return
        if isinstance(message, Checkpointed):
            self._requests.put(message)
        elif isinstance(message, SwitchModel):
            self._requests.put(message.version)

    def close(self) -> None:
        """Stop the loading thread (after a load in progress)."""
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()

    def _load_switches(self) -> None:
        from engine.driver.driver import model_parts
        from engine.driver.inference import load_version

        driver = self._driver
        assert driver is not None
        driving = driver.parts.weights.version
        while (version := self._requests.get()) is not None:
            if isinstance(version, Checkpointed):
                if version.version == driving:
                    self._offer(driver, version)
                continue
            if version == driving:
                log.info("already driving %s", version)
                continue
            try:
                self.sync(version)
                loaded = load_version(self.data_dir, version)
                driver.switch_model(model_parts(self.config, loaded))
            except (CharlesError, OSError) as error:
                log.error("cannot drive %s, driving on with %s: %s", version, driving, error)
                self._send(Alert(kind="error", text=f"cannot drive {version}: {error}"))
                continue
            driving = version

    def _offer(self, driver: Driver, checkpoint: Checkpointed) -> None:
        """Offer a checkpoint's weights: from this data directory, or fetched and verified first."""
        if not checkpoint.files:  # from a trainer that lists no files: its path is ours
            driver.offer_weights(checkpoint.version, checkpoint.batch, checkpoint.path)
            return
        directory = version_dir(self.data_dir, checkpoint.version)
        path = local_copy(directory, checkpoint.batch, checkpoint.files)
        if path is None and self.hub is not None:
            try:
                started = time.monotonic()
                path = fetch_checkpoint(
                    self.hub,
                    self.data_dir,
                    checkpoint.version,
                    checkpoint.batch,
                    checkpoint.files,
                    keep=self.config.models.keep_checkpoints,
                )
                self.fetched += 1
                log.info(
                    "fetched %s batch %d from the hub in %.2f s",
                    checkpoint.version,
                    checkpoint.batch,
                    time.monotonic() - started,
                )
            except TransferRefused as error:
                self.refused += 1
                log.error("%s; driving on with the weights loaded", error)
                self._send(Alert(kind="error", text=f"checkpoint refused: {error}"))
                return
            except (CharlesError, OSError) as error:
                log.warning(
                    "%s batch %d not fetched (%s); driving on with the weights loaded",
                    checkpoint.version,
                    checkpoint.batch,
                    error,
                )
                return
        if path is None:
            log.warning(
                "%s batch %d is not in %s: not offered",
                checkpoint.version,
                checkpoint.batch,
                directory,
            )
            return
        driver.offer_weights(checkpoint.version, checkpoint.batch, path)


class GameView:
    """The built-in game's hood and chase windows, showing the frames the driver sends."""

    def __init__(self, game: Game) -> None:
        self._game = game
        self._newest: Frames | None = None
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="game-window", daemon=True)
        self._thread.start()

    def show(self, frames: Frames) -> None:
        """Show these frames next (any thread; a newer call replaces one not yet shown)."""
        with self._changed:
            self._newest = frames
            self._changed.notify()

    def close(self) -> None:
        """Close the windows and wait for their thread."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        from engine.sim.window import WindowUnavailable, open_windows

        config = self._game.config
        hood_size = (config.hood_width, config.hood_height)
        chase_size = (config.chase_width, config.chase_height)
        chase = np.zeros((config.chase_height, config.chase_width, 3), np.uint8)
        try:
            windows = open_windows(self._game)
        except WindowUnavailable as error:
            log.warning("no game window: %s", error)
            return
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(
                        lambda: self._closing or self._newest is not None, _WINDOW_POLL_S
                    )
                    if self._closing:
                        return
                    frames, self._newest = self._newest, None
                if frames is not None:
                    if frames.chase:
                        chase = decode_frame(frames.chase, size=chase_size)
                    windows.show(decode_frame(frames.hood, size=hood_size), chase)
                _, closed = windows.poll(wait_s=0.0)
                if closed:
                    log.info("game window closed; the driver goes on without it")
                    return
        finally:
            windows.close()


if __name__ == "__main__":
    exit_process(main())
