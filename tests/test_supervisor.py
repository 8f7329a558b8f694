"""The supervisor with real children: restarts, backoff, crash loops, ordered stop, no orphans.

The children (`tests/children/child.py`) report over TCP when they are ready,
get SIGTERM and exit, stamped with the machine-wide monotonic clock; the
test awaits those reports and the supervisor's state changes, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.app.processes import ProcessSpec, RestartPolicy
from engine.app.supervisor import Backoff, Supervisor, describe_exit
from engine.core.config import SupervisorConfig
from engine.core.store import AppState, ProcessState
from engine.core.wire import Alert

ROOT = Path(__file__).resolve().parent.parent
# The children are modules of this repository's tests package, wherever pytest was started.
ENV = {"PYTHONPATH": str(ROOT)}
WAIT_S = 20.0  # generous: two shared cores, Python start-up under load

FAST = SupervisorConfig(
    backoff_s=0.02,
    backoff_max_s=0.1,
    backoff_reset_s=60.0,
    crash_loop_restarts=50,
    crash_loop_window_s=60.0,
    shutdown_timeout_s=5.0,
)


@dataclass(frozen=True)
class Report:
    name: str
    event: str  # ready, sigterm, exit; "gone" when its connection closed (the process ended)
    stamp_s: float
    detail: str


class Reports:
    """What the children report, as it arrives; a test awaits a condition on it."""

    def __init__(self) -> None:
        self.lines: list[Report] = []
        self._changed = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> Reports:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    def of(self, name: str, event: str) -> list[Report]:
        return [line for line in self.lines if line.name == name and line.event == event]

    def pids(self) -> list[int]:
        return [int(line.detail.split()[0]) for line in self.lines if line.event == "ready"]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await _until(self._changed, predicate)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = "?"
        async for raw in reader:
            name, event, stamp, *detail = raw.decode().split(maxsplit=3)
            self._add(Report(name, event, int(stamp) / 1e9, " ".join(detail)))
        self._add(Report(name, "gone", time.monotonic(), ""))
        writer.close()

    def _add(self, report: Report) -> None:
        self.lines.append(report)
        self._changed.set()


class Changes:
    """The supervisor's on_change hook, made awaitable."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def __call__(self, process: ProcessState) -> None:
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        await _until(self._changed, predicate)


async def _until(changed: asyncio.Event, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await changed.wait()
            changed.clear()


def child(
    name: str, reports: Reports, *options: str, restart: RestartPolicy = "always", order: int = 0
) -> ProcessSpec:
    args = ("--name", name, "--report", str(reports.port), *options)
    return ProcessSpec(name, "tests.children.child", args, restart=restart, stop_order=order)


@contextlib.asynccontextmanager
async def supervising(
    specs: list[ProcessSpec],
    settings: SupervisorConfig = FAST,
    tmp_path: Path | None = None,
    env: dict[str, str] = ENV,
    **options: object,
) -> AsyncIterator[tuple[Supervisor, AppState, Changes]]:
    """A started supervisor that is always stopped, so a failing test leaves no child behind."""
    state, changes = AppState(), Changes()
    supervisor = Supervisor(
        specs, settings, env, state, log_dir=tmp_path, on_change=changes, **options
    )
    await supervisor.start()
    try:
        yield supervisor, state, changes
    finally:
        await supervisor.stop()


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_children_get_the_given_environment_and_their_state_says_running(tmp_path):
    env = {**ENV, "CHARLES_TEST_VALUE": "given"}
    async with (
        Reports() as reports,
        supervising(
            [child("a", reports, "--echo-env", "CHARLES_TEST_VALUE")], tmp_path=tmp_path, env=env
        ) as (_, state, _),
    ):
        await reports.until(lambda: len(reports.pids()) == 1)
        pid, value = reports.of("a", "ready")[0].detail.split()
        assert value == "given"
        assert state.processes["a"].state == "running"
        assert state.processes["a"].pid == int(pid)
        assert f"a started (pid {pid})" in state.events


async def test_a_tensorflow_child_starts_with_huge_pages_for_its_large_blocks(tmp_path):
    env = {**ENV, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}  # an operator's tunable stays
    async with Reports() as reports:
        specs = [
            child("plain", reports, "--echo-env", "GLIBC_TUNABLES"),
            dataclasses.replace(
                child("tf", reports, "--echo-env", "GLIBC_TUNABLES"), huge_pages=True
            ),
        ]
        async with supervising(specs, tmp_path=tmp_path, env=env):
            await reports.until(lambda: len(reports.pids()) == 2)
            assert reports.of("plain", "ready")[0].detail.split()[1] == "glibc.malloc.arena_max=4"
            tunables = reports.of("tf", "ready")[0].detail.split()[1]
            assert tunables == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"


async def test_a_child_that_exits_is_restarted_with_growing_delays(tmp_path):
    settings = SupervisorConfig(backoff_s=0.15, backoff_max_s=10.0, crash_loop_restarts=50)
    async with (
        Reports() as reports,
        supervising([child("a", reports, "--exit-code", "3")], settings, tmp_path) as (_, state, _),
    ):
        await reports.until(lambda: len(reports.of("a", "ready")) >= 4)
        starts, exits = reports.of("a", "ready"), reports.of("a", "exit")
        # Each restart waits at least its delay after the previous run ended: 0.15, 0.3, 0.6 s.
        gaps = [starts[run + 1].stamp_s - exits[run].stamp_s for run in range(3)]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.3 and gaps[2] >= 0.6, gaps
        assert state.processes["a"].restarts >= 3
        assert state.processes["a"].last_exit == 3
        assert "a restarts in 0.60 s" in state.events


def test_backoff_doubles_up_to_the_cap_and_starts_over_after_a_healthy_run():
    backoff = Backoff(SupervisorConfig(backoff_s=0.5, backoff_max_s=3.0, backoff_reset_s=60.0))
    delays = [backoff.next_delay(ran_s=1.0) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.next_delay(ran_s=60.0) == 0.5
    assert backoff.next_delay(ran_s=1.0) == 1.0


async def test_a_crash_loop_stops_restarts_and_raises_an_alert(tmp_path):
    settings = SupervisorConfig(backoff_s=0.01, backoff_max_s=0.01, crash_loop_restarts=2)
    alerts: list[Alert] = []
    alerted = asyncio.Event()

    def on_alert(alert: Alert) -> None:
        alerts.append(alert)
        alerted.set()

    async with (
        Reports() as reports,
        supervising(
            [child("a", reports, "--exit-code", "3")], settings, tmp_path, on_alert=on_alert
        ) as (_, state, _),
    ):
        async with asyncio.timeout(WAIT_S):
            await alerted.wait()
        await reports.until(lambda: len(reports.of("a", "gone")) == 3)
        assert state.processes["a"].state == "crash_loop"
        assert state.processes["a"].restarts == 2
        assert len(reports.of("a", "ready")) == 3
        assert [alert.kind for alert in alerts] == ["crash_loop"]
        assert "3 exits" in alerts[0].text and "exited with code 3" in alerts[0].text
        assert list(state.alerts) == alerts


async def test_a_child_that_cannot_be_spawned_counts_as_a_crash(tmp_path):
    settings = SupervisorConfig(backoff_s=0.01, backoff_max_s=0.01, crash_loop_restarts=2)
    state, alerted = AppState(), asyncio.Event()
    logs = tmp_path / "logs"
    spec = ProcessSpec("a", "tests.children.child", ("--name", "a", "--report", "1"))
    supervisor = Supervisor(
        [spec], settings, ENV, state, on_alert=lambda _: alerted.set(), log_dir=logs
    )
    logs.rmdir()  # its output file cannot be opened: the spawn fails before any process exists
    await supervisor.start()
    async with asyncio.timeout(WAIT_S):
        await alerted.wait()
    await supervisor.stop()
    assert state.processes["a"].state == "crash_loop"
    assert "did not start" in state.alerts[0].text
    assert any(event.startswith("a failed to start: ") for event in state.events)


async def test_on_failure_restarts_a_failed_child_but_not_one_that_exited_cleanly(tmp_path):
    async with (
        Reports() as reports,
        supervising(
            [
                child("clean", reports, "--exit-code", "0", restart="on_failure"),
                child("failing", reports, "--exit-code", "1", restart="on_failure"),
            ],
            tmp_path=tmp_path,
        ) as (_, state, changes),
    ):
        await changes.until(
            lambda: (
                state.processes["clean"].state == "stopped"
                and state.processes["failing"].restarts >= 1
            )
        )
        assert state.processes["clean"].restarts == 0
        assert state.processes["clean"].last_exit == 0


async def test_stop_sends_sigterm_group_by_group_in_stop_order(tmp_path):
    async with Reports() as reports:
        # Listed in start order; the stop order comes from stop_order alone.
        specs = [
            child("trainer", reports, "--linger", "0.2", order=1),
            child("driver", reports, "--linger", "0.2", order=0),
            child("collector-0", reports, "--linger", "0.2", order=2),
            child("collector-1", reports, "--linger", "0.2", order=2),
        ]
        async with supervising(specs, tmp_path=tmp_path) as (supervisor, state, _):
            await reports.until(lambda: len(reports.pids()) == 4)
            await supervisor.stop()
        groups = [["driver"], ["trainer"], ["collector-0", "collector-1"]]
        for earlier, later in itertools.pairwise(groups):
            last_exit = max(reports.of(name, "exit")[0].stamp_s for name in earlier)
            first_sigterm = min(reports.of(name, "sigterm")[0].stamp_s for name in later)
            assert last_exit < first_sigterm, (earlier, later)
        assert {process.state for process in state.processes.values()} == {"stopped"}


async def test_stop_kills_a_child_that_ignores_sigterm_at_the_timeout(tmp_path):
    settings = SupervisorConfig(shutdown_timeout_s=1.0)
    async with Reports() as reports:
        specs = [child("stubborn", reports, "--ignore-sigterm"), child("polite", reports)]
        async with supervising(specs, settings, tmp_path) as (supervisor, state, _):
            await reports.until(lambda: len(reports.pids()) == 2)
            started = time.monotonic()
            await supervisor.stop()
            took_s = time.monotonic() - started
        assert 1.0 <= took_s < 3.0
        assert state.processes["stubborn"].last_exit == -signal.SIGKILL
        assert state.processes["polite"].last_exit == 0
        assert reports.of("polite", "sigterm")


async def test_no_child_is_left_after_stop_and_none_in_backoff_restarts(tmp_path):
    settings = SupervisorConfig(backoff_s=30.0, shutdown_timeout_s=1.0)
    async with Reports() as reports:
        specs = [
            child("waiting", reports),
            child("stubborn", reports, "--ignore-sigterm"),
            child("crashed", reports, "--exit-code", "3"),
        ]
        async with supervising(specs, settings, tmp_path) as (supervisor, state, changes):
            await reports.until(lambda: len(reports.pids()) == 3)
            await changes.until(lambda: state.processes["crashed"].state == "backoff")
            await supervisor.stop()
        pids = reports.pids()
        assert len(pids) == 3
        assert [pid for pid in pids if exists(pid)] == []
        assert [process.pid for process in state.processes.values()] == [None] * 3
        assert state.processes["crashed"].restarts == 0


async def test_kill_makes_the_child_restart(tmp_path):
    async with (
        Reports() as reports,
        supervising([child("trainer", reports)], tmp_path=tmp_path) as (supervisor, state, _),
    ):
        await reports.until(lambda: len(reports.pids()) == 1)
        supervisor.kill("trainer")
        await reports.until(lambda: len(reports.pids()) == 2)
        first, second = reports.pids()
        assert first != second and not exists(first)
        assert state.processes["trainer"].restarts == 1
        assert state.processes["trainer"].last_exit == -signal.SIGKILL
        assert f"trainer (pid {first}) {describe_exit(-signal.SIGKILL)}" in state.events


async def test_kill_of_an_unknown_process_names_the_supervised_ones(tmp_path):
    async with (
        Reports() as reports,
        supervising([child("driver", reports)], tmp_path=tmp_path) as (supervisor, _, _),
    ):
        with pytest.raises(ValueError, match=r"'pilot'.*supervised: driver"):
            supervisor.kill("pilot")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_children_end_when_the_supervising_process_is_killed():
    async with Reports() as reports:
        app = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.children.supervising",
            "--report",
            str(reports.port),
            env={**os.environ, **ENV},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await reports.until(lambda: len(reports.pids()) == 1)
            app.kill()
            await app.wait()
            await reports.until(lambda: len(reports.of("child", "gone")) == 1)
        finally:
            # Should the test fail, it still leaves neither the app nor its child behind.
            for pid in [app.pid, *reports.pids()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await app.wait()
        assert reports.of("child", "sigterm")
