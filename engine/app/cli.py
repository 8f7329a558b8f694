"""`charles-stream run` (also plain `charles-stream`): the stream app, the embedded default.

With the default config.toml it streams the built-in game: NPC collectors feed
the trainer, which trains model_0000_demo live, while the driver drives the
game with the newest weights (see engine/app/app.py).
"""

from __future__ import annotations

import argparse
import asyncio

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    config_path_for_processes,
)
from engine.sim import cli as sim_cli


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `run`."""
    parser = subparsers.add_parser("run", help="run the stream app (the default command)")
    add_run_arguments(parser)
    parser.set_defaults(handler=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `run`, also accepted by plain `charles-stream`."""
    add_config_argument(parser)
    add_data_argument(parser)  # the app's and every process's data directory
    parser.add_argument(
        "--for",
        dest="for_seconds",
        type=sim_cli.game_seconds,
        default=None,
        metavar="SECONDS",
        help="stop cleanly after this many seconds (default: run until Ctrl-C)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the app until Ctrl-C, SIGTERM or --for."""
    config = config_from(args)
    from engine.app.app import run_app

    return asyncio.run(
        run_app(config, config_path=config_path_for_processes(args), for_seconds=args.for_seconds)
    )
