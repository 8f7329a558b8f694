"""`charles-stream obs`: set up the stream's scene in OBS, store the obs-websocket password.

Example::

    charles-stream obs password      # asks for it (or reads stdin), stores it 0600
    charles-stream obs setup         # creates or updates the scene [obs] scene

`obs setup` prints what it created, updated and removed; its exit code is 0
when every tile has its source, 1 when OBS cannot be reached or lacks what a
tile needs (the message says what), 2 for a bad config or flag.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from engine.core.cli_args import add_config_argument, add_data_argument, config_from, data_dir_from
from overlays.obs import ObsError, ObsSession, model_label_text, obs_password, store_obs_password
from overlays.obs_setup import overlay_base_url, setup_scene

log = logging.getLogger("charles.obs")

EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `obs setup` and `obs password`."""
    parser = subparsers.add_parser("obs", help="OBS: build the stream's scene, store the password")
    commands = parser.add_subparsers(title="obs commands", metavar="COMMAND", required=True)
    setup = commands.add_parser(
        "setup",
        help="create or update the scene: a source per overlay tile at the layout's positions",
    )
    add_config_argument(setup)
    add_data_argument(setup)
    setup.set_defaults(handler=run_setup)
    password = commands.add_parser(
        "password", help="store the obs-websocket password in <data_dir>/secrets/ (mode 0600)"
    )
    add_config_argument(password)
    add_data_argument(password)
    password.set_defaults(handler=run_password)


def run_setup(args: argparse.Namespace) -> int:
    """Connect to OBS, build the scene, print what happened."""
    config = config_from(args)
    data_dir = data_dir_from(args, config)
    base_url = overlay_base_url(config)  # a ConfigError before connecting to anything
    try:
        session = ObsSession.connect(config.obs, obs_password(data_dir))
    except ObsError as error:
        log.error("%s", error)
        return EXIT_INCOMPLETE
    try:
        report = setup_scene(session, config, model_label_text(config.stream.model, ""))
    except ObsError as error:
        log.error("OBS setup stopped: %s", error)
        return EXIT_INCOMPLETE
    finally:
        session.close()
    print(f"OBS {report.obs_version}: scene {report.scene!r}, pages from {base_url}/overlay/")
    for verb, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("removed", report.removed),
    ):
        for name in names:
            print(f"  {verb} {name}")
    for problem in report.problems:
        print(f"  not done: {problem}", file=sys.stderr)
    if report.complete:
        print(f"Done: switch to scene {report.scene!r} in OBS.")
        return 0
    return EXIT_INCOMPLETE


def run_password(args: argparse.Namespace) -> int:
    """Ask for the password (or read one line from stdin) and store it."""
    config = config_from(args)
    if sys.stdin.isatty():
        password = getpass.getpass(
            "obs-websocket password (OBS: Tools > WebSocket Server Settings): "
        )
    else:
        password = sys.stdin.readline()
    password = password.strip()
    if not password:
        log.error("no password given: nothing stored")
        return EXIT_BAD_INPUT
    path = store_obs_password(data_dir_from(args, config), password)
    print(f"stored in {path} (mode 0600)")
    return 0
