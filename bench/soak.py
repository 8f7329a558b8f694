"""Endurance soak (issue 19): the default stream for N minutes, what grows, and by how much.

    .venv/bin/python bench/soak.py [--minutes 180] [--every-s 60] [--chat-rate 3]
                                   [--out DIR]

It runs `charles-stream` on config.toml (two NPC collectors, trainer,
driver, the built-in game without a window) in a scratch data directory, as
bench/app.py does, with Debian's chromium showing `/overlay/` and viewers
chatting `--chat-rate` lines a second through the local Twitch
(tests/twitch_server.py, in this process; bench/chat.py shows the path):
plain chat, long lines, unknown commands, commands (most on cooldown) and
now and then a named moment. Votes are left out: one could switch the model.

Every `--every-s` it records, into `<out>/soak.csv` (one row per sample) and
`<out>/soak.json` (the rows and the summary):

- per process (app, collectors, trainer, driver): RSS, open file
  descriptors, threads, CPU % of a core, restarts: /api/status's
  `processes` and `app_process`, which the supervisor samples every
  `[supervisor] sample_s`;
- the data directory by part: samples.db and its WAL, checkpoints
  (models/), TensorBoard, logs, charles.db and its WAL, the rest;
- the rows of the timeline and moments tables, the overlay's loss history
  length (/overlay/loss.json), the trainer's batch, the driver's unstucks and
  distance, the page's errors.

The learning figure: at `--learn-at-min` (60) and again at the end, before
the stop, `charles-stream eval` scores the stream's version as it is then
(the model against the NPC on track seeds no collector drove, game time, so
the figure does not depend on the machine's load; niced so the stream keeps
its share). Both go to `<out>/soak-learning.json` as each finishes, and the
acceptance is "the end no worse than at 1 hour".

At the end it stops the app (SIGTERM, an ordered shutdown) and prints, per
figure, the value after warm-up and at the end, the growth per hour and a
projection for a 5-day stream. Warm-up rule: it ends at the first sample
that comes after the trainer's first batch and from which the summed RSS of
the trainer, the driver and the app never again rises by more than 1% from
one sample to the next (at least three samples are left to fit; else the
last three). The collectors are left out of the rule: their RSS swings by
a few hundred MB with the candidates their balancer holds for the set it
assembles (up to `[data] set_window_s` x `[collector] sample_hz` frames,
248 MB at 128x72 raw), so a plain fit of theirs measures where the swing
happened to be sampled. Their RSS gets two fits instead: of the lowest and of
the highest sample in each `SWING_WINDOW` samples ("floor" and "peak"): a
leak lifts the floor. Growth per hour is otherwise the least-squares slope
over the samples from there on; CPU % is a rate, so it gets its mean instead. A figure with a
bound by design (config.toml's caps, SQLite's WAL checkpoint, the store's
history) is projected no higher than its bound, which the table names.

    .venv/bin/python bench/soak.py --summarize soak.json   # the summary of a saved run again
    .venv/bin/python bench/soak.py --summarize soak.csv    # of a run still going, or cut short
    .venv/bin/python bench/soak.py --summarize soak.json --fit-from-min 60   # its last part
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/: the local Twitch, chromium's flags

from app import free_port, get_status, wait_for_status  # noqa: E402  bench/app.py
from chat import CHANNEL, store_tokens  # noqa: E402  bench/chat.py

from engine.core.config import load_config  # noqa: E402
from engine.core.store import HISTORY_LENGTH  # noqa: E402
from tests.overlay_helpers import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.twitch_server import FakeTwitch, running_twitch  # noqa: E402

log = logging.getLogger("soak")

EVAL_SECONDS = "60"  # game seconds per seed of the learning figure's eval
PROJECT_H = 5 * 24.0  # the projection: a 5-day stream
WARM_STEP = 0.01  # warm-up: the steady processes' RSS rises by more than this per sample
STEADY = ("trainer.rss_mb", "driver.rss_mb", "app.rss_mb")
SWING_WINDOW = 10  # samples: a collector's RSS floor and peak are taken over each such window
STOP_TIMEOUT_S = 120.0
VIEWERS = 300


def main() -> None:
    """Run the soak, write the log, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=180.0, help="how long the stream runs")
    parser.add_argument("--every-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--chat-rate", type=float, default=3.0, help="chat lines per second")
    parser.add_argument(
        "--learn-at-min",
        type=float,
        default=60.0,
        help="minute of the first learning figure (the second is at the end)",
    )
    parser.add_argument("--out", type=Path, help="folder for soak.csv/soak.json (default: cwd)")
    parser.add_argument("--summarize", type=Path, help="only print the summary of a soak.json")
    parser.add_argument(
        "--fit-from-min",
        type=float,
        default=0.0,
        help="with --summarize: fit growth from this minute on (if later than the warm-up's end)",
    )
    args = parser.parse_args()
    if args.summarize is not None:
        try:
            saved = saved_run(args.summarize)
            rows = saved["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(
                f"--summarize {args.summarize}: cannot be read as a soak ({error}); accepted: "
                "the soak.json a finished soak wrote, or the soak.csv of one still running"
            )
        if not rows:
            parser.error(f"--summarize {args.summarize}: no samples in it yet")
        every = (rows[1]["minute"] - rows[0]["minute"]) * 60.0 if len(rows) > 1 else 0.0
        args.every_s = round(every)
        summary = summarize(rows, from_minute=args.fit_from_min)
        print_summary(rows, saved["ending"], summary, args)
        return
    lows = (("--minutes", args.minutes, 1.0), ("--every-s", args.every_s, 5.0))
    for name, value, low in (*lows, ("--learn-at-min", args.learn_at_min, 0.0)):
        if value < low:
            parser.error(f"{name} {value:g} is too small; accepted: {low:g} or more")
    if not 0.0 <= args.chat_rate <= 100.0:
        parser.error(f"--chat-rate {args.chat_rate:g} is not accepted; use 0 to 100 per second")
    if CHROMIUM is None:
        raise SystemExit("Debian's chromium is not installed (`make test` installs it)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = (args.out or Path.cwd()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="charles-soak-"))
    try:
        rows, ending = asyncio.run(
            soak(scratch, out, args.minutes, args.every_s, args.chat_rate, args.learn_at_min)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = summarize(rows)
    (out / "soak.json").write_text(
        json.dumps({"rows": rows, "ending": ending, "summary": summary}, indent=1),
        encoding="utf-8",
    )
    print_summary(rows, ending, summary, args)


def saved_run(path: Path) -> dict[str, Any]:
    """A soak.json, or a soak.csv (a run still going or cut short: no ending yet)."""
    if path.suffix != ".csv":
        return json.loads(path.read_text(encoding="utf-8"))
    with path.open(newline="", encoding="utf-8") as saved:
        rows = [{key: _number(cell) for key, cell in row.items()} for row in csv.DictReader(saved)]
    learning = path.with_name("soak-learning.json")
    ending = {
        "app_exit_code": "(still running or cut short)",
        "page_errors": [],
        "page_error_count": rows[-1].get("page_errors") if rows else 0,
        "chat_lines": "?",
        "replies": "?",
        "learning": json.loads(learning.read_text()) if learning.exists() else {},
    }
    return {"rows": rows, "ending": ending}


def _number(text: str) -> float | int | str | None:
    """A CSV cell as the number it was (empty: None)."""
    if text == "":
        return None
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


async def soak(
    scratch: Path,
    out: Path,
    minutes: float,
    every_s: float,
    chat_rate: float,
    learn_at_min: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stream, the page and the chat for `minutes`; the samples and how it ended."""
    from playwright.async_api import async_playwright

    async with running_twitch(channel=CHANNEL) as twitch:
        data_dir = scratch / "data"
        config = write_config(scratch, data_dir, twitch)
        store_tokens(twitch, data_dir)
        async with running_app(config, out / "soak-app.log") as (port, app):
            log.info("app pid %d, data %s; waiting for the first prediction", app.pid, data_dir)
            await wait_for_status(
                port,
                lambda s: (
                    (s["pps"] or 0) > 0 and s["connections"]["twitch"].startswith("connected")
                ),
            )
            await twitch.wait(twitch.subscribed)
            errors: list[str] = []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_FLAGS
                )
                page = await browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
                page.on(
                    "console",
                    lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
                )
                await page.goto(f"http://127.0.0.1:{port}/overlay/")
                stop = asyncio.Event()
                chatting = asyncio.create_task(chat_load(twitch, chat_rate, stop))
                learning: dict[str, Any] = {}
                # Only within the run (a short try-out has the figure at the end alone).
                first_figure = (
                    asyncio.create_task(
                        learning_figure_at(learn_at_min, "at_1h", port, data_dir, learning, out)
                    )
                    if learn_at_min < minutes
                    else None
                )
                try:
                    rows = await sample_for(port, data_dir, minutes, every_s, errors, out)
                    if first_figure is not None:
                        await first_figure
                    await learning_figure_at(0.0, "at_end", port, data_dir, learning, out)
                finally:
                    if first_figure is not None:
                        first_figure.cancel()
                    stop.set()
                    sent = await chatting
                await browser.close()
        ending = {
            "app_exit_code": app.returncode,
            "page_errors": errors[:20],
            "page_error_count": len(errors),
            "chat_lines": sent,
            "replies": len(twitch.sent),
            "learning": learning,
        }
    return rows, ending


async def learning_figure_at(
    minute: float, name: str, port: int, data_dir: Path, learning: dict[str, Any], out: Path
) -> None:
    """At `minute` of the soak, `charles-stream eval` of the stream's version into `learning`."""
    await asyncio.sleep(minute * 60.0)
    async with aiohttp.ClientSession() as session:
        status = await get_status(session, port)
    version, batch = status["version"], status["batch"]
    log.info("learning figure %s: eval of %s at batch %s", name, version, batch)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *("nice", "-n", "10", sys.executable, "-m", "engine.cli", "eval", "--model", version),
        *("--json", "--seconds", EVAL_SECONDS, "--data", str(data_dir)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await process.communicate()
    figure: dict[str, Any] = {
        "version": version,
        "batch": batch,
        "eval_s": round(time.monotonic() - started, 1),
    }
    if process.returncode != 0:
        figure["error"] = errors.decode(errors="replace")[-2000:]
    else:
        report = json.loads(output.decode().strip().splitlines()[-1])
        figure.update(
            ratio_to_npc=report["ratio_to_npc"],
            model_m_per_offroad=report["model"]["metres_per_offroad"],
            npc_m_per_offroad=report["npc"]["metres_per_offroad"],
            seeds=report["seeds"],
        )
    learning[name] = figure
    log.info("learning figure %s: %s", name, figure)
    (out / "soak-learning.json").write_text(json.dumps(learning, indent=1), encoding="utf-8")


async def sample_for(
    port: int, data_dir: Path, minutes: float, every_s: float, errors: list[str], out: Path
) -> list[dict[str, Any]]:
    """A sample now and every `every_s` until `minutes` have passed; each appended to the CSV."""
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    path = out / "soak.csv"
    writer: csv.DictWriter | None = None
    async with aiohttp.ClientSession() as session:
        with path.open("w", newline="", encoding="utf-8") as output:
            for index in range(int(minutes * 60.0 / every_s) + 1):
                # On the minute (every_s) from the first: a slow sample does not shift the rest.
                await asyncio.sleep(max(0.0, started + index * every_s - time.monotonic()))
                row = await sample(session, port, data_dir, time.monotonic() - started, errors)
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(output, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                writer.writerow(row)
                output.flush()
                log.info("%s", one_line(row))
    return rows


async def sample(
    session: aiohttp.ClientSession, port: int, data_dir: Path, at_s: float, errors: list[str]
) -> dict[str, Any]:
    """One row: per process figures, the data directory by part, table rows, loss history."""
    status = await get_status(session, port)
    async with session.get(f"http://127.0.0.1:{port}/overlay/loss.json") as reply:
        loss = await reply.json()
    row: dict[str, Any] = {"minute": round(at_s / 60.0, 2), "batch": status["batch"]}
    processes = dict(status["processes"])
    if status.get("app_process"):
        processes["app"] = {**status["app_process"], "restarts": 0, "state": "running"}
    for name in sorted(processes):
        figures = processes[name]
        for key in ("rss_mb", "fds", "threads", "cpu_percent", "restarts"):
            row[f"{name}.{key}"] = figures.get(key)
    row.update({f"disk.{part}_mb": round(size / 2**20, 2) for part, size in disk(data_dir).items()})
    row.update(table_rows(data_dir))
    row["loss_points"] = len(loss["points"])
    row["events"] = len(status["events"])
    row["unstucks"] = status["unstucks"]
    row["distance_m"] = status["distance_m"]
    row["page_errors"] = len(errors)
    return row


def disk(data_dir: Path) -> dict[str, int]:
    """Bytes of each part of the data directory."""
    parts = {
        "samples_db": ["samples/samples.db"],
        "samples_db_wal": ["samples/samples.db-wal", "samples/samples.db-shm"],
        "checkpoints": ["models"],
        "tensorboard": ["tensorboard"],
        "logs": ["logs"],
        "charles_db": ["charles.db"],
        "charles_db_wal": ["charles.db-wal", "charles.db-shm"],
    }
    sizes = {part: sum(size_of(data_dir / name) for name in names) for part, names in parts.items()}
    total = size_of(data_dir)
    sizes["other"] = total - sum(sizes.values())
    sizes["total"] = total
    return sizes


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 for what is not there (any more)."""
    if path.is_file():
        with contextlib.suppress(OSError):
            return path.stat().st_size
        return 0
    total = 0
    for item in path.rglob("*"):
        with contextlib.suppress(OSError):  # a checkpoint pruned or a temp file gone meanwhile
            if item.is_file():
                total += item.stat().st_size
    return total


def table_rows(data_dir: Path) -> dict[str, int | None]:
    """Rows of the timeline and moments tables in charles.db (read-only, beside the writers)."""
    counts: dict[str, int | None] = {"timeline_rows": None, "moments_rows": None}
    uri = f"file:{data_dir / 'charles.db'}?mode=ro"
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db,
    ):
        for key, table in (("timeline_rows", "timeline_events"), ("moments_rows", "moments")):
            with contextlib.suppress(sqlite3.Error):  # not created yet
                counts[key] = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return counts


async def chat_load(twitch: FakeTwitch, rate: float, stop: asyncio.Event) -> int:
    """Viewers chat `rate` lines a second until `stop`; how many lines went out."""
    if rate <= 0:
        await stop.wait()
        return 0
    rng = random.Random(19)
    sent = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not stop.is_set():
        due = int((loop.time() - started) * rate) - sent
        for _ in range(due):
            with contextlib.suppress(Exception):  # a reconnecting bot misses a line: chat does
                await twitch.chat(f"viewer{rng.randrange(VIEWERS)}", viewer_line(rng))
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return sent


def viewer_line(rng: random.Random) -> str:
    """What viewers type for hours: chat, commands (most on cooldown), now and then a moment."""
    kind = rng.random()
    if kind < 0.75:
        return rng.choice(("LUL", "go charles go", "nice line", "into the pond again", "PogChamp"))
    if kind < 0.80:
        return "w" + "o" * 480 + "w"
    if kind < 0.85:
        return f"!nosuch{rng.randrange(100)}"
    if kind < 0.995:
        return rng.choice(("!stats", "!model", "!models", "!help", "!timeline"))
    return "!water"


def write_config(scratch: Path, data_dir: Path, twitch: FakeTwitch) -> Path:
    """config.toml as shipped, but: scratch data, a free port, no game window, the local Twitch."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    replacements = {
        'data_dir = "data"': f'data_dir = "{data_dir}"',
        "port = 8765": f"port = {free_port()}",
        'window = "auto"': 'window = "off"',
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
            raise SystemExit(f"config.toml has no {old!r}: update bench/soak.py")
        text = text.replace(old, new, 1)
    path = scratch / "soak.toml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_app(config: Path, output: Path) -> AsyncIterator[tuple[int, subprocess.Popen]]:
    """`charles-stream --config PATH`, output to `output`; (hub port, process); SIGTERM at end."""
    with output.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--config", str(config)],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            port = int(config.read_text(encoding="utf-8").split("\nport = ", 1)[1].split()[0])
            yield port, process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("the app did not stop within %.0f s: SIGKILL", STOP_TIMEOUT_S)
                process.kill()
                process.wait()


# -- the summary ------------------------------------------------------------------------------


def warm_up_end(rows: list[dict[str, Any]]) -> int:
    """The first sample from which summed RSS never rises > WARM_STEP per sample (see the top)."""
    totals = [sum(row.get(key) or 0.0 for key in STEADY) for row in rows]
    last = max(len(rows) - 3, 0)
    # TensorFlow's first steps (tracing, the allocator's pools) are warm-up, however slow.
    start = next((i for i, row in enumerate(rows) if (row.get("batch") or 0) > 0), last)
    for index in range(1, len(totals)):
        if totals[index - 1] and totals[index] > totals[index - 1] * (1.0 + WARM_STEP):
            start = index
    return min(start, last)


def slope_per_hour(minutes: list[float], values: list[float]) -> float | None:
    """Least-squares slope of `values` over time, per hour; None with fewer than two points."""
    if len(values) < 2:
        return None
    mean_t, mean_v = sum(minutes) / len(minutes), sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in minutes)
    if spread == 0:
        return None
    rise = sum((t - mean_t) * (v - mean_v) for t, v in zip(minutes, values, strict=True))
    return rise / spread * 60.0


def bounds(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, str]]:
    """Figure -> (its bound, where the bound comes from), as config.toml sets them."""
    config = load_config(REPO / "config.toml")
    processes = len({key.split(".")[0] for key in rows[-1] if key.endswith(".rss_mb")}) - 1
    logs = 2 * config.supervisor.log_max_mb * processes
    keep = config.models.keep_checkpoints
    # The first sample with a checkpoint holds one (the trainer writes one per checkpoint_every).
    one_checkpoint = next((r["disk.checkpoints_mb"] for r in rows if r["disk.checkpoints_mb"]), 0.0)
    frame = config.data.frame_width * config.data.frame_height * 3
    held = config.data.set_window_s * config.collector.sample_hz
    return {
        "collector.rss": (
            None,
            f"swing: balancer candidates <= set_window_s x sample_hz = {held:,.0f} frames "
            f"({held * frame / 2**20:,.0f} MB raw)",
        ),
        "loss_points": (config.overlay.loss_points, "[overlay] loss_points"),
        "events": (HISTORY_LENGTH, "the store's HISTORY_LENGTH"),
        "disk.logs_mb": (logs or None, f"2 x [supervisor] log_max_mb x {processes} processes"),
        "disk.samples_db_mb": (
            None,
            f"[data] buffer_capacity {config.data.buffer_capacity:,} rows",
        ),
        # A checkpoint runs after the commit that passes 1000 pages: one set's transaction more.
        "disk.samples_db_wal_mb": (None, "SQLite checkpoint: 1000 pages of 32 KiB + one set"),
        "disk.charles_db_wal_mb": (4.0, "SQLite checkpoint: 1000 pages of 4 KiB"),
        "disk.checkpoints_mb": (
            keep * one_checkpoint if one_checkpoint else None,
            f"[models] keep_checkpoints {keep} per version x {one_checkpoint:.1f} MB",
        ),
    }


def summarize(rows: list[dict[str, Any]], from_minute: float = 0.0) -> dict[str, Any]:
    """Per numeric figure: after warm-up, at the end, growth per hour, a 5-day projection.

    `from_minute`: fit from there when that is later than the warm-up's end (e.g. the
    last hour of a run, to tell a slow warm-up from a steady rise)."""
    if not rows:
        return {"warm_up_end_minute": None, "figures": {}}
    asked = next((i for i, row in enumerate(rows) if row["minute"] >= from_minute), len(rows))
    warm = warm_up_end(rows)
    start = min(max(warm, asked), max(len(rows) - 3, 0))
    kept = rows[start:]
    caps = bounds(rows)
    figures: dict[str, dict[str, float | None]] = {}
    for key in rows[-1]:
        if key == "minute" or not isinstance(rows[-1][key], int | float):
            continue
        points = [(r["minute"], r[key]) for r in kept if isinstance(r.get(key), int | float)]
        if not points:
            continue
        if key.endswith(".cpu_percent"):
            mean = sum(v for _, v in points) / len(points)
            figures[key] = {"after_warm_up": points[0][1], "end": mean, "per_hour": None,
                            "at_5_days": None}  # fmt: skip
            continue
        if key.startswith("collector-") and key.endswith(".rss_mb"):
            for side, pick in (("floor", min), ("peak", max)):
                figures[f"{key}.{side}"] = swing_figure(points, pick, caps["collector.rss"])
            continue
        slope = slope_per_hour([t for t, _ in points], [v for _, v in points])
        end_value = points[-1][1]
        hours_left = PROJECT_H - rows[-1]["minute"] / 60.0
        bound, why = caps.get(key, (None, ""))
        projected = None if slope is None else end_value + slope * hours_left
        if projected is not None and bound is not None:
            projected = min(projected, max(bound, end_value))
        figures[key] = {
            "after_warm_up": points[0][1],
            "end": end_value,
            "per_hour": slope,
            "at_5_days": projected,
            "bound": why,
        }
    parts = [f for k, f in figures.items() if k.startswith("disk.") and k != "disk.total_mb"]
    if "disk.total_mb" in figures and all(f["at_5_days"] is not None for f in parts):
        # The whole is its parts: each projected no higher than its own bound.
        figures["disk.total_mb"]["at_5_days"] = sum(f["at_5_days"] for f in parts)
        figures["disk.total_mb"]["bound"] = "the sum of the parts' projections"
    return {
        "warm_up_end_minute": rows[warm]["minute"],
        "fit_from_minute": rows[start]["minute"],
        "figures": figures,
    }


def swing_figure(
    points: list[tuple[float, float]], pick: Any, bound: tuple[float | None, str]
) -> dict[str, Any]:
    """A swinging RSS's floor (pick=min) or peak (max) per SWING_WINDOW samples, fitted."""
    windows = [points[i : i + SWING_WINDOW] for i in range(0, len(points), SWING_WINDOW)]
    if len(windows) > 2 and len(windows[-1]) < SWING_WINDOW:
        windows.pop()  # a short last window has not seen a whole swing
    picked = [pick(window, key=lambda point: point[1]) for window in windows]
    slope = slope_per_hour([t for t, _ in picked], [v for _, v in picked])
    end_value = picked[-1][1]
    hours_left = PROJECT_H - points[-1][0] / 60.0
    return {
        "after_warm_up": picked[0][1],
        "end": end_value,
        "per_hour": slope,
        "at_5_days": None if slope is None else end_value + slope * hours_left,
        "bound": bound[1],
    }


def print_summary(
    rows: list[dict[str, Any]], ending: dict[str, Any], summary: dict[str, Any], args: Any
) -> None:
    """The figures as a table: the part BENCHMARKS.md takes."""
    minutes = rows[-1]["minute"] if rows else 0.0
    print(
        f"\nsoak: {minutes:.1f} min of the default stream, a sample every {args.every_s:g} s "
        f"({len(rows)} samples), chromium on /overlay/, {ending['chat_lines']} chat lines "
        f"({args.chat_rate:g}/s), {ending['replies']} replies"
    )
    fitted = summary.get("fit_from_minute", summary["warm_up_end_minute"])
    if fitted != summary["warm_up_end_minute"]:
        print(f"fitted from minute {fitted} (--fit-from-min), not from the warm-up's end:")
    print(
        f"warm-up ends at minute {summary['warm_up_end_minute']} (after the first batch, "
        f"trainer+driver+app RSS rises <= {WARM_STEP:.0%} per sample from there); "
        "growth = least-squares slope after it"
    )
    print(
        f"{'figure':32} {'after warm-up':>14} {'end':>10} {'per hour':>10} {'at 5 days':>11}  "
        "bound by design"
    )
    print("  (cpu_percent: 'end' is the mean after warm-up, % of one core)")
    for key, figure in summary["figures"].items():
        per_hour = figure["per_hour"]
        at_5 = figure["at_5_days"]
        print(
            f"{key:32} {figure['after_warm_up']:>14.6g} {figure['end']:>10.6g} "
            f"{'-' if per_hour is None else f'{per_hour:+.3g}':>10} "
            f"{'-' if at_5 is None else f'{at_5:.4g}':>11}  {figure.get('bound', '')}"
        )
    restarts = {k: v for k, v in rows[-1].items() if k.endswith(".restarts") and v} if rows else {}
    print(
        f"restarts: {restarts or 'none'}; page errors: {ending['page_error_count']}; "
        f"app exit code: {ending['app_exit_code']}"
    )
    for error in ending["page_errors"][:5]:
        print(f"  {error}")
    for name, figure in ending.get("learning", {}).items():
        if "ratio_to_npc" in figure:
            print(
                f"learning {name}: {figure['version']} batch {figure['batch']}: "
                f"{figure['model_m_per_offroad']:.1f} m per off-road event, NPC "
                f"{figure['npc_m_per_offroad']:.1f}: ratio {figure['ratio_to_npc']:.2f} "
                f"(eval {figure['eval_s']:.0f} s)"
            )
        else:
            print(f"learning {name}: eval failed: {figure.get('error', '')[-300:]}")
    learned = ending.get("learning", {})
    if all("ratio_to_npc" in learned.get(k, {}) for k in ("at_1h", "at_end")):
        verdict = learned["at_end"]["ratio_to_npc"] >= learned["at_1h"]["ratio_to_npc"]
        print(f"the end no worse than at 1 hour: {'yes' if verdict else 'NO'}")


def one_line(row: dict[str, Any]) -> str:
    """A sample as one log line: minute, batch, each process's RSS, the data directory's total."""
    rss = " ".join(
        f"{key.removesuffix('.rss_mb')} {value:.0f}"
        for key, value in row.items()
        if key.endswith(".rss_mb") and value is not None
    )
    return (
        f"min {row['minute']:.1f} batch {row['batch']} | RSS MB: {rss} | "
        f"data {row['disk.total_mb']:.0f} MB | loss points {row['loss_points']}"
    )


if __name__ == "__main__":
    main()
