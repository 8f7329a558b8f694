"""The stream's node processes: collector, trainer and driver, each speaking to the hub.

Example::

    CHARLES_HUB_URL=ws://127.0.0.1:8765/ws/node CHARLES_HUB_TOKEN=... \\
        python -m engine.trainer.node --config config.toml --model model_0000_demo_v1

The app's supervisor starts them (`engine/app/processes.py`), hands them the hub's
address and token in the environment, and stops them with SIGTERM. What every
node shares lives here: its command line (`--config`), logging, and the exit
rules: SIGTERM ends the node's work through `finally` blocks (pad neutral,
checkpoint saved) and exits 0; a bad config exits 2; a hub that refuses the
node or is gone for good exits 1, so the supervisor restarts it.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable

from engine.core.cli_args import add_config_argument, config_from
from engine.core.config import Config
from engine.core.errors import CharlesError, exit_code_of
from engine.core.logs import setup_logging
from engine.core.shutdown import EXIT_SIGTERM, sigterm_as_exit

log = logging.getLogger("charles.nodes")

EXIT_HUB_GONE = 1


def node_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The argument parser every node starts from: `--config PATH`."""
    parser = argparse.ArgumentParser(prog=f"python -m engine.{name}.node", description=description)
    add_config_argument(parser)
    return parser


def run_node(args: argparse.Namespace, body: Callable[[Config], int]) -> int:
    """Load the config, set up logging, run `body(config)` with SIGTERM as a clean exit.

    Returns the process exit code: body's own, 0 after a SIGTERM, else the
    error's (`engine.core.errors`): 2 for bad input (config, model), 3 for a
    missing device, 1 when the hub refused this node or is gone.
    """
    setup_logging()
    with sigterm_as_exit():
        try:
            config = config_from(args)
            setup_logging(config.app.log_level)
            return body(config)
        except SystemExit as stop:
            if stop.code != EXIT_SIGTERM:
                raise
            log.info("stopped by SIGTERM")
            return 0
        except CharlesError as error:
            log.error("%s", error)
            return exit_code_of(error)


def when_set(event: threading.Event, action: Callable[[], None], name: str) -> None:
    """Call `action` (on a daemon thread) once `event` is set, e.g. the hub link is lost."""

    def wait_then_act() -> None:
        event.wait()
        action()

    threading.Thread(target=wait_then_act, name=name, daemon=True).start()
