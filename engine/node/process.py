"""The stream's node processes: collector, trainer and driver, each speaking to the hub.

Example::

    CHARLES_HUB_URL=ws://127.0.0.1:8765/ws/node CHARLES_HUB_TOKEN=... \\
        python -m engine.trainer.node --config config.toml --model model_0000_demo_v1

The app's supervisor starts them (`engine/app/processes.py`), hands them the hub's
address and token in the environment, and stops them with SIGTERM. What every
node shares lives here: its command line (`--config`), logging, and the exit
rules: SIGTERM ends the node's work through `finally` blocks (pad neutral,
checkpoint saved) and exits 0; a bad config exits 2; a hub that refuses the
node or is gone for good exits 1, so the supervisor restarts it. A node the
supervisor started also ends when the app dies without cleanup
(`die_with_parent`), and reports its work loop's progress to the supervisor's
liveness watchdog (`engine/node/progress.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

from engine.core.cli_args import add_config_argument, add_data_argument, config_from
from engine.core.config import Config
from engine.core.errors import CharlesError, exit_code_of
from engine.core.logs import setup_logging
from engine.core.memory import released_memory
from engine.core.shutdown import EXIT_SIGTERM, sigterm_as_exit

log = logging.getLogger("charles.nodes")

EXIT_HUB_GONE = 1
# Set by the app's supervisor: the pid a child expects as its parent (see die_with_parent).
PARENT_PID_ENV = "CHARLES_PARENT_PID"
# <linux/prctl.h>: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def node_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The argument parser every node starts from: `--config PATH` and `--data DIR`."""
    parser = argparse.ArgumentParser(prog=f"python -m engine.{name}.node", description=description)
    add_config_argument(parser)
    add_data_argument(parser)  # the app's `run --data DIR`, handed on
    return parser


def run_node(args: argparse.Namespace, body: Callable[[Config], int]) -> int:
    """Load the config, set up logging, run `body(config)` with SIGTERM as a clean exit.

    Returns the process exit code: body's own, 0 after a SIGTERM or Ctrl+C, else the
    error's (`engine.core.errors`): 2 for bad input (config, model), 3 for a
    missing device, 1 when the hub refused this node or is gone.
    """
    setup_logging()
    with sigterm_as_exit():
        try:
            die_with_parent()
            config = config_from(args)
            setup_logging(config.app.log_level)
            with released_memory(config.supervisor.release_memory_s):
                return body(config)
        except SystemExit as stop:
            if stop.code != EXIT_SIGTERM:
                raise
            log.info("stopped by SIGTERM")
            return 0
        except KeyboardInterrupt:
            # A person's stop (`charles-stream node` in a terminal), the same clean end as
            # SIGTERM: the `finally` blocks ran on the way here. On Windows, where no process
            # sends another SIGTERM, Ctrl+C (or Ctrl+Break) is how a node stops cleanly.
            log.info("stopped by Ctrl+C")
            return 0
        except CharlesError as error:
            log.error("%s", error)
            return exit_code_of(error)


@contextlib.contextmanager
def sigterm_as_flag() -> Iterator[threading.Event]:
    """Within: SIGTERM sets the yielded event instead of raising SystemExit where the code is.

    For a work loop that checks a stop condition often (a collector, every
    sample) and must end on its own terms: the set it completed goes out, its
    last counters are sent. A second SIGTERM ends the process at once, should
    that ever hang. The previous handler is back afterwards.
    """
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log.info("SIGTERM: stopping after the current step")
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent() -> None:
    """On Linux, ask for SIGTERM when the supervising app dies, even by SIGKILL.

    Called first thing in a child the supervisor started (`CHARLES_PARENT_PID`
    set); elsewhere, or without the variable, it does nothing. It runs here, in
    the child, rather than as the supervisor's `preexec_fn`: code between fork
    and exec in a threaded parent (the app has the hub's, the OBS link's and
    asyncio's threads) may deadlock on a lock another thread held at the fork,
    as Python's documentation warns. The app may have died before the request
    was in place, and then no signal would ever come: the parent pid tells, and
    the child signals itself. Linux sends the signal when the *thread* that
    forked the child ends: the app's event loop thread, which lives as long as
    the app.
    """
    expected = os.environ.get(PARENT_PID_ENV, "")
    if not expected or not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM)) != 0:
        log.warning("cannot ask to end with the app (prctl: %s)", os.strerror(ctypes.get_errno()))
        return
    if str(os.getppid()) != expected:
        log.warning("the app (pid %s) ended before this process started: stopping", expected)
        os.kill(os.getpid(), signal.SIGTERM)


def exit_process(code: int) -> NoReturn:
    """End this node process with `code` at once, without the interpreter's teardown.

    The last call of a node's `__main__`, after its cleanup ran (pad neutral,
    checkpoint saved, hub link flushed and closed). Unloading TensorFlow took
    2-4 s on a quiet machine and more on a busy one, after the work had
    stopped, and it counted against the supervisor's `shutdown_timeout_s` for
    the whole stream: the trainer and a collector were SIGKILLed at the
    deadline although they had stopped cleanly. Logs and stdio are flushed
    first; atexit handlers do not run (ours are fallbacks for a cleanup that
    did not run, e.g. the keyboard's keys, whose key guard also covers them).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def when_set(event: threading.Event, action: Callable[[], None], name: str) -> None:
    """Call `action` (on a daemon thread) once `event` is set, e.g. the hub link is lost."""

    def wait_then_act() -> None:
        event.wait()
        action()

    threading.Thread(target=wait_then_act, name=name, daemon=True).start()
