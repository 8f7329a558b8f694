"""The supervisor samples each child's resources and the app's own, and bounds their memory.

Real children (`tests/children/child.py`) and the real psutil readings; a
bound of 1 MB stands in for a leak, since every Python process passes it.
The tests await the store's events (each sample, each alert, each report of
a child), never a sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

import msgspec
import pytest

from engine.app.supervisor import MEMORY_RESTART_GAP_S
from engine.core.config import SupervisorConfig
from engine.core.errors import ConfigError
from engine.core.store import AppSampled, AppState, Event, status_view
from tests.test_supervisor import FAST, WAIT_S, Reports, child, supervising

SAMPLING = msgspec.structs.replace(FAST, sample_s=0.2, memory_warn_mb=0)


class Applied:
    """Every event applied to a store, made awaitable; counts the sample rounds."""

    def __init__(self, state: AppState) -> None:
        self.samples = 0
        self._changed = asyncio.Event()
        state.subscribe(self._seen)

    def _seen(self, event: Event) -> None:
        if isinstance(event, AppSampled):
            self.samples += 1  # the app is sampled last in each round
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                await self._changed.wait()
                self._changed.clear()


async def test_each_running_child_and_the_app_itself_are_sampled(tmp_path):
    async with (
        Reports() as reports,
        supervising([child("a", reports)], SAMPLING, tmp_path) as (_, state, _),
    ):
        applied = Applied(state)
        await reports.until(lambda: len(reports.pids()) == 1)
        # The first round opens each process's CPU interval; the second has a CPU figure.
        await applied.until(
            lambda: applied.samples >= 2 and state.processes["a"].cpu_percent is not None
        )
        a, app = state.processes["a"], state.snapshot().app_process
        assert a.pid == reports.pids()[0]
        assert a.rss_bytes > 1 << 20 and a.fds >= 3 and a.threads >= 1 and a.cpu_percent >= 0.0
        assert app is not None and app.pid == os.getpid() and app.rss_bytes > a.rss_bytes
        shown = status_view(state.snapshot())
        assert shown["processes"]["a"]["rss_mb"] == round(a.rss_bytes / (1 << 20), 1)
        assert shown["processes"]["a"]["fds"] == a.fds
        assert shown["app_process"]["pid"] == os.getpid()


async def test_an_exited_child_has_no_figures_until_its_next_start_is_sampled(tmp_path):
    settings = msgspec.structs.replace(SAMPLING, backoff_s=0.5, backoff_max_s=0.5)
    async with (
        Reports() as reports,
        supervising(
            [child("a", reports, "--exit-code", "3", "--after", "1.0")], settings, tmp_path
        ) as (_, state, changes),
    ):
        applied = Applied(state)
        await applied.until(lambda: state.processes["a"].rss_bytes is not None)
        await changes.until(lambda: state.processes["a"].state == "backoff")
        gone = state.processes["a"]
        assert (gone.pid, gone.rss_bytes, gone.fds, gone.threads) == (None, None, None, None)


async def test_a_process_past_memory_warn_mb_is_named_once_with_its_size_and_the_bound(tmp_path):
    settings = msgspec.structs.replace(SAMPLING, memory_warn_mb=1)
    async with (
        Reports() as reports,
        supervising([child("a", reports)], settings, tmp_path) as (_, state, _),
    ):
        applied = Applied(state)
        await applied.until(lambda: any(alert.text.startswith("a uses") for alert in state.alerts))
        rounds = applied.samples
        await applied.until(lambda: applied.samples >= rounds + 3)
        named = [alert for alert in state.alerts if alert.kind == "memory"]
        # The child and the app itself, each once, however many rounds see them past the bound.
        assert sorted(alert.text.split()[0] for alert in named) == ["a", "app"]
        line = next(event for event in state.events if event.startswith("a uses "))
        assert line.endswith(", past memory_warn_mb 1; memory_restart is off: not restarting it")
        assert "(bound 1 MB)" in named[0].text
        assert state.processes["a"].restarts == 0 and len(reports.pids()) == 1


async def test_memory_restart_stops_the_process_at_a_safe_point_and_starts_it_again_once(
    tmp_path,
):
    settings = msgspec.structs.replace(SAMPLING, memory_warn_mb=1, memory_restart=True)
    async with Reports() as reports:
        # Watched, as the nodes are: its first progress report says SIGTERM reaches its handler.
        spec = dataclasses.replace(
            child("a", reports, "--progress-every", "0.1"), liveness_s=WAIT_S
        )
        async with supervising([spec], settings, tmp_path) as (_, state, _):
            applied = Applied(state)
            await reports.until(lambda: len(reports.of("a", "ready")) == 2)
            assert len(reports.of("a", "sigterm")) == 1  # its handler ran: a graceful stop
            assert reports.of("a", "progress")[0].stamp_s < reports.of("a", "sigterm")[0].stamp_s
            assert any(
                event.startswith("a uses ")
                and event.endswith(
                    "restarting it gracefully at its next safe point (memory_restart)"
                )
                for event in state.events
            )
            # The new process passes the bound at once: named again, no second restart so soon.
            again = f"(once in {MEMORY_RESTART_GAP_S:.0f} s at most)"
            await applied.until(lambda: any(event.endswith(again) for event in state.events))
            assert state.processes["a"].restarts == 1
            assert state.processes["a"].pid == reports.pids()[1]
            assert len(reports.of("a", "ready")) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"sample_s": 0.1},
            "'supervisor.sample_s' = 0.1 is not accepted; use 0 (off) or 0.2 to 3600",
        ),
        ({"memory_restart": True, "memory_warn_mb": 0}, "'supervisor.memory_restart' = true needs"),
        (
            {"memory_restart": True, "sample_s": 0.0},
            "'supervisor.sample_s' (0.2 to 3600 s) above 0",
        ),
    ],
)
def test_bad_sampling_and_memory_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SupervisorConfig(**changes)


def test_a_negative_memory_bound_is_refused_with_the_accepted_range(tmp_path):
    from engine.core.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[supervisor]\nmemory_warn_mb = -5\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"'supervisor.memory_warn_mb' = -5 is out of range; accepted: 0 to 1048576",
    ):
        load_config(path)


async def test_a_log_past_log_max_mb_moves_to_log_1_and_starts_afresh(tmp_path):
    old_lines = b"an old line of output\n" * 60_000  # 1.3 MB, past a 1 MB cap
    (tmp_path / "a.log").write_bytes(old_lines)
    (tmp_path / "a.log.1").write_bytes(b"the oldest lines: replaced\n")
    settings = msgspec.structs.replace(SAMPLING, log_max_mb=1)
    async with (
        Reports() as reports,
        supervising([child("a", reports)], settings, tmp_path) as (_, state, _),
    ):
        await reports.until(lambda: len(reports.pids()) == 1)
        assert "a.log passed log_max_mb 1: its older lines are in a.log.1" in state.events
        assert (tmp_path / "a.log.1").read_bytes() == old_lines
        assert (tmp_path / "a.log").stat().st_size < 1 << 20
