"""Benchmark the stream app: driver PPS in the app vs alone; start to first prediction.

    .venv/bin/python bench/app.py [--seconds 20] [--clients 4]

All runs use config.toml with a scratch data directory, the built-in game at
`--tick-hz` (120 by default, so the driver is not capped by a 30 fps game and
any cost the app adds shows) and model_0000_demo:

1. start-up: wall time from launching `charles-stream` (the full default
   stream: collectors, trainer, driver) to the first prediction the driver
   reports in /api/status;
2. driver alone: `charles-stream drive --sim --seconds N --json`, its PPS;
3. driver in the app: `charles-stream` with only the driver process, the hub
   relaying its status and overlay frames, and `--clients` overlay-like
   clients polling /api/status 10 times a second; PPS averaged over N
   seconds from the driver's own reports. ratio = 3 / 2 (target >= 0.95);
4. for reference, the driver's PPS in the full default stream, where the
   trainer and collectors share the cores (issue 5's >= 30 PPS figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.95
START_TIMEOUT_S = 300.0


def main() -> None:
    """Run the four measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each PPS window")
    parser.add_argument("--clients", type=int, default=4, help="status pollers in run 3")
    parser.add_argument("--tick-hz", type=float, default=120.0, help="the built-in game's rate")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="charles-bench-app-"))
    try:
        asyncio.run(bench(scratch, args.seconds, args.clients, args.tick_hz))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def bench(scratch: Path, seconds: float, clients: int, tick_hz: float) -> None:
    """The measurements, in order, each in fresh processes."""
    full = write_config(scratch, "full", tick_hz, driver_only=False)
    started = time.monotonic()
    async with running_app(full) as port:
        status = await wait_for_status(port, lambda s: (s["pps"] or 0) > 0)
        first_prediction_s = time.monotonic() - started
        full_pps = await mean_pps(port, seconds, clients=0)
    print(
        f"start to first prediction (full stream, {status['version']}): {first_prediction_s:.1f} s"
    )

    alone = driver_alone(write_config(scratch, "alone", tick_hz, driver_only=True), seconds)
    print(f"driver alone (charles-stream drive --sim, game at {tick_hz:g} fps): {alone:.1f} PPS")

    only_driver = write_config(scratch, "app", tick_hz, driver_only=True)
    async with running_app(only_driver) as port:
        await wait_for_status(port, lambda s: (s["pps"] or 0) > 0)
        in_app = await mean_pps(port, seconds, clients=clients)
    print(
        f"driver in the app (hub, {clients} status clients at 10/s, overlay frames): "
        f"{in_app:.1f} PPS; ratio {in_app / alone:.3f} (target >= {TARGET_RATIO})"
    )
    print(f"driver in the full default stream (trainer + collectors on the same cores): "
          f"{full_pps:.1f} PPS")  # fmt: skip


def write_config(scratch: Path, name: str, tick_hz: float, *, driver_only: bool) -> Path:
    """config.toml with a scratch data dir, a free hub port and the game at `tick_hz`."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    data_dir = scratch / name
    text = text.replace('data_dir = "data"', f'data_dir = "{data_dir}"', 1)
    text = text.replace("port = 8765", f"port = {free_port()}", 1)
    text = text.replace("tick_hz = 30.0", f"tick_hz = {tick_hz}", 1)
    text = text.replace('window = "auto"', 'window = "off"', 1)
    if driver_only:
        text = text.replace("collectors = 2            # NPC", "collectors = 0            # NPC")
        text = text.replace("trainer = true", "trainer = false", 1)
    path = scratch / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def driver_alone(config: Path, seconds: float) -> float:
    """PPS of `charles-stream drive --sim` on a fresh demo version."""
    cli("models", "new", "model_0000_demo", "--config", str(config))
    flags = ["--sim", "--seconds", str(seconds), "--json", "--config", str(config)]
    summary = cli("drive", "--model", "model_0000_demo_v1", *flags)
    return float(json.loads(summary.strip().splitlines()[-1])["pps"])


@contextlib.asynccontextmanager
async def running_app(config: Path) -> AsyncIterator[int]:
    """`charles-stream --config PATH` in a subprocess; yields its hub port; SIGTERM at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield int(config.read_text(encoding="utf-8").split("\nport = ", 1)[1].split()[0])
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)


async def wait_for_status(port: int, condition) -> dict:
    """Poll /api/status until `condition(status)`; the app may still be starting."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientConnectionError):  # still starting
                status = await get_status(session, port)
                if condition(status):
                    return status
            if time.monotonic() > deadline:
                raise SystemExit(f"the app on port {port} did not get there in time")
            await asyncio.sleep(0.1)


async def mean_pps(port: int, seconds: float, *, clients: int) -> float:
    """The driver's reported PPS, sampled every 0.5 s for `seconds`, while clients poll."""
    stop = asyncio.Event()
    pollers = [asyncio.create_task(poll(port, stop)) for _ in range(clients)]
    samples = []
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            samples.append((await get_status(session, port))["pps"] or 0.0)
    stop.set()
    await asyncio.gather(*pollers)
    return statistics.mean(samples)


async def poll(port: int, stop: asyncio.Event) -> None:
    """An overlay-like client: /api/status 10 times a second."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            await get_status(session, port)
            await asyncio.sleep(0.1)


async def get_status(session: aiohttp.ClientSession, port: int) -> dict:
    async with session.get(f"http://127.0.0.1:{port}/api/status") as reply:
        return await reply.json()


def cli(*args: str) -> str:
    """Run a charles-stream command to its end; its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
