"""One logging format for every charles-stream process."""

from __future__ import annotations

import logging
import sys

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
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.charles_stream = True
        root.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time, not the one it was created with.

    pytest's capture and rich's live view swap `sys.stderr`; a handler bound to an
    old stream would write to a closed file or past the console.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always sys.stderr
