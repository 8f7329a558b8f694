"""For tests that run real node processes (tests/test_nodes.py, test_nodes_remote.py, test_app.py).

Example::

    hub = Hub(HubConfig(port=0), TOKEN, state)
    await hub.start()
    commands = {"collector-0": ["engine.collector.node", "--config", str(config), "--index", "0"]}
    async with nodes_joined(
        hub, commands, env=env, cwd=root, logs=root / "logs", start_s=90.0, stop_s=30.0
    ) as processes:                  # each one has said hello to the hub
        stream = NodeStream(state=state, hub=hub, processes=processes, logs=root / "logs",
                            wait_s=45.0)
        await stream.until(lambda: state.trainer is not None, "a trainer status")
    # the nodes got SIGTERM (killed after stop_s), then the hub stopped

`TINY_STREAM_CONFIG`: small frames and buffers, coarse bins and frequent NPC
mistakes make the first balanced sets, batches and checkpoints come within
seconds; the demo line trains.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from engine.app.hub import Hub
    from engine.core.store import AppState

# Lines of each node's log shown when a wait fails.
LOG_TAIL_LINES = 25

TINY_STREAM_CONFIG = """
[app]
data_dir = "{data_dir}"

[obs]
enabled = false

[sim]
hood_width = 96
hood_height = 54
chase_width = 64
chase_height = 36
window = "off"

[data]
frame_width = 32
frame_height = 18
buffer_capacity = 100
ready_threshold = 0.2
set_window_s = 60.0

[data.bins]
steering = {{ kind = "axis", divisions = 2 }}
throttle_brake = {{ kind = "trigger_pair", divisions = 2 }}

[autopilot]
perturbation_interval_s = 1.0
perturbation_strength = 1.0

[collector]
episode_s = 30.0
report_interval_s = 2.0
dead_zone = 0.1

[trainer]
checkpoint_every = 2
log_every = 1

[capture]
chase_hz = 0.0

[driver]
frames_hz = 2.0
reload_interval_s = 1.0
"""


@dataclass(kw_only=True)
class NodeStream:
    """A test's own hub, the node processes it started against it, and the folder of their logs.

    A module's fixture extends it with what its tests need (data folders, versions).
    """

    state: AppState
    hub: Hub
    processes: dict[str, subprocess.Popen]
    logs: Path
    # How long `until` waits by default: generous, as TensorFlow starts slowly on shared cores.
    wait_s: float

    async def until(
        self, condition: Callable[[], bool], what: str, timeout: float | None = None
    ) -> None:
        """Wait for `condition` (checked as the hub records messages); fail naming `what`."""
        timeout = self.wait_s if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{self.log_tails()}")
            await asyncio.sleep(0.05)

    def log_tails(self) -> str:
        """The last lines of every node's log, to show with a failure."""
        return "\n".join(
            f"--- {path.name} ---\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            for path in sorted(self.logs.glob("*.log"))
        )


@contextlib.asynccontextmanager
async def nodes_joined(
    hub: Hub,
    commands: Mapping[str, Sequence[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    logs: Path,
    start_s: float,
    stop_s: float,
) -> AsyncIterator[dict[str, subprocess.Popen]]:
    """`python -m ARGV` per node name, yielded once every one has said hello to the started `hub`.

    Each process's output goes to `logs/NAME.log`. On the way out, failure
    included, every process still running gets SIGTERM and `stop_s` seconds
    to end (waited off the event loop: a trainer ships its last checkpoint to
    this hub on its way out), else it is killed; then the hub stops.
    """
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            with (logs / f"{name}.log").open("wb") as log_file:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", *argv],
                    env=dict(env),
                    cwd=cwd,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
        joining = NodeStream(
            state=hub.state, hub=hub, processes=processes, logs=logs, wait_s=start_s
        )
        await joining.until(
            lambda: set(commands) <= set(hub.state.nodes), f"the nodes {sorted(commands)} to join"
        )
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                await asyncio.to_thread(process.wait, stop_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        await hub.stop()
