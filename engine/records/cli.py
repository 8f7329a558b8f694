"""`charles-stream timeline`: which model version was streamed when, from which batch.

Example::

    charles-stream timeline                 # a table in the terminal
    charles-stream timeline --markdown      # the reference's "Streaming timeline" form
    charles-stream timeline --json          # one JSON list of events

It reads `<data_dir>/charles.db` (see `engine/records/timeline.py`) and never loads
TensorFlow.
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from engine.core.cli_args import add_config_argument, add_data_argument, config_from, data_dir_from
from engine.records.timeline import Timeline, TimelineEvent, render_markdown


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `timeline`."""
    parser = subparsers.add_parser(
        "timeline", help="the streaming timeline: versions started and stopped, with batches"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the events as a JSON list")
    output.add_argument("--markdown", action="store_true", help="print Markdown: a heading per day")
    add_data_argument(parser)
    add_config_argument(parser)
    parser.set_defaults(handler=run_timeline)


def run_timeline(args: argparse.Namespace) -> int:
    """Print the timeline in the form asked for."""
    events = Timeline(data_dir_from(args, config_from(args))).events()
    if args.json:
        print(json.dumps([event.as_dict() for event in events]))
    elif args.markdown:
        print(render_markdown(events), end="")
    else:
        Console().print(_table(events))
    return 0


def _table(events: list[TimelineEvent]) -> Table:
    table = Table(title="Streaming timeline")
    for column in ("when", "event", "version", "batch", "how"):
        table.add_column(column, justify="right" if column == "batch" else "left")
    for event in events:
        table.add_row(
            f"{event.at.astimezone():%Y-%m-%d %H:%M}",
            event.kind,
            event.version,
            f"{event.batch:,}",
            event.how or "",
        )
    return table
