"""The `charles-stream` command line: one parser, one subcommand per job.

Each subcommand lives next to the code it runs and registers itself through an
`add_command(subparsers)` function; this module only assembles them, so
`charles-stream --help` always lists every subcommand. Heavy imports
(TensorFlow) happen inside handlers, never here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from engine import (
    commands_chat,
    commands_collect,
    commands_config,
    commands_convcam,
    commands_drive,
    commands_eval,
    commands_report,
    commands_run,
    commands_timeline,
    commands_train,
    commands_twitch,
)
from engine.config import ConfigError
from engine.data import cli as data_cli
from engine.logs import LOG_LEVELS, setup_logging
from engine.sim import cli as sim_cli
from models import cli as models_cli
from overlays import cli as obs_cli

EXIT_BAD_INPUT = 2

log = logging.getLogger("charles")

# (name, add_command) in the order `--help` lists them.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    commands_run.add_command,
    commands_config.add_command,
    sim_cli.add_command,
    commands_collect.add_command,
    data_cli.add_command,
    models_cli.add_command,
    commands_drive.add_command,
    commands_convcam.add_command,
    commands_eval.add_command,
    commands_train.add_command,
    commands_timeline.add_command,
    obs_cli.add_command,
    commands_chat.add_command,
    commands_twitch.add_command,
    commands_report.add_command,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `charles-stream` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not hasattr(args, "handler"):
        args.handler = commands_run.run  # plain `charles-stream` is `charles-stream run`
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        log.error("%s", error)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand included."""
    parser = argparse.ArgumentParser(
        prog="charles-stream",
        description="Run a live 'AI learns to drive' stream: train, drive, overlay, chat.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="how much to log (default INFO)",
    )
    commands_run.add_run_arguments(parser)
    subparsers = parser.add_subparsers(title="subcommands", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


if __name__ == "__main__":
    sys.exit(main())
