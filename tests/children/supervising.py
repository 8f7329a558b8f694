"""The app's side of the parent-death test: a Supervisor with one child, running until killed.

Example::

    python -m tests.children.supervising --report 40123

The test SIGKILLs this process, so no cleanup of ours runs; the child must
still end (Linux PR_SET_PDEATHSIG), and reports its SIGTERM to the test.
"""

from __future__ import annotations

import argparse
import asyncio

from engine.app.processes import ProcessSpec
from engine.app.supervisor import Supervisor
from engine.core.config import SupervisorConfig
from engine.core.store import AppState


async def main(port: int) -> None:
    """Start the supervised child, then wait forever."""
    child = ProcessSpec("child", "tests.children.child", ("--name", "child", "--report", str(port)))
    supervisor = Supervisor([child], SupervisorConfig(), env={}, state=AppState())
    await supervisor.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", required=True, type=int, help="the test's TCP port")
    asyncio.run(main(parser.parse_args().report))
