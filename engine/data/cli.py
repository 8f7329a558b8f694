"""`charles-stream data stats|histogram`: what the stored training samples look like.

Example::

    charles-stream data stats --json            # one JSON object (see engine/data/stats.py)
    charles-stream data histogram --out balance.png
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
)
from engine.core.errors import UsageError
from engine.data.stats import data_stats
from engine.data.storage import SampleStorage, default_storage_path

log = logging.getLogger("charles.data")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `data stats` and `data histogram`."""
    parser = subparsers.add_parser("data", help="inspect the stored training samples")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats", help="buffer fill, bin counts, starving bins, intake, corrupt samples"
    )
    _add_common(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_stats)
    histogram = actions.add_parser("histogram", help="bar charts of bin counts per buffer")
    _add_common(histogram)
    histogram.add_argument("--out", required=True, type=Path, help="PNG file to write")
    histogram.set_defaults(handler=run_histogram)


def run_stats(args: argparse.Namespace) -> int:
    """Print the stats table (or JSON) of the sample storage."""
    report = _report(args)
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report)
    return 0


def run_histogram(args: argparse.Namespace) -> int:
    """Write the balance chart PNG."""
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: the chart is written as PNG; use a .png file name")
    # matplotlib loads only for this command, keeping `charles-stream --help` quick.
    from engine.data.histogram import draw_balance_chart

    path = draw_balance_chart(_report(args), args.out)
    log.info("balance chart written to %s", path)
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    add_config_argument(parser)


def _report(args: argparse.Namespace) -> dict[str, Any]:
    config = config_from(args)
    path = default_storage_path(config, data_dir_from(args, config))
    if not path.is_file():
        where = f"--data {args.data}" if args.data else f"[app] data_dir in {config.source}"
        raise UsageError(
            f"{where}: no sample storage at {path}; run `charles-stream collect` first"
        )
    with SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        return data_stats(storage, config.data)


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    buffers = Table(title=f"Buffers ({report['storage']})")
    outputs = list(next(iter(report["buffers"].values()))["balance"]) if report["buffers"] else []
    for column in ("buffer", "samples", "capacity", "fill", *(f"{o} balance" for o in outputs)):
        buffers.add_column(column, justify="left" if column == "buffer" else "right")
    for name, info in report["buffers"].items():
        buffers.add_row(
            name,
            str(info["samples"]),
            str(info["capacity"]),
            f"{info['fill']:.0%}",
            *(f"{info['balance'][o]:.2f}" for o in outputs),
        )
    console.print(buffers)
    rate = report["samples_per_s"]
    console.print(
        f"ready: {report['ready']} (threshold {report['ready_threshold']:.0%})  "
        f"samples/s in: {'-' if rate is None else f'{rate:.1f}'}  "
        f"stored: {report['samples_stored_total']}  drawn: {report['samples_drawn_total']}  "
        f"rotated out: {report['samples_rotated_out']}  corrupt: {report['corrupt_samples']}"
    )
    console.print(
        f"balancing: {', '.join(report['balancing']) or '-'}  collectors: {report['collectors']}"
        f"  sets completed: {report['sets_completed']}  dropped: {report['sets_dropped']}"
        f"  rejected values: {report['rejected_values']}"
    )
    for output, per_bin in report["starving_bins"].items():
        if per_bin:
            worst = ", ".join(f"{label} x{count}" for label, count in list(per_bin.items())[:6])
            console.print(f"starving bins of {output}: {worst}")
