"""`charles-stream models ...`: what a line costs, its versions and their training periods.

Example::

    charles-stream models summary model_0003_xception --json     # {"total": 23519466, ...}
    charles-stream models summary model_0003_xception --backbone inception_resnet_v2 --frames 3
    charles-stream models summary model_0003_xception_v1 --plot architecture.png
    charles-stream models new model_0003_xception                # -> model_0003_xception_v1
    charles-stream models list --json
    charles-stream models note model_0003_xception_v2 "Despite being identical ..."
    charles-stream models note model_0003_xception_v2             # its notes, with their ids
    charles-stream models note model_0003_xception_v2 --remove 3

`summary` and `new` build the model (TensorFlow, imported only then); `list`
and `note` read and write charles.db only. A version the app created has no
parameter counts until a process builds its model (`models.versions`); `list`
says "not counted yet" (JSON: null), and `summary VERSION` records them.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.tree import Tree

from engine.core.cli_args import (
    add_config_argument,
    add_data_argument,
    config_from,
    data_dir_from,
    positive_int,
)
from models.notes import Notes
from models.registry import ModelVersion, Registry, TrainingPeriod, is_version_name
from models.spec import BACKBONES, ModelSpec, available_lines, load_spec, spec_path

log = logging.getLogger("charles.models")

EXIT_PLOT_FAILED = 1


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `models summary`, `models new`, `models list` and `models note`."""
    parser = subparsers.add_parser(
        "models", help="model lines: parameter summaries, versions, training periods, notes"
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    summary = actions.add_parser(
        "summary",
        help="parameter counts of a line or version, optionally with another backbone, "
        "frame stack or outputs",
    )
    summary.add_argument("name", metavar="LINE_OR_VERSION")
    summary.add_argument("--backbone", choices=BACKBONES, help="swap the line's backbone")
    summary.add_argument("--frames", type=int, help="frames stacked as input channels")
    summary.add_argument(
        "--outputs", type=_output_names, help="comma-separated outputs, one head each"
    )
    summary.add_argument("--json", action="store_true", help='print {"total", "trainable", ...}')
    summary.add_argument("--plot", metavar="FILE.png", help="also draw the architecture")
    _add_data_arguments(summary)
    summary.set_defaults(handler=run_summary)

    new = actions.add_parser("new", help="create the next version of a line (LINE_v1, _v2, ...)")
    new.add_argument("line", metavar="LINE")
    new.add_argument("--json", action="store_true", help="print the new version as JSON")
    _add_data_arguments(new)
    new.set_defaults(handler=run_new)

    listing = actions.add_parser("list", help="lines, versions, batches and training periods")
    listing.add_argument("--json", action="store_true", help="print everything as JSON")
    _add_data_arguments(listing)
    listing.set_defaults(handler=run_list)

    note = actions.add_parser(
        "note", help="add a note to a version or line for its model page, list or remove notes"
    )
    note.add_argument("name", metavar="VERSION_OR_LINE")
    change = note.add_mutually_exclusive_group()
    change.add_argument(
        "text", metavar="TEXT", nargs="?", help="the note (Markdown); without it, list the notes"
    )
    change.add_argument("--remove", metavar="ID", type=positive_int, help="delete note ID")
    note.add_argument("--json", action="store_true", help="print the notes concerned as JSON")
    _add_data_arguments(note)
    note.set_defaults(handler=run_note)


def run_summary(args: argparse.Namespace) -> int:
    """Print a line's or version's parameter counts, with any overrides applied."""
    from models.build import (
        GraphvizMissingError,
        build_architecture,
        parameter_counts,
        plot_architecture,
    )

    spec = _resolve_spec(args).with_overrides(
        backbone=args.backbone, frames=args.frames, outputs=args.outputs
    )
    model = build_architecture(spec)
    counts = parameter_counts(model)
    overridden = (args.backbone, args.frames, args.outputs) != (None, None, None)
    if is_version_name(args.name) and not overridden:
        with Registry(_data_dir(args)) as registry:
            registry.record_parameters(args.name, counts)
    if args.json:
        print(json.dumps(counts.as_dict()))
    else:
        print(_describe(spec, model.get_layer(spec.convcam).output.shape[1:]))
        print(f"Total params: {counts.total:,}")
        print(f"Trainable params: {counts.trainable:,}")
        print(f"Non-trainable params: {counts.non_trainable:,}")
    if args.plot:
        try:
            log.info("architecture drawn to %s", plot_architecture(model, args.plot))
        except GraphvizMissingError as error:
            log.error("--plot %s: %s", args.plot, error)
            return EXIT_PLOT_FAILED
    return 0


def run_new(args: argparse.Namespace) -> int:
    """Create the next version of a line, with its spec copy and parameter counts."""
    from models.build import build_architecture, parameter_counts

    path = spec_path(args.line)
    spec = load_spec(path)
    counts = parameter_counts(build_architecture(spec))
    with Registry(_data_dir(args)) as registry:
        version = registry.create_version(
            spec.line, spec_toml=path.read_text(encoding="utf-8"), parameters=counts
        )
    log.info("created %s in %s", version.name, registry.path)
    if args.json:
        print(json.dumps(_version_json(version, [])))
    else:
        print(f"{version.name} created {_when(version.created)} ({counts.total:,} parameters)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Show every line with its versions, batches trained, parameters and training periods."""
    with Registry(_data_dir(args)) as registry:
        versions = registry.versions()
        periods = {version.name: registry.periods(version.name) for version in versions}
    lines = sorted(set(available_lines()) | {version.line for version in versions})
    if args.json:
        print(json.dumps({"lines": [_line_json(line, versions, periods) for line in lines]}))
        return 0
    tree = Tree("[bold]Model lines[/bold]")
    for line in lines:
        line_versions = [version for version in versions if version.line == line]
        branch = tree.add(f"[bold]{line}[/bold]" + ("" if line_versions else "  (no versions yet)"))
        for version in line_versions:
            leaf = branch.add(
                f"[bold cyan]{version.name}[/bold cyan]  created {_when(version.created)}, "
                f"batches trained: {version.batches_trained:,}, "
                f"parameters: {_counts_text(version)}"
            )
            for period in periods[version.name]:
                leaf.add(_period_text(period))
    Console().print(tree)
    return 0


def run_note(args: argparse.Namespace) -> int:
    """Add a note to a version or line, remove one, or list them (for the model page)."""
    notes = Notes(_data_dir(args))
    if args.text is not None:
        shown = [notes.add(args.name, args.text)]
        message = f"note {shown[0].id} added to {args.name}"
    elif args.remove is not None:
        shown = [notes.remove(args.remove, args.name)]
        message = f"note {args.remove} removed from {args.name}"
    else:
        notes.check_subject(args.name)
        shown = notes.list(args.name)
        message = "\n".join(f"{note.id}: {note.text}" for note in shown) or (
            f"no notes on {args.name}"
        )
    print(json.dumps([note.as_dict() for note in shown]) if args.json else message)
    return 0


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    add_config_argument(parser)


def _output_names(text: str) -> list[str]:
    """Split `--outputs a,b,c`; the spec checks each name like a spec file's."""
    return [name.strip() for name in text.split(",")]


def _data_dir(args: argparse.Namespace) -> Path:
    return data_dir_from(args, config_from(args))


def _resolve_spec(args: argparse.Namespace) -> ModelSpec:
    """A version's stored spec, or a line's spec file."""
    if is_version_name(args.name):
        with Registry(_data_dir(args)) as registry:
            return registry.version(args.name).spec()
    return load_spec(args.name)


def _describe(spec: ModelSpec, convcam_shape: tuple[int, ...]) -> str:
    widths = " -> ".join(str(width) for width in spec.heads.widths(spec.common.units))
    frames = f"{spec.input.frames} frame" + ("s" if spec.input.frames > 1 else "")
    lines = [
        f"{spec.line} ({spec.source})",
        f"  input: {spec.input.height}x{spec.input.width}x{spec.input.channels} ({frames}), "
        f"backbone: {spec.backbone} (weights: {spec.weights}), pooling: {spec.pooling}",
        f"  common dense: {spec.common.units}; heads: {widths or 'none'} -> 1 for "
        f"{', '.join(spec.output_names)}",
        f"  Convcam layer: {spec.convcam} ({'x'.join(str(size) for size in convcam_shape)})",
    ]
    if spec.description:
        lines.insert(1, f"  {spec.description}")
    return "\n".join(lines)


def _line_json(
    line: str, versions: list[ModelVersion], periods: dict[str, list[TrainingPeriod]]
) -> dict[str, object]:
    spec_file = spec_path(line) if line in available_lines() else None
    return {
        "line": line,
        "spec": str(spec_file) if spec_file else None,
        "versions": [
            _version_json(version, periods[version.name])
            for version in versions
            if version.line == line
        ],
    }


def _version_json(version: ModelVersion, periods: list[TrainingPeriod]) -> dict[str, object]:
    return {
        "version": version.name,
        "line": version.line,
        "created": version.created.isoformat(),
        "batches_trained": version.batches_trained,
        "parameters": version.parameters.as_dict() if version.parameters else None,
        "training_periods": [
            {
                "started": period.started.isoformat(),
                "ended": period.ended.isoformat() if period.ended else None,
                "start_batch": period.start_batch,
                "end_batch": period.end_batch,
                "streamed": period.streamed,
            }
            for period in periods
        ],
    }


def _counts_text(version: ModelVersion) -> str:
    counts = version.parameters
    if counts is None:
        return f"not counted yet (charles-stream models summary {version.name})"
    return (
        f"{counts.total:,} (trainable {counts.trainable:,}, non-trainable {counts.non_trainable:,})"
    )


def _period_text(period: TrainingPeriod) -> str:
    end = _when(period.ended) if period.ended else "open"
    kind = "streamed" if period.streamed else "off-stream"
    return (
        f"{_when(period.started)} - {end} "
        f"(batches: {period.start_batch}-{period.end_batch}, {kind})"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")
