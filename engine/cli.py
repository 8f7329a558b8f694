"""The `charles-stream` command line: one parser, one subcommand per job.

Each subcommand lives next to the code it runs and registers itself through an
`add_command(subparsers)` function; this module only assembles them, so
`charles-stream --help` always lists every subcommand. Heavy imports
(TensorFlow) happen inside handlers, never here.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence

from bot import cli as chat_cli
from bot import twitch_cli
from bot.commands import check_config as check_chat_config
from engine.app import cli as run_cli
from engine.app import collect as collect_cli
from engine.core import config_cli
from engine.core.errors import CharlesError, exit_code_of
from engine.core.logs import LOG_LEVELS, setup_logging
from engine.data import cli as data_cli
from engine.driver import cli as drive_cli
from engine.driver import convcam_cli, eval_cli, npc_cli
from engine.games import cli as games_cli
from engine.node import cli as node_cli
from engine.recorder import cli as record_cli
from engine.records import cli as timeline_cli
from engine.sim import cli as sim_cli
from engine.trainer import cli as train_cli
from models import cli as models_cli
from models import report_cli
from overlays import cli as obs_cli

log = logging.getLogger("charles")

# (name, add_command) in the order `--help` lists them.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    run_cli.add_command,
    # The loader cannot know the bot's commands: [chat] is checked against them here.
    functools.partial(config_cli.add_command, checks=(check_chat_config,)),
    sim_cli.add_command,
    collect_cli.add_command,
    record_cli.add_command,
    npc_cli.add_command,
    data_cli.add_command,
    models_cli.add_command,
    drive_cli.add_command,
    convcam_cli.add_command,
    eval_cli.add_command,
    games_cli.add_command,
    train_cli.add_command,
    node_cli.add_command,
    timeline_cli.add_command,
    obs_cli.add_command,
    chat_cli.add_command,
    twitch_cli.add_command,
    report_cli.add_command,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `charles-stream` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _refuse_run_flags_before_another_command(parser, argv)
    setup_logging(args.log_level)
    if not hasattr(args, "handler"):
        args.handler = run_cli.run  # plain `charles-stream` is `charles-stream run`
    try:
        return int(args.handler(args) or 0)
    except CharlesError as error:
        log.error("%s", error)
        return exit_code_of(error)
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
    run_cli.add_run_arguments(parser)
    subparsers = parser.add_subparsers(title="subcommands", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def _refuse_run_flags_before_another_command(
    parser: argparse.ArgumentParser, argv: list[str]
) -> None:
    """Exit 2 on `charles-stream --config X train ...`: before a command, the flags are run's.

    Plain `charles-stream --config X` runs the app, so the top level takes run's flags; in
    front of another command argparse would accept them and that command would silently
    use its own default instead.
    """
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    run_flags = {
        option
        for action in parser._actions
        for option in action.option_strings
        if action.dest not in ("help", "log_level")
    }
    position = next((i for i, token in enumerate(argv) if token in commands), None)
    if position is None or argv[position] == "run":
        return
    command = argv[position]
    for token in argv[:position]:
        flag = token.split("=", 1)[0]
        if flag in run_flags:
            parser.error(
                f"{flag} before the command {command!r} is a flag of `run`; put it after "
                f"the command (charles-stream {command} {flag} ...) if {command} takes it"
            )


if __name__ == "__main__":
    sys.exit(main())
