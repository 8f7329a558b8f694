"""One logging format for every charles-stream process."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; subprocesses call this too so lines look alike."""
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
