"""`charles-stream config check [PATH]`: validate a config file without running anything."""

from __future__ import annotations

import argparse
import logging

from engine.core.config import DEFAULT_CONFIG_PATH, load_config

log = logging.getLogger("charles.config")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `config check`."""
    parser = subparsers.add_parser("config", help="check a configuration file")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate config.toml (exit 2 if it is bad)")
    check.add_argument("path", nargs="?", default=str(DEFAULT_CONFIG_PATH))
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Load the file; a bad one raises ConfigError, which the CLI turns into exit 2."""
    config = load_config(args.path)
    log.info("%s is valid", config.source)
    return 0
