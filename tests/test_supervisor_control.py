"""Stopping, starting and restarting one supervised process on request (the control dock)."""

from __future__ import annotations

import pytest

from engine.core.config import SupervisorConfig
from tests.test_supervisor import Reports, child, supervising


async def test_a_process_stopped_on_request_stays_stopped_until_started(tmp_path):
    async with (
        Reports() as reports,
        supervising([child("a", reports), child("b", reports)], tmp_path=tmp_path) as (
            supervisor,
            state,
            changes,
        ),
    ):
        await reports.until(lambda: len(reports.of("a", "ready")) == 1)
        stopped = await supervisor.stop_process("a")
        assert stopped.state == "stopped" and state.processes["a"].state == "stopped"
        await reports.until(lambda: len(reports.of("a", "gone")) == 1)
        assert reports.of("a", "sigterm")  # asked to stop, not killed
        assert state.processes["b"].state == "running"
        assert (await supervisor.stop_process("a")).state == "stopped"  # again: nothing to do
        await supervisor.start_process("a")
        await reports.until(lambda: len(reports.of("a", "ready")) == 2)
        await changes.until(lambda: state.processes["a"].state == "running")
        assert "a stopped on request" not in state.events  # it was running, not waiting
        assert "stopping a on request" in state.events and "starting a on request" in state.events


async def test_a_process_waiting_to_restart_or_in_a_crash_loop_can_be_stopped_and_started(
    tmp_path,
):
    settings = SupervisorConfig(backoff_s=5.0, backoff_max_s=5.0, crash_loop_restarts=50)
    async with (
        Reports() as reports,
        supervising([child("a", reports, "--exit-code", "3")], settings, tmp_path) as (
            supervisor,
            state,
            changes,
        ),
    ):
        await changes.until(lambda: state.processes["a"].state == "backoff")
        await supervisor.stop_process("a")
        assert state.processes["a"].state == "stopped"
        assert "a stopped on request (was waiting to restart)" in state.events
        await supervisor.restart_process("a")  # a stopped one is just started
        await reports.until(lambda: len(reports.of("a", "ready")) == 2)


async def test_an_unknown_process_is_refused_by_name(tmp_path):
    async with (
        Reports() as reports,
        supervising([child("a", reports)], tmp_path=tmp_path) as (
            supervisor,
            _,
            _,
        ),
    ):
        for request in (supervisor.stop_process, supervisor.start_process):
            with pytest.raises(ValueError, match="no process named 'zz'; supervised: a"):
                await request("zz")
