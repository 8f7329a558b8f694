"""`charles-stream run` (also plain `charles-stream`): the embedded default.

Today the embedded default is the built-in game driven by its NPC autopilot,
in a window when there is a display and headless in real time otherwise. The
stream app (hub, trainer, driver, overlays, chat) grows into this command.
"""

from __future__ import annotations

import argparse

from engine.cli_args import add_config_argument
from engine.sim import cli as sim_cli


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `run`."""
    parser = subparsers.add_parser("run", help="run the embedded default (the default command)")
    add_run_arguments(parser)
    parser.set_defaults(handler=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `run`, also accepted by plain `charles-stream`."""
    add_config_argument(parser)
    parser.add_argument(
        "--for",
        dest="for_seconds",
        type=sim_cli.game_seconds,
        default=None,
        metavar="SECONDS",
        help="stop cleanly after this many seconds (default: run until stopped)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the built-in game with the autopilot in real time."""
    game_args = argparse.Namespace(
        autopilot=True,
        headless=False,
        realtime=True,
        seconds=args.for_seconds,
        seed=None,
        json=False,
        config=args.config,
    )
    return sim_cli.run(game_args)
