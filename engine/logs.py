"""One logging format for every charles-stream process."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str = "INFO") -> None:
    """Set the level and add our one handler; calling it again only changes the level.

    Handlers someone else installed (pytest's log capture, an embedding app)
    are left alone, so nothing they expect to see goes missing.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(handler, "charles_stream", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.charles_stream = True
        root.addHandler(handler)
