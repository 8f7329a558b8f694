"""The kinds of failure charles-stream explains to people, and what each becomes at a boundary.

Example::

    from engine.core.errors import UsageError, exit_code_of
    try:
        resolve("model_9999_nothing")
    except CharlesError as error:
        log.error("%s", error)          # the message names the bad value and what is accepted
        return exit_code_of(error)       # 2 for bad input, 3 for a missing device or service

Every error below carries a finished sentence for a human. The kind decides
what a boundary does with it: the CLI turns it into an exit code
(`exit_code_of`), the hub answers only `UsageError` with HTTP 400 (anything
else the request triggered is the server's problem), and a node closes the
one connection that sent a `ProtocolError`. Anything that is not a
`CharlesError` is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_DEVICE = 3


class CharlesError(Exception):
    """A failure with a message meant for the person running charles-stream."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(CharlesError, ValueError):
    """A configuration file or value that cannot be used: names the file, key, value, choices."""


class UsageError(CharlesError, ValueError):
    """A request (CLI flag, API body, chat command) that names something unknown or impossible."""


class ModelError(CharlesError):
    """A model line, version, spec or checkpoint that cannot be built, loaded or trained."""


class ProtocolError(CharlesError, ValueError):
    """A network message that does not follow the wire schema, or a peer of another version."""


class DeviceError(CharlesError):
    """Something this machine lacks or refuses: a display, a gamepad driver, a window, a port."""

    exit_code = EXIT_DEVICE


def exit_code_of(error: CharlesError) -> int:
    """The process exit code for an error that ends a command."""
    return error.exit_code
