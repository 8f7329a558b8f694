"""A stand-in child for the supervisor tests: it reports what happens to it to the test.

Example::

    python -m tests.children.child --name driver --report 40123 --linger 0.2

Without options it runs until SIGTERM. Every report is a line
"NAME EVENT MONOTONIC_NS [DETAIL]" on one TCP connection to the test, kept open
for the child's life, so the test also sees the end of the process (EOF):

- `ready PID [VALUE of --echo-env]`: signal handling is in place
- `sigterm`: SIGTERM arrived (also the one Linux sends when the parent dies)
- `progress`: it reported progress to the supervisor (with `--progress-every`)
- `exit`: about to exit

With `--progress-every S` it reports progress to the supervisor's liveness
watchdog (`engine.node.progress`) every S seconds while it waits for SIGTERM,
as a node's work loop does. Like a node, it asks to end with the app
(`engine.node.process.die_with_parent`).

CLOCK_MONOTONIC is one clock for every process on the machine, so stamps from
different children order their events.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time

from engine.node.process import die_with_parent
from engine.node.progress import report_progress


def main() -> int:
    """Report, wait for SIGTERM or the --after deadline, report again, exit."""
    args = _parser().parse_args()
    link = socket.create_connection(("127.0.0.1", args.report))

    def report(event: str, detail: str = "") -> None:
        link.sendall(f"{args.name} {event} {time.monotonic_ns()} {detail}\n".encode())

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        # Blocked and then waited for: no window in which a SIGTERM could go unnoticed.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    die_with_parent()
    echoed = os.environ.get(args.echo_env, "") if args.echo_env else ""
    report("ready", f"{os.getpid()} {echoed}".strip())
    if args.ignore_sigterm:
        while True:
            signal.pause()
    if args.exit_code is None and args.progress_every is not None:
        report_progress()
        report("progress")
        while signal.sigtimedwait({signal.SIGTERM}, args.progress_every) is None:
            report_progress()
            report("progress")
    elif args.exit_code is None:
        signal.sigwait({signal.SIGTERM})
    elif signal.sigtimedwait({signal.SIGTERM}, args.after) is None:
        report("exit")
        return args.exit_code
    report("sigterm")
    time.sleep(args.linger)  # an orderly shutdown takes a moment; the test sees the order
    report("exit")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the name reports carry")
    parser.add_argument("--report", required=True, type=int, help="the test's TCP port")
    parser.add_argument("--exit-code", type=int, help="exit with this code after --after seconds")
    parser.add_argument("--after", type=float, default=0.0, help="seconds before --exit-code")
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL ends it")
    parser.add_argument("--linger", type=float, default=0.0, help="seconds from SIGTERM to exit")
    parser.add_argument("--echo-env", metavar="VAR", help="report this variable's value")
    parser.add_argument(
        "--progress-every", type=float, metavar="S", help="report progress every S seconds"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
