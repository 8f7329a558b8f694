"""`charles-stream eval`: how well a model drives, next to the NPC and an untrained copy.

Example::

    charles-stream eval --model model_0000_demo_v1 --seeds 101,202,303 --seconds 60 --json

Each policy drives the built-in game headless (game time, as fast as the
machine goes) on the same track seeds; the score is the mean metres of road
progress per off-road event (see `engine/driver/evaluation.py`). `--json` prints
{"seeds", "seconds", "model", "npc", "untrained", "ratio_to_npc"}; the
acceptance figure is `ratio_to_npc`.
"""

from __future__ import annotations

import argparse
import json
import logging

from rich.console import Console
from rich.table import Table

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_float,
)

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
        type=positive_float,
        default=DEFAULT_SECONDS,
        help=f"game seconds per seed (default: {DEFAULT_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the model, the NPC and an untrained copy on the same seeds; print the table."""
    config = config_from(args)
    from engine.driver.inference import set_tensorflow_threads

    set_tensorflow_threads(config.driver)
    import keras

    from engine.driver.evaluation import AutopilotPolicy, ModelPolicy, evaluate
    from engine.driver.inference import OnePassModel, load_version
    from models.build import build_architecture

    loaded = load_version(data_dir_from(args, config), args.model)
    outputs = loaded.spec.output_names
    keras.utils.set_random_seed(UNTRAINED_SEED)
    untrained = build_architecture(loaded.spec)
    policies = (
        ModelPolicy("model", OnePassModel(loaded.model, outputs, ()), config.controller),
        AutopilotPolicy(config),
        ModelPolicy("untrained", OnePassModel(untrained, outputs, ()), config.controller),
    )

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
        **{name: result.as_dict() for name, result in results.items()},
        "ratio_to_npc": round(ratio, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


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


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers (e.g. 101,202,303)"
        ) from None
    if not seeds or any(not 0 <= seed <= 2**31 - 1 for seed in seeds):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give at least one seed, each from 0 to {2**31 - 1}"
        )
    return seeds
