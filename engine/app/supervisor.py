"""Run the app's child processes: start them, restart the ones that die, stop them in order.

Example::

    supervisor = Supervisor(
        process_table(config, config_path, version),
        config.supervisor,
        env={HUB_URL_ENV: hub.url(), HUB_TOKEN_ENV: token},
        state=state,
        on_alert=overlay_alert,
    )
    await supervisor.start()
    ...
    await supervisor.stop()   # driver, then collectors, then trainer; SIGKILL at the deadline

Each child is `python -m MODULE ARGS` (the same interpreter as the app) in an
asyncio subprocess, watched by one task that restarts it with exponential
backoff. A child that keeps dying is left stopped in state "crash_loop" and
an alert says so, instead of spinning the CPU on restarts and hiding the
error in a flood of logs.

A child that is alive but stuck (a trainer deadlocked in TensorFlow, a
driver hung in capture) is restarted too: each `ProcessSpec` with a
`liveness_s` bound must report progress from its work loop
(`engine/node/progress.py`: a progress file per child, named in the child's
environment, whose modification time the work loop sets); one silent for
longer than its bound (before its first report: `[supervisor]
liveness_startup_s`) is SIGKILLed and restarted like a crash, with an alert
and an event line saying how long it was silent. The bookkeeping is
`Watchdog`, which takes its clock as an argument so tests need not wait.

The control dock stops, starts and restarts one child on request
(`stop_process`, `start_process`, `restart_process`): a child stopped that
way is held, not restarted, until it is started again; starting one also
revives a child given up in a crash loop.

Every `[supervisor] sample_s` it samples each running child's resources and
the app's own (RSS, open file descriptors or handles, threads, CPU % of a
core; psutil, so Windows and macOS too) into its `ProcessState` (the app's:
`AppSampled`), which /api/status and the consoles show. A process whose RSS
passes `memory_warn_mb` is named once (an event line and an alert); with
`memory_restart` it is also restarted gracefully, as the dock's restart does:
SIGTERM is each node's safe point (the trainer checkpoints, the driver puts
the pad neutral), SIGKILL only after `shutdown_timeout_s`. Each child's log
file is capped at `log_max_mb` (moved to `<name>.log.1`) at its start and
with each sample.

Children never outlive the app: `stop()` ends them, and on Linux each child
asks the kernel for SIGTERM when the app dies without cleanup (SIGKILL, a
crash): PR_SET_PDEATHSIG, requested by the child itself
(`engine.node.process.die_with_parent`, told the app's pid in
`CHARLES_PARENT_PID`), never in a `preexec_fn`, which is unsafe in a
threaded parent. Children run in their own session, so a Ctrl-C in
the terminal reaches only the app, which then stops them in `stop_order`
(the driver's controller goes neutral before anything else stops).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from engine.app.processes import ProcessSpec, RestartPolicy
from engine.core.config import SupervisorConfig
from engine.core.memory import with_huge_pages
from engine.core.store import (
    MIB,
    AlertRaised,
    AppSampled,
    AppState,
    Noted,
    ProcessChanged,
    ProcessPhase,
    ProcessState,
)
from engine.core.wire import Alert
from engine.node.process import PARENT_PID_ENV
from engine.node.progress import PROGRESS_FILE_ENV

log = logging.getLogger("charles.supervisor")

# How often the watchdog looks at the progress files, as a share of the tightest bound, and
# within these limits: a killed child is late by at most one look.
_LOOKS_PER_BOUND = 8
_LOOK_S = (0.05, 1.0)
# A process past memory_warn_mb is restarted (memory_restart) at most this often: a bound
# below its start-up size must not restart it in a loop.
MEMORY_RESTART_GAP_S = 600.0


class Supervisor:
    """Starts, watches, restarts and stops the child processes of the app.

    Everything it learns is applied to `state`: a `ProcessChanged` with the
    child's new `ProcessState` after every change, a `Noted` line for every
    start, exit and restart, an `AlertRaised` for a crash loop; and the log.
    Children inherit the app's stdout and stderr, or, with `log_dir`, append
    both to `<log_dir>/<name>.log` (quiet tests, a clean terminal view).
    `on_change` is called with a child's `ProcessState` after each change of
    its phase, so a view can redraw (or a test await a state) without polling.
    """

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        settings: SupervisorConfig,
        env: Mapping[str, str],
        state: AppState,
        on_alert: Callable[[Alert], None] | None = None,
        *,
        log_dir: str | Path | None = None,
        on_change: Callable[[ProcessState], None] | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"process names must be unique; repeated: {', '.join(duplicates)}")
        self._settings = settings
        self._env = dict(env)
        self._state = state
        self._on_alert = on_alert
        self._on_change = on_change
        self._log_dir = Path(log_dir) if log_dir is not None else None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        self._children = {
            spec.name: _Child(spec, ProcessState(spec.name, "stopped")) for spec in specs
        }
        self._watchdog = Watchdog()
        self._progress_dir: Path | None = None  # a folder of progress files while watching
        self._watch_task: asyncio.Task[None] | None = None
        self._sample_task: asyncio.Task[None] | None = None
        self._meters: dict[int, psutil.Process] = {}  # pid -> handle; cpu_percent needs the last
        self._warned: set[int] = set()  # pids already named past memory_warn_mb
        self._memory_restarts: dict[str, float] = {}  # name -> monotonic time of its last one
        self._restarts: set[asyncio.Task[None]] = set()  # memory restarts in flight
        self._started = False
        self._stopping = False  # no restarts from here on
        self._killing = False  # the shutdown deadline passed: SIGKILL anything still starting
        self._stop_requested = asyncio.Event()
        self._stop_lock = asyncio.Lock()

    async def start(self) -> None:
        """Start every child in table order; return once each is spawned (or failed to spawn)."""
        if self._started:
            raise RuntimeError("Supervisor.start() was already called")
        self._started = True
        for child in self._children.values():
            self._state.apply(ProcessChanged(child.state))
        bounds = [c.spec.liveness_s for c in self._children.values() if c.spec.liveness_s]
        if bounds:
            self._progress_dir = Path(tempfile.mkdtemp(prefix="charles-progress-"))
            look_s = min(max(min(bounds) / _LOOKS_PER_BOUND, _LOOK_S[0]), _LOOK_S[1])
            self._watch_task = asyncio.create_task(self._watch_liveness(look_s), name="liveness")
        if self._settings.sample_s:
            self._sample_task = asyncio.create_task(
                self._sample_usage(self._settings.sample_s), name="usage"
            )
        for child in self._children.values():
            if self._stopping:  # stop() came while earlier children were being spawned
                break
            process = await self._spawn(child)
            child.task = asyncio.create_task(self._supervise(child, process), name=child.spec.name)

    async def stop(self) -> None:
        """Stop every child: SIGTERM by `stop_order` group, each group awaited, then SIGKILL.

        The whole shutdown takes at most `shutdown_timeout_s` plus the moment
        SIGKILL needs; it returns when no child is left. Calling it again (or
        concurrently) waits for the same shutdown.
        """
        async with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
            self._stop_requested.set()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._settings.shutdown_timeout_s
            children = sorted(self._children.values(), key=lambda child: child.spec.stop_order)
            self._event(logging.INFO, f"stopping {len(self._running(children))} process(es)")
            for _, group in itertools.groupby(children, key=lambda child: child.spec.stop_order):
                running = self._running(list(group))
                for child in running:
                    child.end(hard=False)
                remaining = deadline - loop.time()
                if running and remaining > 0:
                    await asyncio.wait([child.task for child in running], timeout=remaining)
                if loop.time() >= deadline:
                    break
            self._killing = True  # from here on, a child still being spawned gets no grace
            # A memory restart under way gives up (a child it just spawned is killed at once).
            await asyncio.gather(*self._restarts)
            await self._kill_leftovers(children)
            for task in (self._watch_task, self._sample_task):
                if task is not None:
                    await task  # each ends once it sees the stop request
            if self._progress_dir is not None:
                shutil.rmtree(self._progress_dir, ignore_errors=True)

    async def stop_process(self, name: str) -> ProcessState:
        """Stop one child on request (the control dock): SIGTERM, SIGKILL at shutdown_timeout_s.

        It stays "stopped", not restarted, until `start_process`. One waiting
        to restart (backoff) just stops waiting. Unknown names raise ValueError.
        """
        child = self._child(name)
        child.held = True
        task = child.task
        if task is None or task.done():
            return child.state
        if child.state.state == "backoff":
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._set(child, "stopped")
            self._event(logging.INFO, f"{name} stopped on request (was waiting to restart)")
            return child.state
        self._event(logging.INFO, f"stopping {name} on request")
        child.end(hard=False)  # one still being spawned is ended by _spawn (held)
        done, _ = await asyncio.wait([task], timeout=self._settings.shutdown_timeout_s)
        if not done:
            self._event(
                logging.WARNING,
                f"{name} did not stop within {self._settings.shutdown_timeout_s:g} s: SIGKILL",
            )
            child.end(hard=True)
            await asyncio.gather(task, return_exceptions=True)
        return child.state

    async def start_process(self, name: str) -> ProcessState:
        """Start a stopped child again (stopped on request, given up in a crash loop, exited).

        A child that runs or waits to restart is left as it is. ValueError for
        an unknown name, or while the supervisor is not running.
        """
        child = self._child(name)
        if not self._started or self._stopping:
            raise ValueError(f"cannot start {name}: the app's processes are not running now")
        if child.task is not None and not child.task.done():
            return child.state
        child.held = False
        self._event(logging.INFO, f"starting {name} on request")
        process = await self._spawn(child)
        child.task = asyncio.create_task(self._supervise(child, process), name=name)
        return child.state

    async def restart_process(self, name: str) -> ProcessState:
        """Stop one child (as `stop_process`) and start it again."""
        await self.stop_process(name)
        return await self.start_process(name)

    def _child(self, name: str) -> _Child:
        child = self._children.get(name)
        if child is None:
            known = ", ".join(self._children) or "none"
            raise ValueError(f"no process named {name[:40]!r}; supervised: {known}")
        return child

    def kill(self, name: str) -> None:
        """SIGKILL one child, as a crash would; it is restarted like after any exit.

        For tests and the chat admin. A child that is not running right now
        (backoff, crash loop, stopped) is left as it is.
        """
        child = self._children.get(name)
        if child is None:
            known = ", ".join(self._children) or "none"
            raise ValueError(f"no process named {name!r}; supervised: {known}")
        if child.process is None or child.process.returncode is not None:
            log.info("kill %s: not running (%s)", name, child.state.state)
            return
        log.warning("killing %s (pid %d) on request", name, child.process.pid)
        child.end(hard=True)

    async def _supervise(self, child: _Child, process: asyncio.subprocess.Process | None) -> None:
        """Watch one child from its first start: wait for each exit, restart or give up."""
        settings = self._settings
        backoff = Backoff(settings)
        exits: collections.deque[float] = collections.deque()  # times of recent exits
        while True:
            started = time.monotonic()
            code = await process.wait() if process is not None else None
            now = time.monotonic()
            self._exited(child, process, code)
            if self._stopping or child.held or not wants_restart(child.spec.restart, code):
                self._set(child, "stopped")
                return
            exits.append(now)
            while exits[0] < now - settings.crash_loop_window_s:
                exits.popleft()
            if len(exits) > settings.crash_loop_restarts:
                self._crash_loop(child, len(exits), code)
                return
            delay = backoff.next_delay(ran_s=now - started)
            self._set(child, "backoff")
            self._event(logging.INFO, f"{child.spec.name} restarts in {delay:.2f} s")
            if await self._stop_requested_within(delay):
                self._set(child, "stopped")
                return
            self._update(child, restarts=child.state.restarts + 1)
            process = await self._spawn(child)

    async def _spawn(self, child: _Child) -> asyncio.subprocess.Process | None:
        spec = child.spec
        self._set(child, "starting")
        env = {**os.environ, **self._env, PARENT_PID_ENV: str(os.getpid())}
        if spec.huge_pages:
            env = with_huge_pages(env)
        try:
            if spec.liveness_s and self._progress_dir is not None:
                env[PROGRESS_FILE_ENV] = str(self._fresh_progress_file(child))
            self._cap_log(spec.name)
            with self._output(spec.name) as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    spec.module,
                    *spec.args,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,
                )
        except (OSError, subprocess.SubprocessError) as error:
            self._event(logging.ERROR, f"{spec.name} failed to start: {error}")
            return None
        child.process = process
        if spec.liveness_s and child.progress_file is not None:
            self._watchdog.watch(spec.name, spec.liveness_s, self._settings.liveness_startup_s)
        self._set(child, "running", pid=process.pid)
        again = f", restart {child.state.restarts}" if child.state.restarts else ""
        self._event(logging.INFO, f"{spec.name} started (pid {process.pid}{again})")
        if self._stopping or child.held:
            # stop() signalled its group (or stop_process this child) while it was being spawned.
            child.end(hard=self._killing)
        return process

    def _exited(
        self, child: _Child, process: asyncio.subprocess.Process | None, code: int | None
    ) -> None:
        child.process = None
        child.memory_restart = False  # its next process is judged afresh
        self._watchdog.forget(child.spec.name)
        if process is not None:
            self._meters.pop(process.pid, None)
            self._warned.discard(process.pid)
        gone = {"rss_bytes": None, "fds": None, "threads": None, "cpu_percent": None}
        self._update(child, pid=None, last_exit=code, **gone)
        if process is not None:  # a failed spawn was reported by _spawn already
            level = logging.INFO if self._stopping else logging.WARNING
            self._event(level, f"{child.spec.name} (pid {process.pid}) {describe_exit(code)}")

    async def _kill_leftovers(self, children: list[_Child]) -> None:
        leftovers = self._running(children)
        if not leftovers:
            return
        for child in leftovers:
            self._event(
                logging.WARNING,
                f"{child.spec.name} did not stop within "
                f"{self._settings.shutdown_timeout_s:g} s: SIGKILL",
            )
            child.end(hard=True)
        await asyncio.gather(*(child.task for child in leftovers))

    def _crash_loop(self, child: _Child, exits: int, code: int | None) -> None:
        self._set(child, "crash_loop")
        settings = self._settings
        alert = Alert(
            kind="crash_loop",
            text=(
                f"{child.spec.name} stopped after {exits} exits within "
                f"{settings.crash_loop_window_s:g} s (last: {describe_exit(code)}); "
                "not restarting it"
            ),
        )
        self._event(logging.ERROR, alert.text)
        self._state.apply(AlertRaised(alert))
        if self._on_alert is not None:
            self._on_alert(alert)

    def _fresh_progress_file(self, child: _Child) -> Path:
        # Emptied and stamped now; any later change of its time is the new child's report.
        assert self._progress_dir is not None
        path = self._progress_dir / f"{child.spec.name}.progress"
        path.write_bytes(b"")
        child.progress_file = path
        child.progress_stamp = path.stat().st_mtime_ns
        return path

    async def _watch_liveness(self, look_s: float) -> None:
        """Look at every watched child's progress file each `look_s`; kill the silent ones."""
        while not await self._stop_requested_within(look_s):
            try:
                self._look_at_progress()
            except Exception:  # a bug here must not end the watching, nor the app
                log.exception("the liveness watchdog failed to look at the progress files")

    def _look_at_progress(self) -> None:
        for child in self._children.values():
            if child.progress_file is None or child.process is None:
                continue
            try:
                stamp = os.stat(child.progress_file).st_mtime_ns
            except OSError:
                continue  # recreated at the child's next start
            if stamp != child.progress_stamp:
                child.progress_stamp = stamp
                self._watchdog.beat(child.spec.name)
        for silence in self._watchdog.overdue():
            self._unresponsive(self._children[silence.name], silence)

    def _unresponsive(self, child: _Child, silence: Silence) -> None:
        """Kill a child whose work loop went silent; `_supervise` restarts it like a crash."""
        self._watchdog.forget(child.spec.name)  # one kill per silence
        if child.process is None or child.process.returncode is not None:
            return
        name, silent = child.spec.name, f"{silence.silent_s:.0f} s"
        if silence.reported:
            why = f"liveness bound {silence.limit_s:g} s"
        else:
            why = f"no first report within liveness_startup_s {silence.limit_s:g} s"
        self._event(
            logging.WARNING,
            f"{name} (pid {child.process.pid}) was unresponsive for {silent} ({why}): SIGKILL",
        )
        alert = Alert(kind="unresponsive", text=f"{name} was unresponsive for {silent}: restarting")
        self._state.apply(AlertRaised(alert))
        if self._on_alert is not None:
            self._on_alert(alert)
        child.end(hard=True)

    async def _sample_usage(self, every_s: float) -> None:
        """Sample every running child's resources and the app's own each `every_s`."""
        while not await self._stop_requested_within(every_s):
            try:
                self._sample()
            except Exception:  # a bug here must not end the sampling, nor the app
                log.exception("sampling the processes' resources failed")

    def _sample(self) -> None:
        for name, child in self._children.items():
            process = child.process
            if process is None or process.returncode is not None:
                continue
            usage = self._measure(process.pid)
            if usage is None:
                continue  # it ended a moment ago; its exit clears the figures
            self._update(child, **usage)
            self._check_memory(child.spec.name, process.pid, usage["rss_bytes"], child)
            if child.memory_restart and self._at_safe_point(child):
                child.memory_restart = False
                task = asyncio.create_task(self._restart_for_memory(child), name=f"{name}-memory")
                self._restarts.add(task)
                task.add_done_callback(self._restarts.discard)
            self._cap_log(child.spec.name)
        pid = os.getpid()
        usage = self._measure(pid)
        if usage is not None:
            self._state.apply(AppSampled(ProcessState("app", "running", pid=pid, **usage)))
            self._check_memory("app", pid, usage["rss_bytes"], None)

    def _measure(self, pid: int) -> dict[str, Any] | None:
        """RSS, open fds (handles on Windows), threads, CPU %; None if `pid` is gone."""
        meter = self._meters.get(pid)
        try:
            if meter is None:
                meter = self._meters[pid] = psutil.Process(pid)
                meter.cpu_percent()  # the first call only sets the start of the interval
                cpu = None
            else:
                cpu = round(meter.cpu_percent(), 1)
            with meter.oneshot():
                rss = meter.memory_info().rss
                fds = meter.num_fds() if hasattr(meter, "num_fds") else meter.num_handles()
                threads = meter.num_threads()
        except psutil.Error:  # gone, a zombie, or not ours to read
            self._meters.pop(pid, None)
            return None
        return {"rss_bytes": rss, "fds": fds, "threads": threads, "cpu_percent": cpu}

    def _check_memory(self, name: str, pid: int, rss: int, child: _Child | None) -> None:
        """Name a process past memory_warn_mb once (per pid); restart it if memory_restart."""
        bound = self._settings.memory_warn_mb
        if not bound or rss <= bound * MIB or pid in self._warned:
            return
        self._warned.add(pid)
        used = f"{name} uses {rss / MIB:,.0f} MB, past memory_warn_mb {bound:,}"
        alert_text = f"{name} uses {rss / MIB:,.0f} MB (bound {bound:,} MB)"
        last = self._memory_restarts.get(name)
        now = time.monotonic()
        if child is None:
            outcome = "the app itself is not restarted: restart charles-stream"
        elif not self._settings.memory_restart:
            outcome = "memory_restart is off: not restarting it"
        elif self._stopping or child.held:
            outcome = "not restarting it: it is being stopped"
        elif last is not None and now - last < MEMORY_RESTART_GAP_S:
            outcome = (
                f"not restarting it again: its last memory restart was {now - last:.0f} s ago "
                f"(once in {MEMORY_RESTART_GAP_S:.0f} s at most)"
            )
        else:
            outcome = "restarting it gracefully at its next safe point (memory_restart)"
            alert_text += ": restarting it"
            self._memory_restarts[name] = now
            child.memory_restart = True  # done by _sample, at a safe point
        self._event(logging.WARNING, f"{used}; {outcome}")
        alert = Alert(kind="memory", text=alert_text)
        self._state.apply(AlertRaised(alert))
        if self._on_alert is not None:
            self._on_alert(alert)

    def _at_safe_point(self, child: _Child) -> bool:
        """Whether SIGTERM now reaches the node's own handler (its checkpoint, its neutral pad).

        A watched node has once it reported progress from its work loop; before
        that it may still be importing, where SIGTERM would just end it.
        """
        return child.progress_file is None or self._watchdog.has_reported(child.spec.name)

    async def _restart_for_memory(self, child: _Child) -> None:
        """SIGTERM (the node's safe point), SIGKILL at shutdown_timeout_s, start it again."""
        name = child.spec.name
        try:
            await self.stop_process(name)
            if self._stopping:
                return
            self._update(child, restarts=child.state.restarts + 1)
            await self.start_process(name)
        except ValueError as error:  # the app began to stop meanwhile
            log.info("memory restart of %s given up: %s", name, error)

    async def _stop_requested_within(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stop_requested.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    @contextlib.contextmanager
    def _output(self, name: str) -> Iterator[IO[bytes] | None]:
        # None = inherit the app's stdout/stderr. The file is the child's to keep;
        # the app's copy of the descriptor is closed once the child is spawned.
        if self._log_dir is None:
            yield None
            return
        with open(self._log_dir / f"{name}.log", "ab") as output:
            yield output

    def _cap_log(self, name: str) -> None:
        """Move `<name>.log` past log_max_mb to `<name>.log.1` and start it afresh.

        Copied, then truncated in place: the child keeps writing to the
        descriptor it has (opened for appending, so its next line lands at the
        new end), with no signal and no reopening on its side.
        """
        bound = self._settings.log_max_mb
        if self._log_dir is None or not bound:
            return
        path = self._log_dir / f"{name}.log"
        try:
            if path.stat().st_size <= bound * MIB:
                return
            shutil.copyfile(path, self._log_dir / f"{name}.log.1")
            os.truncate(path, 0)
        except OSError as error:  # not there yet, or held in a way this system refuses
            if not isinstance(error, FileNotFoundError):
                log.warning("could not cap %s at log_max_mb %d: %s", path, bound, error)
            return
        self._event(
            logging.INFO,
            f"{name}.log passed log_max_mb {bound:,}: its older lines are in {name}.log.1",
        )

    def _running(self, children: list[_Child]) -> list[_Child]:
        return [child for child in children if child.task is not None and not child.task.done()]

    def _set(self, child: _Child, phase: ProcessPhase, **changes: Any) -> None:
        self._update(child, state=phase, since=time.time(), **changes)
        if self._on_change is not None:
            self._on_change(child.state)

    def _update(self, child: _Child, **changes: Any) -> None:
        # ProcessState is frozen: the app's state holds each version as it was applied.
        child.state = dataclasses.replace(child.state, **changes)
        self._state.apply(ProcessChanged(child.state))

    def _event(self, level: int, text: str) -> None:
        log.log(level, "%s", text)
        self._state.apply(Noted(text))


@dataclass(frozen=True)
class Silence:
    """A watched child silent past its limit: for how long, the limit, and whether it ever spoke."""

    name: str
    silent_s: float
    limit_s: float
    reported: bool  # False: silent since its start, under the start-up allowance


@dataclass
class _Watch:
    bound_s: float
    startup_s: float
    since: float  # its start, or its latest report
    reported: bool = False


class Watchdog:
    """Liveness bookkeeping without I/O: who must report progress by when.

    A child is watched from its start (`watch`); each report (`beat`) restarts
    its clock. Silent for longer than its bound - before its first report, the
    start-up allowance or its bound, whichever is longer - it is `overdue`.
    The clock is injected so tests can step it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._watched: dict[str, _Watch] = {}

    def watch(self, name: str, bound_s: float, startup_s: float) -> None:
        """Watch `name` from now on (a fresh start: its earlier reports do not count)."""
        self._watched[name] = _Watch(bound_s, max(startup_s, bound_s), since=self._clock())

    def beat(self, name: str) -> None:
        """`name`'s work loop reported progress just now."""
        watch = self._watched.get(name)
        if watch is not None:
            watch.since = self._clock()
            watch.reported = True

    def has_reported(self, name: str) -> bool:
        """Whether `name` reported progress since its (watched) start."""
        watch = self._watched.get(name)
        return watch is not None and watch.reported

    def forget(self, name: str) -> None:
        """Stop watching `name` (it exited, or it is being killed)."""
        self._watched.pop(name, None)

    def overdue(self) -> list[Silence]:
        """The watched children silent for longer than their limit, as of now."""
        now = self._clock()
        overdue = []
        for name, watch in self._watched.items():
            limit = watch.bound_s if watch.reported else watch.startup_s
            if now - watch.since > limit:
                overdue.append(Silence(name, now - watch.since, limit, watch.reported))
        return overdue


@dataclass
class Backoff:
    """Restart delays that double after each exit, from backoff_s up to backoff_max_s.

    A run that lasted backoff_reset_s or longer was healthy: the next delay
    starts again from backoff_s, so a crash once a day never waits 30 s.
    """

    settings: SupervisorConfig
    failures: int = 0

    def next_delay(self, ran_s: float) -> float:
        """The delay before restarting a child that just exited after running `ran_s` seconds."""
        if ran_s >= self.settings.backoff_reset_s:
            self.failures = 0
        delay = min(self.settings.backoff_s * 2.0**self.failures, self.settings.backoff_max_s)
        if delay < self.settings.backoff_max_s:
            self.failures += 1  # stop counting at the cap, so 2**failures stays small
        return delay


def wants_restart(policy: RestartPolicy, code: int | None) -> bool:
    """Whether a child that ended with `code` (None: it never started) is started again."""
    if policy == "always":
        return True
    if policy == "on_failure":
        return code != 0
    return False


def describe_exit(code: int | None) -> str:
    """An exit status for people: 'exited with code 3', 'was killed by SIGKILL'."""
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Child:
    spec: ProcessSpec
    state: ProcessState
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    progress_file: Path | None = None  # where its work loop reports (liveness), if watched
    progress_stamp: int = 0  # the file's modification time when last looked at, in ns
    held: bool = False  # stopped on request (stop_process): not restarted until start_process
    memory_restart: bool = False  # past memory_warn_mb with memory_restart: at its next safe point

    def end(self, *, hard: bool) -> None:
        """SIGTERM, or SIGKILL when `hard` (TerminateProcess for both on Windows)."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # it ended a moment ago
            if hard:
                self.process.kill()
            else:
                self.process.terminate()
