"""The hard driving test's bar: the clean NPC against itself on `eval --hard`'s seeds.

    .venv/bin/python bench/eval_hard.py [--seconds 240] [--config config.toml]

Drives the hard test (engine/driver/hard_test.py: its default seeds, off-line
starts and respawns) with the clean NPC twice and compares the runs the way
`eval --hard` compares a model with the NPC. Prints, per seed, the NPC's
start, score (road metres per off-road event + 1), mean speed, lap times and
off-road events, then the spread over seeds, and the NPC-to-itself ratios
(1.000 each: the test repeats exactly) and the game seconds driven per wall
second. These are the figures a model's `eval --hard` is held to.
"""

from __future__ import annotations

import argparse
import math
import time

from engine.core.cli_args import config_from
from engine.driver.evaluation import AutopilotPolicy
from engine.driver.hard_test import DEFAULT_SECONDS, HardTest, compare, run_hard_test


def main() -> None:
    """Run the NPC twice on the hard test and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="game s per seed")
    parser.add_argument("--config", default=None, help="config file (default: ./config.toml)")
    args = parser.parse_args()
    config = config_from(args)
    test = HardTest(seconds=args.seconds)
    started = time.perf_counter()
    first = run_hard_test(AutopilotPolicy(config), config, test)
    wall_s = time.perf_counter() - started
    second = run_hard_test(AutopilotPolicy(config), config, test)
    comparison = compare(second, first)
    print(f"clean NPC, hard test: seeds {test.seeds}, {test.seconds:g} game s each")
    for episode, start, best in zip(first.episodes, first.starts, first.best_laps_s, strict=True):
        laps = ", ".join(f"{lap:.1f}" for lap in episode.lap_times_s) or "none"
        print(
            f"  seed {episode.seed}: start {start.offset_m:+.2f} m from the centre line, "
            f"{math.degrees(start.heading_error_rad):+.0f} deg; "
            f"{episode.metres_per_offroad:,.0f} m per off-road event, "
            f"{episode.progress_m / test.seconds * 3.6:.1f} km/h, laps {laps} s "
            f"(best {'-' if best is None else f'{best:.1f}'}), "
            f"{episode.offroad_events} off-road, {episode.unstucks} unstucks"
        )
    score, speed = first.score, first.speed_kmh
    print(
        f"score mean {score.mean:,.0f} (min {score.min:,.0f}, max {score.max:,.0f}, "
        f"stdev {score.stdev:,.0f}); mean speed {speed.mean:.1f} km/h "
        f"(min {speed.min:.1f}, max {speed.max:.1f}, stdev {speed.stdev:.1f})"
    )
    print(
        f"NPC / NPC: score {comparison.ratio_to_npc:.3f}, speed {comparison.speed_ratio:.3f}, "
        f"lap {comparison.lap_ratio or 0:.3f} ({len(comparison.lap_ratios)} seeds with laps); "
        "limit 1.000 each"
    )
    game_s = test.seconds * len(test.seeds)
    print(f"{game_s:g} game s in {wall_s:.1f} wall s: {game_s / wall_s:.0f}x real time (no frames)")


if __name__ == "__main__":
    main()
