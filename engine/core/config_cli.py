"""`charles-stream config check [PATH]`: validate a config file without running anything.

Example::

    add_command(subparsers, checks=(bot.commands.check_config,))
    # charles-stream config check bad.toml  -> exit 2, the log names the key

The loader checks everything the foundation knows; `checks` are the upper
layers' own (the chat commands that `[chat]` aliases must name), which
engine/cli.py passes in because this layer may not import them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from engine.core.config import DEFAULT_CONFIG_PATH, Config, load_config

log = logging.getLogger("charles.config")


def add_command(
    subparsers: argparse._SubParsersAction, checks: Sequence[Callable[[Config], None]] = ()
) -> None:
    """Register `config check`; `checks` run on the loaded config and raise ConfigError."""
    parser = subparsers.add_parser("config", help="check a configuration file")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate config.toml (exit 2 if it is bad)")
    check.add_argument("path", nargs="?", default=str(DEFAULT_CONFIG_PATH))
    check.set_defaults(handler=run_check, checks=tuple(checks))


def run_check(args: argparse.Namespace) -> int:
    """Load the file; a bad one raises ConfigError, which the CLI turns into exit 2."""
    config = load_config(args.path)
    for check in getattr(args, "checks", ()):
        check(config)
    log.info("%s is valid", config.source)
    return 0
