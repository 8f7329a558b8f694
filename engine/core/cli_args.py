"""Flags that several `charles-stream` commands share, parsed and checked in one place.

Example::

    add_config_argument(parser)
    add_data_argument(parser)
    parser.add_argument("--batches", type=positive_int)
    ...
    config = config_from(args)          # --data already in config.app.data_dir
    data_dir = data_dir_from(args, config)

Every argparse type here rejects a bad value with a message naming the value
and what is accepted; argparse turns that into exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import msgspec

from engine.core.config import DEFAULT_CONFIG_PATH, Config, default_config, load_config

log = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config PATH`: the config file (./config.toml if present, else the defaults)."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help=f"config file (default: ./{DEFAULT_CONFIG_PATH} if present, else the defaults)",
    )


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """`--data DIR`: the data directory, overriding the config's [app] data_dir."""
    parser.add_argument(
        "--data",
        type=data_directory,
        metavar="DIR",
        help="data directory (default: [app] data_dir)",
    )


def config_from(args: argparse.Namespace) -> Config:
    """The config the flags name: --config, else ./config.toml if present, else the defaults.

    A `--data DIR` given replaces `[app] data_dir`, so every part of the
    command (and the processes it starts) reads the one data directory from
    the config. Raises `ConfigError` for a file that is missing (when named),
    unreadable or invalid.
    """
    path = getattr(args, "config", None)
    if path is not None:
        config = load_config(path)
    elif Path(DEFAULT_CONFIG_PATH).exists():
        config = load_config(DEFAULT_CONFIG_PATH)
    else:
        log.info("no %s here: using the built-in defaults", DEFAULT_CONFIG_PATH)
        config = default_config()
    data = getattr(args, "data", None)
    if data is None:
        return config
    return msgspec.structs.replace(
        config, app=msgspec.structs.replace(config.app, data_dir=str(data))
    )


def config_path_for_processes(args: argparse.Namespace) -> str | None:
    """The config file the command's child processes load too (absolute: they may run elsewhere).

    None when the command runs on the built-in defaults: the children do the same.
    """
    flag = getattr(args, "config", None)
    if flag is not None:
        return str(Path(flag).resolve())
    if Path(DEFAULT_CONFIG_PATH).exists():
        return str(Path(DEFAULT_CONFIG_PATH).resolve())
    return None


def data_dir_from(args: argparse.Namespace, config: Config) -> Path:
    """--data if given, else the config's [app] data_dir."""
    data = getattr(args, "data", None)
    return Path(data) if data else Path(config.app.data_dir)


def data_directory(text: str) -> Path:
    """argparse type: a folder for the data, created when missing (not an existing file)."""
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a path; accepted: a folder path (created if missing)"
        )
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a folder; accepted: a folder path (created if missing)"
        )
    return path


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    return _whole_number(text, minimum=1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of 0 or more (e.g. a collector's index)."""
    return _whole_number(text, minimum=0)


def _whole_number(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is not accepted; use {minimum} or more")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; use a finite number above 0")
    return value


def seed_value(text: str) -> int:
    """argparse type: a seed from 0 to 2**31 - 1 (what numpy and the track generator take)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number; accepted: 0 to {MAX_SEED}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is out of range; accepted: 0 to {MAX_SEED}")
    return value
