"""Does the demo line learn? Collect + train from scratch for 15 minutes, then eval.

    .venv/bin/python bench/learns.py [--minutes 15] [--data /tmp/learns] [--seconds 60]
    .venv/bin/python bench/learns.py --hard   # + the hard test (issue 15), ~5 min more

The acceptance recipe of the driver issue, on this machine's cores:

1. a fresh data directory and `charles-stream models new model_0000_demo`;
2. `charles-stream collect` (NPC collectors) and `charles-stream train --wait`
   side by side for `--minutes` of wall time: the trainer takes each balanced
   sample once, as soon as the collectors store it;
3. stop both (the trainer saves its last checkpoint on SIGTERM);
4. `charles-stream eval`: the model, the NPC and an untrained copy on track
   seeds no collector drove (see engine/driver/eval_cli.py).

Prints the three figures and ratio = model / NPC against the 0.8 limit.
With `--hard`, step 4 is `charles-stream eval --hard`: the same standard figures,
then the hard test's (engine/driver/hard_test.py: minutes per seed, starts off
the racing line) model / NPC ratio against the same limit, its per-seed ratios,
mean speed and lap pace, and each seed's figures, the model's beside the NPC's;
the whole eval report is kept as `<data>/eval.json`.
Runs the tree this script is in, with its config.toml.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = "model_0000_demo"
LIMIT = 0.8


def main() -> None:
    """Run the recipe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="collect + train wall time")
    parser.add_argument("--data", default="/tmp/charles-learns", help="scratch data directory")
    parser.add_argument("--seconds", default="60", help="eval game seconds per seed")
    parser.add_argument(
        "--hard",
        action="store_true",
        help="also run eval's hard test on the trained model and print its figures",
    )
    args = parser.parse_args()
    data = Path(args.data)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    version = json.loads(cli("models", "new", LINE, "--json", "--data", str(data)))["version"]
    logs = {name: (data / f"{name}.log").open("w") for name in ("collect", "train")}
    collect = start("collect", "--samples", str(10**9), "--data", str(data), log=logs["collect"])
    train = start(
        "train", "--model", version, "--wait", "--json", "--data", str(data), log=logs["train"]
    )
    started = time.monotonic()
    time.sleep(args.minutes * 60)
    train.send_signal(signal.SIGTERM)
    elapsed = time.monotonic() - started
    trained, _ = train.communicate(timeout=120)
    stop_collect(collect)
    summary = json.loads(trained.strip().splitlines()[-1])
    hard = ("--hard",) if args.hard else ()
    evaluated = cli(
        "eval", "--model", version, "--json", "--data", str(data), "--seconds", args.seconds, *hard
    )
    report = json.loads(evaluated)
    print(
        f"collect + train for {elapsed / 60:.1f} min: {summary['batches']} batches "
        f"({summary['samples_per_s']} samples/s trained)"
    )
    for name in ("model", "npc", "untrained"):
        row = report[name]
        print(
            f"  {name:9s} {row['metres_per_offroad']:7.1f} m per off-road event "
            f"(progress {row['progress_m']:.0f} m, off-road {row['offroad_events']}, "
            f"unstucks {row['unstucks']})"
        )
    ratio = report["ratio_to_npc"]
    print(f"model / NPC on seeds {report['seeds']}: ratio {ratio:.2f} (limit >= {LIMIT})")
    if args.hard:
        (data / "eval.json").write_text(evaluated)
        print_hard(report["hard"])


def print_hard(hard: dict) -> None:
    """The hard test's figures: the ratio against the limit, its spread, speed, laps, each seed."""
    model, npc = hard["model"], hard["npc"]
    print(
        f"hard test ({hard['seconds']:g} game s a seed, starts off the racing line), "
        f"seeds {hard['seeds']}:"
    )
    print(
        "  seed   model m/off-road  NPC m/off-road  ratio  off-road unstucks  km/h model/NPC  "
        "best lap s model/NPC"
    )
    for mine, theirs in zip(model["episodes"], npc["episodes"], strict=True):
        score, bar = mine["metres_per_offroad"], theirs["metres_per_offroad"]
        print(
            f"  {mine['seed']:<6d} {score:16,.0f} {bar:15,.0f} {score / bar if bar else 0:6.2f}"
            f"  {mine['offroad_events']:8d} {mine['unstucks']:8d}"
            f"  {mine['mean_speed_kmh']:5.1f} / {theirs['mean_speed_kmh']:5.1f}"
            f"  {_lap(mine['best_lap_s'])} / {_lap(theirs['best_lap_s'])}"
        )
    spread = hard["seed_ratios"]
    laps = (
        "no seed with a whole lap by both"
        if hard["lap_ratio"] is None
        else f"lap pace {hard['lap_ratio']:.2f} ({hard['laps_compared']} seeds)"
    )
    print(
        f"  model {model['metres_per_offroad']['mean']:,.0f} / NPC "
        f"{npc['metres_per_offroad']['mean']:,.0f} m per off-road event; per seed "
        f"{spread['min']:.2f}-{spread['max']:.2f} (stdev {spread['stdev']:.2f}); "
        f"off-road {model['offroad_events']} (NPC {npc['offroad_events']}); "
        f"speed {hard['speed_ratio']:.2f}; {laps}"
    )
    print(f"hard model / NPC: ratio {hard['ratio_to_npc']:.2f} (limit >= {LIMIT})")


def _lap(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def cli(*args: str) -> str:
    """Run a charles-stream command to its end; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"charles-stream {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def start(*args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    """Start a charles-stream command in the background (stdout kept for train's summary).

    In its own process group, so its collector processes can be stopped with it; with
    Ctrl-C's default action back (a shell's background job starts with SIGINT ignored).
    """
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE if args[0] == "train" else subprocess.DEVNULL,
        stderr=log,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop_collect(collect: subprocess.Popen) -> None:
    """Ctrl-C, which `collect` answers by stopping its collectors; the group's end if it hangs."""
    collect.send_signal(signal.SIGINT)
    try:
        collect.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(collect.pid, signal.SIGTERM)
        collect.wait(timeout=30)


if __name__ == "__main__":
    main()
