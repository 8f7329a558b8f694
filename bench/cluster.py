"""Benchmark the stream across machines: remote collectors over TLS, and the multi-worker trainer.

    sudo .venv/bin/python bench/cluster.py [--part sets|trainer|all] [--collectors 3]
        [--sets 1500] [--rounds 5] [--window 1] [--slow 100mbit] [--batches 40]
        [--trainer-threads 0]

The "machines" are Linux network namespaces joined by veth pairs
(tests/netns.py): a hub namespace (the streaming PC), a trainer namespace
(the GPU box) and `--collectors` collector namespaces, real TCP and TLS
between distinct addresses. Needs root (`ip netns`).

Part `sets` (issue 17): one 480x270 sample set of 23 JPEG samples (bench/hub.py's
`realistic_sets`, ~1 MB encoded once) is sent `--sets` times, spread over one
sender process per collector namespace (as fast as the link takes it), to one
receiver process in the trainer namespace, through a server process in the hub
namespace that serves TLS with the hub's self-signed certificate; every client
pins its SHA-256 fingerprint as nodes do (`aiohttp.Fingerprint`). Two servers,
both started once and measured in alternating rounds so a busy machine slows
both alike:

- bare relay: an aiohttp server with the same TLS context that forwards every
  binary message to the receiver without looking;
- hub: `engine.app.hub.Hub` bound to 0.0.0.0 (so it serves TLS), the token,
  each client's Hello, each set's header read for its type and routed through
  the trainer link's bounded queue. Its senders send as nodes do, with the
  node client's `SendWindow` (engine/node/client.py): a numbered ping after
  each set, and at most `--window` sets in flight (default: the client's
  `UNCONFIRMED_SETS`, 1: the next set only after the hub's pong for the
  previous one, so a dropped link loses at most one set); `--window 0`
  sends as fast as TCP takes the sets, without pings (how the figures
  before 2026-12-04 20:45 UTC were measured). The bare relay's senders
  always send that way: it is the bound a relay of the same bytes reaches.

sets/s = sets / (the receiver's time from "go" to the last set); ratio = hub /
bare relay per round, the median round's (target >= 0.9). CPU per set: the
server process's utime + stime (/proc/PID/stat) over the measurement / sets.
With `--slow RATE` a last hub measurement runs with the hub's link to the
trainer limited to RATE (tc tbf): the hub's send queue fills and the
collectors wait (backpressure), so the hub's peak RSS during it (VmHWM, reset
before) stays near its queue bound (64 sets or 64 MB) instead of growing with
what the collectors send.

Part `trainer`: `charles-stream train` of the demo line (model_0000_demo, batch 32,
the tiny stored test sets of tests/data_helpers.py, so the frame decode is no
part of it) for `--batches` batches, one worker in the hub namespace against
`[trainer] strategy = "multi_worker"` with the chief in the hub namespace and
worker 1 in the trainer namespace, the cluster's addresses being the veth
addresses. samples/s is what the (chief) trainer logs every 5 batches
(global-batch samples over the time in training turns): the median interval,
the first left out (it holds the step's tracing); the `--json` figure over
all batches and each run's wall time are printed beside it. On one machine the
two "boxes" share its cores, so two workers do each step's work as two
half-batch steps plus an all-reduce and the chief's batch hand-out: no faster
than one worker here; a second machine with its own cores is what it is for.
With `--slow RATE` the cluster runs once more with the chief's link to worker 1
limited to RATE: what a slower LAN costs (each step sends worker 1 its half
batch of frames and both ways the gradients).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/netns.py: the namespaces; tests/data_helpers.py: sets

from hub import SAMPLES_PER_SET, TOKEN, realistic_sets  # noqa: E402  bench/hub.py

from engine.app.hub import Hub  # noqa: E402
from engine.core.config import HubConfig  # noqa: E402
from engine.core.store import AppState  # noqa: E402
from engine.core.tls import fingerprint_bytes, hub_identity  # noqa: E402
from engine.core.wire import Hello, encode  # noqa: E402
from engine.node.client import SETS, UNCONFIRMED_SETS, SendWindow  # noqa: E402
from tests.netns import HUB, Lab, network_lab  # noqa: E402

log = logging.getLogger("bench.cluster")

TRAINER = "trainer"
PORTS = {"bare": 9443, "hub": 8765}  # each server's TLS port in the hub namespace
PATHS = {"bare": "/relay", "hub": "/ws/node"}
CLUSTER_PORT = 23456  # the multi-worker trainers' gRPC port, in each one's namespace
STEP_TIMEOUT_S = 600.0  # one measurement or one training run on a loaded 2-core machine
LINE = "model_0000_demo"
VERSION = f"{LINE}_v1"
SETS_PER_BUFFER = 40  # of 21-23 tiny samples: ~55 batches of 32
CAPACITY = 2000
TRAINER_OUTPUTS = ("steering", "throttle_brake")


def main() -> None:
    """Run the chosen parts (or, with --role, one process of a measurement) and print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("sets", "trainer", "all"), default="all")
    parser.add_argument("--collectors", type=_positive, default=3, help="collector namespaces")
    parser.add_argument("--sets", type=_positive, default=1500, help="sets per measurement (~6 s)")
    parser.add_argument("--rounds", type=_positive, default=5, help="bare/hub rounds (median)")
    parser.add_argument(
        "--window",
        type=_window,
        default=UNCONFIRMED_SETS,
        help=f"sets each hub sender keeps in flight (default {UNCONFIRMED_SETS}, as nodes do; "
        "0: no pings, as fast as TCP takes them)",
    )
    parser.add_argument(
        "--slow", default="", help="e.g. 100mbit: a last hub run, trainer link slowed"
    )
    parser.add_argument("--slow-sets", type=_positive, default=150, help="sets of the slow run")
    parser.add_argument("--batches", type=_positive, default=40, help="trainer part: batches")
    parser.add_argument(
        "--trainer-threads", type=int, default=0, help="[trainer] threads per worker (0 = TF's)"
    )
    # One process of a measurement, started by the benchmark inside a namespace.
    parser.add_argument("--role", choices=("server", "sender", "receiver"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("bare", "hub"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        asyncio.run(_ROLES[args.role](args))
        return
    if args.trainer_threads < 0:
        parser.error(f"--trainer-threads {args.trainer_threads}: accepted: 0 (TF's) or more")
    if os.geteuid() != 0:
        parser.error("the namespaces need root: run it with sudo (or as root)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"load average before: {_load()}")
    names = [TRAINER, *(f"c{index + 1}" for index in range(args.collectors))]
    parts = {"sets": bench_sets, "trainer": bench_trainer}
    for name, part in parts.items():
        if args.part not in (name, "all"):
            continue
        # A fresh lab per part: after the slowed hub run (a tbf added, then deleted) the same
        # veth carried the cluster's collectives at ~0.5 s a step instead of ~0.1 s.
        with network_lab(names) as lab, tempfile.TemporaryDirectory(prefix="bench-cl-") as tmp:
            part(lab, Path(tmp), args)
    print(f"load average after: {_load()}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; accepted: a whole number >= 1")
    return value


def _window(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"--window {text!r} is not accepted; accepted: 0 (no pings) or a whole number >= 1"
        )
    return value


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --- part "sets": the orchestrator ---------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One measurement through one server: the receiver's rate and the server's CPU."""

    sets_per_s: float
    server_cpu_s: float
    sets: int

    @property
    def cpu_ms_per_set(self) -> float:
        """The server process's CPU per set carried, in ms."""
        return self.server_cpu_s / self.sets * 1000


def bench_sets(lab: Lab, scratch: Path, args: argparse.Namespace) -> None:
    """Alternate bare relay and hub rounds over the veth links; print rates, ratio and CPU."""
    size = len(encode(realistic_sets()))
    print(
        f"part sets: {args.collectors} collector namespace(s) -> hub namespace -> trainer "
        f"namespace, TLS with a pinned self-signed certificate; one set: {SAMPLES_PER_SET} "
        f"samples at 480x270, {size / 1e6:.2f} MB on the wire; {args.sets} sets a measurement"
    )
    in_flight = (
        f"at most {args.window} set(s) in flight, each confirmed by the hub's pong, as nodes send"
        if args.window
        else "as fast as TCP takes them, no pings"
    )
    print(f"hub senders: {in_flight}; bare relay senders: as fast as TCP takes them")
    data_dir = scratch / "hub-data"
    identity = hub_identity("", "", data_dir)  # made here once: both servers serve it
    servers = {kind: _start_server(lab, kind, data_dir) for kind in ("bare", "hub")}
    rounds: list[tuple[float, Measurement, Measurement]] = []
    for number in range(args.rounds):
        bare = measure_once_more(
            lab, "bare", servers["bare"], identity.fingerprint, args.sets, args
        )
        hub = measure_once_more(lab, "hub", servers["hub"], identity.fingerprint, args.sets, args)
        rounds.append((hub.sets_per_s / bare.sets_per_s, bare, hub))
        print(
            f"round {number + 1}: bare relay {bare.sets_per_s:.1f} sets/s "
            f"({bare.cpu_ms_per_set:.1f} ms CPU/set), hub {hub.sets_per_s:.1f} sets/s "
            f"({hub.cpu_ms_per_set:.1f} ms CPU/set), ratio {hub.sets_per_s / bare.sets_per_s:.2f}"
        )
    ratio, bare, hub = sorted(rounds, key=lambda item: item[0])[len(rounds) // 2]
    for name, result in (("bare relay", bare), ("hub", hub)):
        print(
            f"{name}: {result.sets_per_s:.1f} sets/s ({result.sets_per_s * size / 1e6:.0f} MB/s), "
            f"{result.cpu_ms_per_set:.1f} ms of its process's CPU per set"
        )
    cpu = statistics.median(h.cpu_ms_per_set / b.cpu_ms_per_set for _, b, h in rounds)
    print(
        f"ratio hub / bare relay = {ratio:.2f} (median of {len(rounds)} rounds; target >= 0.9); "
        f"hub CPU per set / bare relay's = {cpu:.2f} (median)"
    )
    if args.slow:
        slow_run(lab, servers["hub"], identity.fingerprint, args)
    for server in servers.values():
        server.stop()


def slow_run(lab: Lab, server: Process, fingerprint: str, args: argparse.Namespace) -> None:
    """The hub with its link to the trainer slowed: its peak RSS shows the backpressure."""
    pid = server.pid
    before = _rss_mb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    with _slowed(lab, TRAINER, args.slow):
        result = measure(lab, "hub", server, fingerprint, args.slow_sets, args)
    sent_mb = args.slow_sets * len(encode(realistic_sets())) / 1e6
    print(
        f"slow trainer link ({args.slow}, tc tbf): hub {result.sets_per_s:.1f} sets/s; "
        f"{sent_mb:.0f} MB sent by the collectors; hub RSS {before:.0f} MB before, "
        f"peak {_rss_mb(pid, 'VmHWM'):.0f} MB during, {_rss_mb(pid, 'VmRSS'):.0f} MB after"
    )


@contextlib.contextmanager
def _slowed(lab: Lab, name: str, rate: str) -> Iterator[None]:
    """The hub's end of the link to `name` limited to `rate` (tc tbf) while the block runs."""
    lab.slow(name, rate)
    try:
        yield
    finally:
        removed = lab.run(HUB, ["tc", "qdisc", "del", "dev", f"h-{name}", "root"])
        if removed.returncode != 0:
            raise SystemExit(f"could not remove the tbf on h-{name}: {removed.stderr.strip()}")


def measure(
    lab: Lab, kind: str, server: Process, fingerprint: str, sets: int, args: argparse.Namespace
) -> Measurement:
    """`sets` sets from the collector namespaces through `server` to the trainer namespace."""
    collectors = [name for name in lab.names if name != TRAINER]
    window = args.window if kind == "hub" else 0
    common = ["--kind", kind, "--fingerprint", fingerprint, "--window", str(window)]
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(
            Process.started(
                lab,
                TRAINER,
                ["--role", "receiver", "--url", _url(lab, TRAINER, kind)],
                common,
                sets,
                "receiver",
            )
        )
        receiver.wait_for("ready")
        senders = [
            stack.enter_context(
                Process.started(
                    lab,
                    name,
                    ["--role", "sender", "--url", _url(lab, name, kind), "--name", name],
                    common,
                    len(range(index, sets, len(collectors))),
                    name,
                )
            )
            for index, name in enumerate(collectors)
        ]
        for sender in senders:
            sender.wait_for("ready")
        cpu_before = _cpu_s(server.pid)
        for process in (receiver, *senders):
            process.say("go")
        done = receiver.wait_for("done")
        cpu = _cpu_s(server.pid) - cpu_before
    return Measurement(sets / done["elapsed_s"], cpu, sets)


def _url(lab: Lab, name: str, kind: str) -> str:
    return f"wss://{lab.hub_address(name)}:{PORTS[kind]}{PATHS[kind]}"


def _start_server(lab: Lab, kind: str, data_dir: Path) -> Process:
    server = Process.start(
        lab, HUB, ["--role", "server", "--kind", kind, "--data-dir", str(data_dir)], f"{kind}"
    )
    server.pid = server.wait_for("ready")["pid"]
    return server


def _cpu_s(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat (after the ")" that ends the command name).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(f"{key} not in /proc/{pid}/status")


class MeasurementFailed(RuntimeError):
    """A sender or receiver exited early: the measurement is retried once, saying why."""


def measure_once_more(*args: object) -> Measurement:
    """`measure`, and once more if a process of it failed (printed: a flake is not hidden)."""
    try:
        return measure(*args)  # type: ignore[arg-type]
    except MeasurementFailed as error:
        print(f"measurement failed, retried once: {error}".replace("\n", " | "))
        return measure(*args)  # type: ignore[arg-type]


class Process:
    """One role of a measurement in a namespace: lines to its stdin, JSON lines from its stdout."""

    def __init__(self, popen: subprocess.Popen[str], label: str, stderr: Path) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.label = label
        self._stderr = stderr
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name=f"read-{label}", daemon=True).start()

    @classmethod
    def start(cls, lab: Lab, namespace: str, argv: list[str], label: str) -> Process:
        """This script with `argv` in `namespace`."""
        stderr = Path(tempfile.mkstemp(prefix=f"bench-cluster-{label}-", suffix=".log")[1])
        with stderr.open("w") as errors:
            popen = lab.popen(
                namespace,
                [sys.executable, str(Path(__file__).resolve()), *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=REPO,
            )
        return cls(popen, label, stderr)

    @classmethod
    @contextlib.contextmanager
    def started(
        cls, lab: Lab, namespace: str, argv: list[str], common: list[str], count: int, label: str
    ) -> Iterator[Process]:
        """A sender or receiver for one measurement, stopped when the measurement ends."""
        process = cls.start(lab, namespace, [*argv, *common, "--count", str(count)], label)
        try:
            yield process
        finally:
            process.stop()

    def say(self, line: str) -> None:
        """Write one line to the process's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(f"{line}\n")
        self.popen.stdin.flush()

    def wait_for(self, event: str, timeout: float = STEP_TIMEOUT_S) -> dict:
        """The next JSON line, which must be `event`; the process's stderr if it died instead."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise SystemExit(f"{self.label}: no {event!r} within {timeout:.0f} s") from None
        if not line:
            self.popen.wait()
            raise MeasurementFailed(
                f"{self.label} exited {self.popen.returncode} before {event!r}:\n"
                f"{self._stderr.read_text()[-3000:]}"
            )
        message = json.loads(line)
        if message.get("event") != event:
            raise SystemExit(f"{self.label}: expected {event!r}, got {line.strip()}")
        return message

    def stop(self) -> None:
        """Close its stdin (it ends), wait for it, kill it if it hangs; drop its log."""
        with contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._stderr.unlink(missing_ok=True)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line)
        self._lines.put("")


# --- part "sets": the processes in the namespaces -----------------------------------------


def _say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _line() -> str:
    """The next line on stdin ("" at its end), without blocking the event loop."""
    return await asyncio.to_thread(sys.stdin.readline)


async def run_server(args: argparse.Namespace) -> None:
    """The hub or the bare relay on 0.0.0.0 with TLS, until stdin ends."""
    if args.kind == "hub":
        config = HubConfig(host="0.0.0.0", port=PORTS["hub"], local_port=0)
        hub = Hub(config, TOKEN, AppState(), data_dir=args.data_dir)
        await hub.start()
        _say("ready", pid=os.getpid())
        await _line()
        await hub.stop()
        return
    runner = await _bare_relay(hub_identity("", "", args.data_dir).server_context())
    _say("ready", pid=os.getpid())
    await _line()
    await runner.cleanup()


async def _bare_relay(context: object) -> web.AppRunner:
    """An aiohttp server that forwards every binary message to the receiver without looking."""
    receivers: list[web.WebSocketResponse] = []

    async def relay(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        if request.query.get("role") == "receiver":
            receivers.append(ws)
        async for received in ws:
            for target in receivers:
                await target.send_bytes(received.data)
        if ws in receivers:
            receivers.remove(ws)
        return ws

    app = web.Application()
    app.router.add_get(PATHS["bare"], relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", PORTS["bare"], ssl_context=context).start()  # type: ignore[arg-type]
    return runner


async def run_receiver(args: argparse.Namespace) -> None:
    """Connect (as the trainer, to the hub), then count `--count` sets from "go"; say the time."""
    async with _connected(args, "trainer", "trainer", "?role=receiver") as ws:
        # Reading from the start answers the hub's heartbeat pings while the senders start.
        received = 0
        finished = asyncio.Event()

        async def count() -> None:
            nonlocal received
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise SystemExit(f"receiver: expected binary sets, got {message.type!r}")
                received += 1
                if received == args.count:
                    finished.set()

        reading = asyncio.create_task(count())
        _say("ready")
        await _line()
        started = time.perf_counter()
        await asyncio.wait(
            {reading, asyncio.create_task(finished.wait())}, return_when="FIRST_COMPLETED"
        )
        if not finished.is_set():
            raise SystemExit(
                f"receiver: the connection ended after {received} of {args.count} sets "
                f"(close code {ws.close_code}, {ws.exception()!r})"
            )
        _say("done", elapsed_s=time.perf_counter() - started)
        await _line()
        reading.cancel()


async def run_sender(args: argparse.Namespace) -> None:
    """Connect (as a collector, to the hub); from "go", send `--count` sets as fast as it can.

    With `--window N` as a node sends: a numbered ping after each set, at most
    N sets in flight until the server's pongs confirm them.
    """
    data = encode(realistic_sets())
    window = SendWindow(args.window) if args.window else None
    async with _connected(args, "collector", args.name, "", autoping=window is None) as ws:
        # Answers the hub's heartbeat pings while the sets go out, and takes its pongs.
        reading = asyncio.create_task(_drain(ws, window))
        _say("ready")
        await _line()
        for _ in range(args.count):
            if window is None:
                await ws.send_bytes(data)
                continue
            await window.room_for_a_set()
            ping = window.sent(SETS, len(data))
            await ws.send_bytes(data)
            await ws.ping(ping)
        _say("sent")
        await _line()
        reading.cancel()


async def _drain(ws: aiohttp.ClientWebSocketResponse, window: SendWindow | None = None) -> None:
    """Read until the connection ends; without autoping, answer pings and pass pongs to `window`."""
    async for message in ws:
        if window is None:
            continue
        if message.type is aiohttp.WSMsgType.PONG:
            window.confirm(message.data)
        elif message.type is aiohttp.WSMsgType.PING:
            await ws.pong(message.data)


@contextlib.asynccontextmanager
async def _connected(
    args: argparse.Namespace, role: str, name: str, query: str, *, autoping: bool = True
):
    """A websocket to the server, the certificate pinned; to the hub with the token and a Hello."""
    pinned = aiohttp.Fingerprint(fingerprint_bytes(args.fingerprint))
    hub = args.kind == "hub"
    headers = {"Authorization": f"Bearer {TOKEN}"} if hub else {}
    url = args.url if hub else f"{args.url}{query}"
    async with aiohttp.ClientSession(headers=headers) as session:
        ws = await session.ws_connect(
            url, ssl=pinned, max_msg_size=0, compress=0, autoping=autoping
        )
        if hub:
            hello = Hello(role=role, name=name, pid=os.getpid(), host=socket.gethostname())  # type: ignore[arg-type]
            await ws.send_bytes(encode(hello))
        try:
            yield ws
        finally:
            await ws.close()


_ROLES = {"server": run_server, "sender": run_sender, "receiver": run_receiver}


# --- part "trainer" ------------------------------------------------------------------------


def bench_trainer(lab: Lab, scratch: Path, args: argparse.Namespace) -> None:
    """One demo-line worker against a two-worker cluster across the veth link; samples/s each."""
    from engine.core.config import load_config
    from engine.data.storage import SampleStorage, default_storage_path
    from models.registry import Registry
    from tests.data_helpers import full_set

    cluster = [
        f"{lab.hub_address(TRAINER)}:{CLUSTER_PORT}",
        f"{lab.address(TRAINER)}:{CLUSTER_PORT}",
    ]
    print(
        f"part trainer: {LINE} at batch 32, {args.batches} batches, [trainer] threads = "
        f"{args.trainer_threads}; cluster {cluster} (hub namespace = chief, trainer namespace = "
        f"worker 1); this machine has {os.cpu_count()} cores for both"
    )
    template = scratch / "stream-template.db"
    rng = np.random.default_rng(3)
    with SampleStorage(template, capacity=CAPACITY) as storage:
        for _ in range(SETS_PER_BUFFER):
            for output in TRAINER_OUTPUTS:
                storage.insert_set(full_set(output, throttle_brake=float(rng.uniform(-1, 1))))

    def box(name: str, samples: bool, trainer: str) -> Path:
        path = scratch / name
        path.mkdir()
        (path / "config.toml").write_text(
            f'[app]\ndata_dir = "{path / "data"}"\n'
            f"[data]\nbuffer_capacity = {CAPACITY}\nready_threshold = 0.01\n"
            f"[trainer]\nthreads = {args.trainer_threads}\nlog_every = 5\n{trainer}\n",
            encoding="utf-8",
        )
        spec = (REPO / "models" / f"{LINE}.toml").read_text(encoding="utf-8")
        with Registry(path / "data") as registry:
            registry.create_version(LINE, spec_toml=spec)
        if samples:
            target = default_storage_path(load_config(path / "config.toml"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, target)
        return path

    multi = f'strategy = "multi_worker"\nworkers = {json.dumps(cluster)}'
    single = box("single", True, "")
    chief, worker = box("chief", True, multi), box("worker", False, multi)
    one = _train(lab, [(HUB, single, [])], args.batches)[0]
    cluster_runs = [
        (HUB, chief, ["--worker-index", "0"]),
        (TRAINER, worker, ["--worker-index", "1"]),
    ]
    two = _train(lab, cluster_runs, args.batches)[0]
    steady = {name: _steady_samples_per_s(path) for name, path in (("one", single), ("two", chief))}
    ratio = steady["two"] / steady["one"]
    for name, key, result in (("one worker", "one", one), ("two workers", "two", two)):
        print(
            f"{name}: {steady[key]:.1f} samples/s after the first interval (median of the "
            f"intervals' figures), {result['samples_per_s']:.1f} over all {result['batches']} "
            f"batches (first step's tracing included), {result['wall_s']:.1f} s wall (start "
            "included)"
        )
    if args.slow:
        slow_chief, slow_worker = box("chief-slow", True, multi), box("worker-slow", False, multi)
        slow_runs = [
            (HUB, slow_chief, ["--worker-index", "0"]),
            (TRAINER, slow_worker, ["--worker-index", "1"]),
        ]
        with _slowed(lab, TRAINER, args.slow):
            _train(lab, slow_runs, args.batches)
        print(
            f"two workers, the link chief -> worker 1 limited to {args.slow} (tc tbf): "
            f"{_steady_samples_per_s(slow_chief):.1f} samples/s after the first interval"
        )
    verdict = "slower" if ratio < 1 else "faster"
    print(
        f"two workers / one = {ratio:.2f} (after the first interval): {verdict} on this one "
        f"{os.cpu_count()}-core machine, where both workers share the cores (each step is two "
        "half-batch steps, an all-reduce over the veth link and the chief's batch hand-out); "
        "a second box brings its own cores"
    )


def _steady_samples_per_s(box: Path) -> float:
    """The median of the samples/s the (chief) trainer logged per interval, the first left out.

    The first interval holds the step's tracing (seconds); the rest are the steady state.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorboard imports TensorFlow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(
        str(box / "data" / "tensorboard" / VERSION), size_guidance={"tensors": 0}
    )
    events.Reload()
    points = sorted(
        (e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors("samples_per_s")
    )
    if len(points) < 2:
        raise SystemExit(f"{box}: {len(points)} samples/s interval(s) logged; give more --batches")
    return statistics.median(value for _, value in points[1:])


def _train(lab: Lab, runs: list[tuple[str, Path, list[str]]], batches: int) -> list[dict]:
    """`charles-stream train` in each (namespace, box, flags) at once; their JSON summaries."""
    environment = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    processes = [
        lab.popen(
            namespace,
            [
                sys.executable,
                "-m",
                "engine.cli",
                "train",
                "--model",
                VERSION,
                "--config",
                str(path / "config.toml"),
                "--seed",
                "7",
                "--json",
                "--batches",
                str(batches),
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=environment,
        )
        for namespace, path, flags in runs
    ]
    outputs = [process.communicate(timeout=STEP_TIMEOUT_S) for process in processes]
    wall = time.perf_counter() - started
    pairs = zip(processes, outputs, strict=True)
    failed = [err[-3000:] for process, (_, err) in pairs if process.returncode]
    if failed:
        raise SystemExit("a trainer failed:\n" + "\n---\n".join(failed))
    return [json.loads(out.strip().splitlines()[-1]) | {"wall_s": wall} for out, _ in outputs]


if __name__ == "__main__":
    main()
