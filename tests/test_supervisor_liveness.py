"""The supervisor's liveness watchdog: a child alive but silent is killed and restarted.

The bookkeeping (`Watchdog`) is tested with a stepped clock; the supervisor
with real children (`tests/children/child.py --progress-every S`), which
report progress through the same file a node's work loop touches. A child is
frozen with SIGSTOP, as a deadlock would freeze it; the tests await the
supervisor's state changes and the children's reports, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time

import pytest

from engine.app.processes import ProcessSpec
from engine.app.supervisor import Silence, Watchdog
from engine.core.config import SupervisorConfig
from engine.core.wire import Alert
from engine.node.process import PARENT_PID_ENV
from tests.test_supervisor import ENV, FAST, Reports, child, supervising


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_child_is_overdue_once_silent_past_its_bound_and_each_report_restarts_the_clock():
    clock = SteppedClock()
    watchdog = Watchdog(clock)
    watchdog.watch("driver", bound_s=20.0, startup_s=5.0)
    watchdog.beat("driver")
    clock.now += 19.0
    watchdog.beat("driver")
    clock.now += 20.0
    assert watchdog.overdue() == []
    clock.now += 0.5
    assert watchdog.overdue() == [Silence("driver", 20.5, 20.0, reported=True)]


def test_before_its_first_report_a_child_has_the_startup_allowance():
    clock = SteppedClock()
    watchdog = Watchdog(clock)
    watchdog.watch("trainer", bound_s=10.0, startup_s=60.0)
    clock.now += 59.0
    assert watchdog.overdue() == []
    clock.now += 2.0
    assert watchdog.overdue() == [Silence("trainer", 61.0, 60.0, reported=False)]


def test_a_bound_longer_than_the_startup_allowance_wins_before_the_first_report():
    clock = SteppedClock()
    watchdog = Watchdog(clock)
    watchdog.watch("trainer", bound_s=120.0, startup_s=30.0)
    clock.now += 100.0
    assert watchdog.overdue() == []


def test_a_restart_is_watched_afresh_and_a_forgotten_child_is_never_overdue():
    clock = SteppedClock()
    watchdog = Watchdog(clock)
    watchdog.watch("collector-0", bound_s=5.0, startup_s=30.0)
    watchdog.beat("collector-0")
    watchdog.forget("collector-0")
    clock.now += 1000.0
    watchdog.beat("collector-0")  # a late report of a child no longer watched: ignored
    assert watchdog.overdue() == []
    watchdog.watch("collector-0", bound_s=5.0, startup_s=30.0)
    clock.now += 10.0
    assert watchdog.overdue() == []  # the new start is under the allowance again


LIVENESS = SupervisorConfig(
    backoff_s=FAST.backoff_s,
    backoff_max_s=FAST.backoff_max_s,
    crash_loop_restarts=FAST.crash_loop_restarts,
    shutdown_timeout_s=FAST.shutdown_timeout_s,
    liveness_startup_s=30.0,
)


def watched(spec: ProcessSpec, bound_s: float) -> ProcessSpec:
    return dataclasses.replace(spec, liveness_s=bound_s)


async def test_a_stopped_child_is_killed_and_restarted_after_its_bound(tmp_path):
    alerts: list[Alert] = []
    bound_s = 2.0
    async with (
        Reports() as reports,
        supervising(
            [watched(child("driver", reports, "--progress-every", "0.2"), bound_s)],
            LIVENESS,
            tmp_path,
            on_alert=alerts.append,
        ) as (_, state, changes),
    ):
        await reports.until(lambda: len(reports.of("driver", "progress")) >= 1)
        pid = state.processes["driver"].pid
        os.kill(pid, signal.SIGSTOP)  # frozen, as by a deadlock: alive, silent
        frozen = time.monotonic()
        await changes.until(lambda: state.processes["driver"].restarts == 1)
        killed_after_s = time.monotonic() - frozen
        await reports.until(lambda: len(reports.pids()) == 2)
        assert state.processes["driver"].last_exit == -signal.SIGKILL
        assert killed_after_s >= bound_s - 0.5  # the last report came before the SIGSTOP
        unresponsive = [e for e in state.events if "was unresponsive for" in e]
        assert len(unresponsive) == 1
        assert unresponsive[0].startswith(f"driver (pid {pid}) was unresponsive for ")
        assert "(liveness bound 2 s): SIGKILL" in unresponsive[0]
        assert [alert.kind for alert in alerts] == ["unresponsive"]
        assert alerts[0].text.startswith("driver was unresponsive for ")
        assert list(state.alerts) == alerts
        # The replacement reports again and is left alone.
        reported = len(reports.of("driver", "progress"))
        await reports.until(lambda: len(reports.of("driver", "progress")) >= reported + 3)
        assert state.processes["driver"].state == "running"


async def test_a_slow_but_alive_child_is_never_killed(tmp_path):
    # A report every 1.5 s against a 3 s bound, as a big model's batches on a slow CPU.
    async with (
        Reports() as reports,
        supervising(
            [watched(child("trainer", reports, "--progress-every", "1.5"), 3.0)],
            LIVENESS,
            tmp_path,
        ) as (_, state, _),
    ):
        await reports.until(lambda: len(reports.of("trainer", "progress")) >= 6)
        assert state.processes["trainer"].restarts == 0
        assert state.processes["trainer"].state == "running"
        assert not [e for e in state.events if "unresponsive" in e]


async def test_a_child_that_never_reports_is_killed_after_the_startup_allowance(tmp_path):
    settings = SupervisorConfig(
        backoff_s=30.0, shutdown_timeout_s=FAST.shutdown_timeout_s, liveness_startup_s=6.0
    )
    async with (
        Reports() as reports,
        supervising([watched(child("collector-0", reports), 1.0)], settings, tmp_path) as (
            _,
            state,
            changes,
        ),
    ):
        await changes.until(lambda: state.processes["collector-0"].state == "backoff")
        ready, gone = reports.of("collector-0", "ready")[0], reports.of("collector-0", "gone")[0]
        # Not at its 1 s bound: the allowance covers a slow start (spawn to ready is short).
        assert gone.stamp_s - ready.stamp_s > 1.0
        assert state.processes["collector-0"].last_exit == -signal.SIGKILL
        assert any("no first report within liveness_startup_s 6 s" in e for e in state.events)


async def test_an_unwatched_child_is_left_alone_however_silent(tmp_path):
    settings = SupervisorConfig(liveness_startup_s=1.0, shutdown_timeout_s=5.0)
    async with (
        Reports() as reports,
        supervising(
            [
                child("recorder-0", reports),
                watched(child("clock", reports, "--progress-every", "0.5"), 2.0),
            ],
            settings,
            tmp_path,
        ) as (_, state, _),
    ):
        # The watched child's reports pace the test: 3 s pass, beyond every limit.
        await reports.until(lambda: len(reports.of("clock", "progress")) >= 7)
        assert state.processes["recorder-0"].restarts == 0
        assert state.processes["clock"].restarts == 0


async def test_stop_with_watched_children_leaves_no_progress_folder(tmp_path):
    async with Reports() as reports:
        spec = watched(child("driver", reports, "--progress-every", "0.2"), 2.0)
        async with supervising([spec], LIVENESS, tmp_path) as (supervisor, _, _):
            await reports.until(lambda: len(reports.of("driver", "progress")) >= 1)
            folder = supervisor._progress_dir
            assert folder is not None and folder.is_dir()
        assert not folder.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_child_whose_app_died_before_it_asked_stops_at_once():
    # The app's pid in the environment is not the child's parent: that app is gone, and
    # PR_SET_PDEATHSIG set now would never fire.
    async with Reports() as reports:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tests.children.child", "--name", "orphan", "--report", str(reports.port)),
            env={**os.environ, **ENV, PARENT_PID_ENV: str(os.getpid() + 10**6)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await reports.until(lambda: bool(reports.of("orphan", "gone")))
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        assert reports.of("orphan", "sigterm")
