"""`charles-stream eval`: how well a model drives, next to the NPC and an untrained copy.

Example::

    charles-stream eval --model model_0000_demo_v1 --seeds 101,202,303 --seconds 60 --json
    charles-stream eval --model model_0000_demo_v1 --hard      # + minutes per seed, off-line starts
    charles-stream eval --model model_0000_demo_v1 --engine openvino   # not [driver] engine

Each policy drives the built-in game headless (game time, as fast as the
machine goes) on the same track seeds; the score is the mean metres of road
progress per off-road event (see `engine/driver/evaluation.py`). `--json` prints
{"seeds", "seconds", "engine", "model", "npc", "untrained", "ratio_to_npc"};
the acceptance figure is `ratio_to_npc`. The models run as the driver runs
them: the one-pass model (heads and Convcam layer) on `[driver] engine` (or
`--engine`), so the score of a version is the same on every engine.

`--hard` adds the harder test (`engine/driver/hard_test.py`: 240 game seconds
on each of its own seeds, starts off the racing line, mean speed and lap times
against the NPC's, the spread over seeds) after the standard one, which stays
as it was; `--json` then has a "hard" entry too. `--hard-seeds` and
`--hard-seconds` change its seeds and length.
"""

from __future__ import annotations

import argparse
import json
import logging
import math

from rich.console import Console
from rich.table import Table

from engine.core.cli_args import (
    MAX_SEED,
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
)
from engine.core.errors import UsageError
from engine.driver.engines import add_engine_argument, driver_config_with_engine
from engine.driver.hard_test import DEFAULT_SECONDS as HARD_SECONDS
from engine.driver.hard_test import DEFAULT_SEEDS as HARD_SEEDS
from engine.driver.hard_test import MAX_SECONDS, HardComparison, HardTest

log = logging.getLogger("charles.eval")

# Track seeds eval drives by default. Collectors drive tracks seeded by hashing
# (collector seed, episode) into [0, 2**31), so these are tracks no model trained on.
DEFAULT_SEEDS = (101, 202, 303, 404, 505)
DEFAULT_SECONDS = 60.0
# The untrained copy is initialised from this seed, so its figure repeats too.
UNTRAINED_SEED = 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `eval`."""
    parser = subparsers.add_parser(
        "eval", help="score a model's driving against the NPC and an untrained copy"
    )
    parser.add_argument("--model", required=True, metavar="VERSION", help="e.g. model_0000_demo_v1")
    parser.add_argument(
        "--seeds",
        type=_seeds,
        default=DEFAULT_SEEDS,
        help=f"comma-separated track seeds (default: {','.join(map(str, DEFAULT_SEEDS))})",
    )
    parser.add_argument(
        "--seconds",
        type=_game_seconds,
        default=DEFAULT_SECONDS,
        help=f"game seconds per seed (default: {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--hard",
        action="store_true",
        help="also run the hard test: minutes per seed, starts off the racing line, "
        "mean speed, lap times and the spread over seeds",
    )
    parser.add_argument(
        "--hard-seeds",
        type=_seeds,
        default=None,
        help=f"the hard test's track seeds (default: {','.join(map(str, HARD_SEEDS))})",
    )
    parser.add_argument(
        "--hard-seconds",
        type=_game_seconds,
        default=None,
        help=f"the hard test's game seconds per seed (default: {HARD_SECONDS:g})",
    )
    add_engine_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the model, the NPC and an untrained copy on the same seeds; print the table."""
    hard = _hard_test(args)
    config = config_from(args)
    from engine.driver.inference import set_tensorflow_threads

    set_tensorflow_threads(config.driver)
    import keras

    from engine.driver.evaluation import AutopilotPolicy, ModelPolicy, evaluate
    from engine.driver.hard_test import compare, run_hard_test
    from engine.driver.inference import load_version, one_pass_model
    from engine.driver.precision import stream_frames
    from models.build import build_architecture

    driver = driver_config_with_engine(config, args.engine)
    data_dir = data_dir_from(args, config)
    loaded = load_version(data_dir, args.model)
    outputs = loaded.spec.output_names
    keras.utils.set_random_seed(UNTRAINED_SEED)
    untrained = build_architecture(loaded.spec)
    # The one-pass model the driver drives with, its Convcam layer included, on the engine.
    layers = driver.convcam_layers or (loaded.spec.convcam,)
    # At [driver] precision as the driver would be: gated on the data dir's recorded frames.
    frames = stream_frames(config, tuple(loaded.model.inputs[0].shape[1:]), data_dir)
    model = one_pass_model(driver, loaded.model, outputs, layers, frames)
    policies = (
        ModelPolicy("model", model, config.controller),
        AutopilotPolicy(config),
        ModelPolicy(
            "untrained",
            one_pass_model(driver, untrained, outputs, layers, frames),
            config.controller,
        ),
    )
    log.info("eval: %s predicts on %s", loaded.version, model.engine)

    def progress(name: str, seed: int) -> None:
        log.info("eval: %s on seed %d (%g game seconds)", name, seed, args.seconds)

    results = {
        policy.name: evaluate(
            policy, config, seeds=args.seeds, seconds=args.seconds, progress=progress
        )
        for policy in policies
    }
    npc_score = results["npc"].metres_per_offroad
    ratio = results["model"].metres_per_offroad / npc_score if npc_score > 0 else 0.0
    report = {
        "seeds": list(args.seeds),
        "seconds": args.seconds,
        "version": loaded.version,
        "batch": loaded.batch,
        "engine": model.engine,
        **{name: result.as_dict() for name, result in results.items()},
        "ratio_to_npc": round(ratio, 3),
    }
    comparison = None
    if hard is not None:

        def hard_progress(name: str, seed: int) -> None:
            log.info("eval --hard: %s on seed %d (%g game seconds)", name, seed, hard.seconds)

        model_policy, npc_policy = policies[0], policies[1]
        comparison = compare(
            run_hard_test(model_policy, config, hard, hard_progress),
            run_hard_test(npc_policy, config, hard, hard_progress),
        )
        report["hard"] = comparison.as_dict(hard)
    if args.json:
        print(json.dumps(report))
        return 0
    _print_table(report)
    if comparison is not None:
        _print_hard_table(comparison, hard)
    return 0


def _hard_test(args: argparse.Namespace) -> HardTest | None:
    """The hard test the flags ask for, or None; --hard-* without --hard is refused."""
    if not args.hard:
        seeds = None if args.hard_seeds is None else ",".join(map(str, args.hard_seeds))
        seconds = None if args.hard_seconds is None else f"{args.hard_seconds:g}"
        for flag, value in (("--hard-seeds", seeds), ("--hard-seconds", seconds)):
            if value is not None:
                raise UsageError(
                    f"eval: {flag} {value} applies to the hard test only; "
                    "accepted: with --hard, or left out"
                )
        return None
    return HardTest(
        seeds=HARD_SEEDS if args.hard_seeds is None else args.hard_seeds,
        seconds=HARD_SECONDS if args.hard_seconds is None else args.hard_seconds,
    )


def _print_table(report: dict) -> None:
    table = Table(
        title=f"{report['version']} (batch {report['batch']:,}) on seeds "
        f"{', '.join(map(str, report['seeds']))}, {report['seconds']:g} game s each"
    )
    table.add_column("driver")
    table.add_column("m per off-road event", justify="right")
    table.add_column("progress m", justify="right")
    table.add_column("off-road events", justify="right")
    table.add_column("unstucks", justify="right")
    for name in ("model", "npc", "untrained"):
        row = report[name]
        table.add_row(
            name,
            f"{row['metres_per_offroad']:,.0f}",
            f"{row['progress_m']:,.0f}",
            str(row["offroad_events"]),
            str(row["unstucks"]),
        )
    console = Console()
    console.print(table)
    console.print(f"model / NPC: {report['ratio_to_npc']:.0%} (acceptance: at least 80%)")


def _print_hard_table(comparison: HardComparison, test: HardTest) -> None:
    low, high = test.offset_m
    low_angle, high_angle = (math.degrees(angle) for angle in test.heading_error_rad)
    table = Table(
        title=f"Hard test: seeds {', '.join(map(str, test.seeds))}; "
        f"{test.seconds:g} game s each; starts {low:g}-{high:g} m off the lane centre "
        f"and {low_angle:.0f}-{high_angle:.0f}° off the track's direction"
    )
    table.add_column("driver")
    table.add_column("m per off-road event\nmean (min-max, stdev)", justify="right")
    table.add_column("mean speed km/h\nmean (min-max)", justify="right")
    table.add_column("best lap s per seed", justify="right")
    table.add_column("off-road events", justify="right")
    table.add_column("unstucks", justify="right")
    for result in (comparison.model, comparison.npc):
        score, speed = result.score, result.speed_kmh
        table.add_row(
            result.name,
            f"{score.mean:,.0f} ({score.min:,.0f}-{score.max:,.0f}, {score.stdev:,.0f})",
            f"{speed.mean:.1f} ({speed.min:.1f}-{speed.max:.1f})",
            " ".join("-" if lap is None else f"{lap:.1f}" for lap in result.best_laps_s),
            str(sum(e.offroad_events for e in result.episodes)),
            str(sum(e.unstucks for e in result.episodes)),
        )
    console = Console()
    console.print(table)
    seeds = comparison.seed_ratios
    lap_ratio = comparison.lap_ratio
    laps = (
        "no seed with a whole lap by both"
        if lap_ratio is None
        else f"{lap_ratio:.0%} of the NPC's lap pace ({len(comparison.lap_ratios)} seeds)"
    )
    console.print(
        f"hard test, model / NPC: score {comparison.ratio_to_npc:.0%} "
        f"(per seed {min(seeds):.0%}-{max(seeds):.0%}; acceptance: at least 80%), "
        f"mean speed {comparison.speed_ratio:.0%}, {laps}"
    )


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers (e.g. 101,202,303)"
        ) from None
    if not seeds or any(not 0 <= seed <= MAX_SEED for seed in seeds):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give at least one seed, each from 0 to {MAX_SEED}"
        )
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"{text!r} names seed {', '.join(map(str, repeated))} more than once; "
            "accepted: each seed once"
        )
    return seeds


def _game_seconds(text: str) -> float:
    """argparse type: game seconds per seed, above 0 and at most MAX_SECONDS."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; accepted: game seconds above 0, up to {MAX_SECONDS:g}"
        ) from None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; accepted: game seconds above 0, up to {MAX_SECONDS:g}"
        )
    return value
