"""`charles-stream report`: the model pages and their index, written from the records.

Example::

    charles-stream report model_0003_xception          # -> <data_dir>/report/model_0003_xception.md
    charles-stream report model_0003_xception --out docs/models
    charles-stream report --index --out docs/models    # README.md + every line's page

Prints the path of each Markdown file it wrote, one a line. See
`models/report.py` for what a page holds; notes come from
`charles-stream models note`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.core.cli_args import add_config_argument, add_data_argument, config_from, data_dir_from
from engine.core.errors import UsageError

DEFAULT_OUT = "report"


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `report`."""
    parser = subparsers.add_parser(
        "report",
        help="write a model line's page (versions, periods, charts, moments, notes) or the index",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("line", metavar="LINE", nargs="?", help="the model line to write")
    what.add_argument(
        "--index",
        action="store_true",
        help="write the index (every line and version, the streaming timeline) and every "
        "line's page",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"where pages and images go (default: <data_dir>/{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--smoothing",
        type=smoothing_weight,
        help="loss chart smoothing, as TensorBoard's slider (default: TensorBoard's default)",
    )
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the page of LINE, or the index and every line's page."""
    from models.report import write_index, write_line_report

    data_dir = data_dir_from(args, config_from(args))
    out = Path(args.out) if args.out else data_dir / DEFAULT_OUT
    # Only a given flag overrides the report's own default (TensorBoard's).
    options = {} if args.smoothing is None else {"smoothing": args.smoothing}
    try:
        if args.index:
            written = write_index(data_dir, out, **options)
        else:
            written = [write_line_report(data_dir, args.line, out, **options)]
    except OSError as error:
        raise UsageError(
            f"cannot write the report to --out {out}: {error}; accepted: a folder you can write"
        ) from None
    for path in written:
        print(path)
    return 0


def smoothing_weight(text: str) -> float:
    """argparse type: a smoothing weight from 0 (raw) up to, not including, 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range; accepted: 0 to below 1")
    return value
