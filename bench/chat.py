"""Benchmark chat: 1,000 messages/s through Twitch's path into the running app.

    .venv/bin/python bench/chat.py [--seconds 10] [--rounds 3] [--rate 1000]
                                   [--tick-hz 120] [--max-fps 60]

The app (`charles-stream`, driver only, the built-in game at `--tick-hz` so
the driver is not capped by a 30 fps game; capture capped at `--max-fps`
as in config.toml, or uncapped with 1000 so the driver is CPU-bound and any
CPU the chat takes shows in its PPS) joins a local Twitch
(tests/twitch_server.py, in this process) as the broadcaster's account.
Chat goes the real way: EventSub websocket notification -> twitchio -> the
router -> actions/AppState -> reply through the rate-limited outbox -> Helix
Send Chat Message back to the local Twitch.

1. driver PPS with the app idle (the limit measured in the same run);
2. driver PPS while `--rate` messages/s arrive from 1,000 viewers: plain
   chat, long lines, unknown commands, votes, commands on cooldown, the
   occasional tag; PPS drop = 1 - 2 / 1 (target <= 5%). The two kinds of
   window alternate `--rounds` times, so drift on a shared machine cancels;
3. command latency: once a second the broadcaster asks `!model` or
   `!stats`; from the notification leaving the local Twitch to the reply
   arriving at its Helix endpoint (p50, p95, max);
4. the app process's CPU time per second, idle and under chat (Linux /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/twitch_server.py: the local Twitch

from app import cli, free_port, get_status, wait_for_status  # noqa: E402  bench/app.py

from bot.tokens import TokenStore, TwitchTokens  # noqa: E402
from tests.twitch_server import BOT_SCOPES, FakeTwitch, running_twitch  # noqa: E402

TARGET_DROP = 0.05
VIEWERS = 1_000
SEND_STEP_S = 0.01  # messages go out in small batches this often
SETTLE_S = 2.0
CHANNEL = "charles"


def main() -> None:
    """Run the three measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each PPS window")
    parser.add_argument("--rate", type=float, default=1000.0, help="chat messages per second")
    parser.add_argument("--tick-hz", type=float, default=120.0, help="the built-in game's rate")
    parser.add_argument(
        "--max-fps",
        type=float,
        default=60.0,
        help="the driver's capture cap ([capture] max_fps; 1000: CPU-bound, any CPU chat takes "
        "shows in PPS)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="idle/chat window pairs")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="charles-bench-chat-"))
    try:
        asyncio.run(
            bench(scratch, args.seconds, args.rate, args.tick_hz, args.max_fps, args.rounds)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def bench(
    scratch: Path, seconds: float, rate: float, tick_hz: float, max_fps: float, rounds: int
) -> None:
    """Idle and chat windows, alternating `rounds` times (drift on a shared machine cancels)."""
    async with running_twitch(channel=CHANNEL) as twitch:
        config = write_config(scratch, twitch, tick_hz, max_fps)
        cli("models", "new", "model_0000_demo", "--config", str(config))
        store_tokens(twitch, scratch / "data")
        async with running_app(config) as (port, pid):
            await wait_for_status(
                port,
                lambda s: (
                    (s["pps"] or 0) > 0 and s["connections"]["twitch"].startswith("connected")
                ),
            )
            await twitch.wait(twitch.subscribed)
            idle, loaded = Window(), Window()
            latencies: list[float] = []
            sent = 0
            for _ in range(rounds):
                with idle.measure(pid):
                    idle.pps.append(await mean_pps(port, seconds))
                with loaded.measure(pid):
                    pps, count, probes = await under_chat(port, twitch, seconds, rate)
                loaded.pps.append(pps)
                sent += count
                latencies += probes
                await asyncio.sleep(SETTLE_S)  # the last replies; the next idle window is idle
    drop = 1.0 - statistics.mean(loaded.pps) / statistics.mean(idle.pps)
    print(f"driver, app idle (game at {tick_hz:g} fps, capture cap {max_fps:g}, "
          f"{rounds} x {seconds:g} s): "
          f"{statistics.mean(idle.pps):.1f} PPS ({_listed(idle.pps)})")  # fmt: skip
    print(
        f"driver while {sent / (rounds * seconds):,.0f} chat messages/s arrive: "
        f"{statistics.mean(loaded.pps):.1f} PPS ({_listed(loaded.pps)}); "
        f"drop {drop:.1%} (target <= {TARGET_DROP:.0%})"
    )
    per_message = (loaded.app_cpu() - idle.app_cpu()) / (sent / (rounds * seconds))
    print(
        f"CPU: app process {idle.app_cpu():.1%} of a core idle, {loaded.app_cpu():.1%} under chat "
        f"({per_message * 1e6:.0f} us per message); the local Twitch sending it "
        f"{loaded.bench_cpu():.1%} (on the same 2 cores)"
    )
    latencies.sort()
    print(
        f"command latency over {len(latencies)} probes (notification -> Helix reply): "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


class Window:
    """PPS samples and CPU use of a kind of window (idle or chat), over all rounds."""

    def __init__(self) -> None:
        self.pps: list[float] = []
        self._wall = self._app = self._bench = 0.0

    @contextlib.contextmanager
    def measure(self, pid: int) -> Iterator[None]:
        """Add the app's and this process's CPU time and the wall time of the block."""
        wall, app, own = time.monotonic(), cpu_seconds(pid), time.process_time()
        yield
        self._wall += time.monotonic() - wall
        self._app += cpu_seconds(pid) - app
        self._bench += time.process_time() - own

    def app_cpu(self) -> float:
        """The app process's CPU time per second of these windows."""
        return self._app / self._wall

    def bench_cpu(self) -> float:
        """This process's (the local Twitch's) CPU time per second of these windows."""
        return self._bench / self._wall


async def under_chat(
    port: int, twitch: FakeTwitch, seconds: float, rate: float
) -> tuple[float, int, list[float]]:
    """Chat at `rate` for `seconds` while sampling PPS; (mean PPS, messages sent, latencies)."""
    rng = random.Random(8)
    loop = asyncio.get_running_loop()
    probes: dict[str, float] = {}  # message id -> when it left
    replies_before = len(twitch.sent)
    sent = 0
    pps_task = asyncio.create_task(mean_pps(port, seconds))
    started = loop.time()
    next_probe = started
    while (now := loop.time()) - started < seconds:
        due = int((now - started) * rate) - sent
        for _ in range(due):
            await twitch.chat(f"viewer{rng.randrange(VIEWERS)}", viewer_line(rng))
            sent += 1
        if now >= next_probe:
            text = "!model" if len(probes) % 2 else "!stats"
            message_id = await twitch.chat(CHANNEL, text, badges=["broadcaster"])
            probes[message_id] = loop.time()
            next_probe += 1.0
        await asyncio.sleep(SEND_STEP_S)
    pps = await pps_task
    await twitch.wait(lambda: _answered(twitch, probes, replies_before) == len(probes))
    latencies = [
        at - probes[body["reply_parent_message_id"]]
        for body, at in zip(twitch.sent, twitch.sent_at, strict=True)
        if body.get("reply_parent_message_id") in probes
    ]
    return pps, sent, latencies


def _answered(twitch: FakeTwitch, probes: dict[str, float], skip: int) -> int:
    return sum(1 for body in twitch.sent[skip:] if body.get("reply_parent_message_id") in probes)


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def viewer_line(rng: random.Random) -> str:
    """What 1,000 viewers type: mostly chat, some commands (most on cooldown), some votes."""
    kind = rng.random()
    if kind < 0.70:
        return rng.choice(("LUL", "go charles go", "nice line", "into the pond again", "PogChamp"))
    if kind < 0.75:
        return "w" + "o" * 480 + "w"  # long lines
    if kind < 0.80:
        return f"!nosuch{rng.randrange(100)}"
    if kind < 0.90:
        return rng.choice(("!vote model_0000_demo", "!vote model_0003_xception"))
    if kind < 0.999:
        return rng.choice(("!stats", "!model", "!models", "!help", "!timeline"))
    return "!water"


async def mean_pps(port: int, seconds: float) -> float:
    """The driver's reported PPS, sampled every 0.5 s for `seconds`."""
    samples = []
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            samples.append((await get_status(session, port))["pps"] or 0.0)
    return statistics.mean(samples)


def write_config(scratch: Path, twitch: FakeTwitch, tick_hz: float, max_fps: float) -> Path:
    """config.toml: scratch data, free port, driver only, Twitch = the local one, bot = channel."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    replacements = {
        'data_dir = "data"': f'data_dir = "{scratch / "data"}"',
        "port = 8765": f"port = {free_port()}",
        "tick_hz = 30.0": f"tick_hz = {tick_hz}",
        "max_fps = 60.0": f"max_fps = {max_fps}",
        'window = "auto"': 'window = "off"',
        "collectors = 2            # NPC": "collectors = 0            # NPC",
        "trainer = true": "trainer = false",
        "replies_per_30s = 20": "replies_per_30s = 100",  # the broadcaster's own account
        'channel = ""': f'channel = "{CHANNEL}"',
        'client_id = ""': f'client_id = "{twitch.client_id}"',
        'helix_url = "https://api.twitch.tv/helix/"': f'helix_url = "{twitch.helix_url}"',
        'auth_url = "https://id.twitch.tv/"': f'auth_url = "{twitch.auth_url}"',
        'eventsub_url = "wss://eventsub.wss.twitch.tv/ws"': (
            f'eventsub_url = "{twitch.eventsub_url}"'
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            raise SystemExit(f"config.toml has no {old!r}: update bench/chat.py")
        text = text.replace(old, new, 1)
    path = scratch / "chat.toml"
    path.write_text(text, encoding="utf-8")
    return path


def store_tokens(twitch: FakeTwitch, data_dir: Path) -> None:
    """What `charles-stream twitch auth` would have stored for the channel's account."""
    access, refresh = twitch.grant(CHANNEL)
    tokens = TwitchTokens(
        access=access,
        refresh=refresh,
        user_id=twitch.account(CHANNEL).user_id,
        login=CHANNEL,
        scopes=BOT_SCOPES,
        client_id=twitch.client_id,
    )
    TokenStore(data_dir).save(tokens)


@contextlib.asynccontextmanager
async def running_app(config: Path) -> AsyncIterator[tuple[int, int]]:
    """`charles-stream --config PATH` in a subprocess; (hub port, pid); SIGTERM at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = int(config.read_text(encoding="utf-8").split("\nport = ", 1)[1].split()[0])
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


if __name__ == "__main__":
    main()
