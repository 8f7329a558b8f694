"""Model pages and their index, written from the records: the seed page, generated.

Example::

    write_line_report("data", "model_0003_xception", Path("report"))
    # report/model_0003_xception.md, report/model_0003_xception_v1.plot.png, ..._v1.tb.png
    write_index("data", Path("report"))
    # report/README.md (every line and version, the streaming timeline) + every line's page

    charles-stream report model_0003_xception --out docs/models
    charles-stream report --index --out docs/models

A line's page follows `../shared/seed/model_0003_xception.md`: the line's
description (its spec), a list of its versions, then per version the training
periods (dates, batch ranges, streamed or off-stream; `models/registry.py`),
the total batches, the parameter summary (counted here for a version that no
process has built yet: `models/versions.py`), the architecture plot, the loss
chart from the version's TensorBoard event files (`models/loss_chart.py`),
the operator's notes (`models/notes.py`) and the moments tagged on stream
(`engine/records/moments.py`). Images land next to the Markdown with relative links,
so the folder can be committed or published as it is.

The same records give the same bytes: nothing says when the page was made,
lists are in record order, charts carry no version tag, and the architecture
plot is drawn once per version into `<data_dir>/models/<version>/architecture.png`
(a version's spec never changes) and copied from there. Dates are shown in
`tz` (default: this machine's time zone), like `charles-stream timeline`.

Notes and spec descriptions are the operator's Markdown and are printed as
written; moment notes and user names come from chat and are escaped, so a
viewer cannot put links, images or HTML on the page.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path, PureWindowsPath

import keras

from engine.core.errors import UsageError
from engine.records.moments import Moment, Moments
from engine.records.timeline import Timeline, TimelineEvent, render_markdown
from models.build import (
    GraphvizMissingError,
    build_architecture,
    parameter_counts,
    plot_architecture,
)
from models.loss_chart import DEFAULT_SMOOTHING, draw_loss_chart, read_loss_curves
from models.notes import Note, Notes
from models.registry import ModelVersion, Registry, TrainingPeriod, is_version_name, version_dir
from models.spec import available_lines, load_spec
from models.tensorboard_log import tensorboard_dir

log = logging.getLogger("charles.models.report")

INDEX_FILE = "README.md"
ARCHITECTURE_FILE = "architecture.png"
# What the seed page puts between versions (GitHub Markdown keeps <br/>).
_SPACER = "<br/>\n<br/>"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_INLINE_MARKUP = frozenset("\\`*_[]()!|~$")


@dataclass(frozen=True)
class VersionRecord:
    """Everything charles.db knows about one version, as its section needs it."""

    version: ModelVersion
    periods: list[TrainingPeriod]
    moments: list[Moment]
    notes: list[Note]


@dataclass(frozen=True)
class LineRecord:
    """A line's description, notes and versions."""

    line: str
    description: str
    notes: list[Note]
    versions: list[VersionRecord]


@dataclass(frozen=True)
class VersionImages:
    """A version's images in the report folder (file names), or why one is missing."""

    plot: str | None
    plot_missing: str
    chart: str | None


def write_line_report(
    data_dir: str | Path,
    line: str,
    out_dir: str | Path,
    *,
    tz: tzinfo | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
) -> Path:
    """Write `<out_dir>/<line>.md` and its versions' images; return the page's path.

    Raises `ConfigError` for a name that is a version or an unknown line.
    """
    _count_parameters_not_known_yet(data_dir, line)
    record = read_line_record(data_dir, line)
    return _write_line_page(Path(data_dir), record, Path(out_dir), tz, smoothing)


def write_index(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    tz: tzinfo | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
) -> list[Path]:
    """Write the index page and the page of every line that has versions; return their paths.

    The index lists every line (spec files and lines with versions), each
    version with its batches, and the streaming timeline.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    with Registry(data_dir) as registry:
        lines = _known_lines(registry)
    for line in lines:
        _count_parameters_not_known_yet(data_dir, line)
    records = [read_line_record(data_dir, line) for line in lines]
    pages = [
        _write_line_page(data_dir, record, out_dir, tz, smoothing)
        for record in records
        if record.versions
    ]
    index = out_dir / INDEX_FILE
    _write_text(index, _render_index(records, Timeline(data_dir).events(), tz))
    log.info("wrote %s", index)
    return [index, *pages]


def read_line_record(data_dir: str | Path, line: str) -> LineRecord:
    """A line's versions, periods, moments and notes from charles.db; its description from its spec.

    The description is the spec file's, or the newest version's stored spec's
    when the file is gone.
    """
    if is_version_name(line):
        raise UsageError(f"{line!r} is a version; a report is per line: {line.rsplit('_v', 1)[0]}")
    with Registry(data_dir) as registry:
        versions = registry.versions(line)
        periods = {version.name: registry.periods(version.name) for version in versions}
        known = _known_lines(registry)
    if line not in known:
        raise UsageError(f"unknown model line {line!r}; known lines: {', '.join(known) or 'none'}")
    spec = load_spec(line) if line in available_lines() else versions[-1].spec()
    moments, notes = Moments(data_dir), Notes(data_dir)
    return LineRecord(
        line=line,
        description=spec.description,
        notes=notes.list(line),
        versions=[
            VersionRecord(
                version, periods[version.name], moments.list(version.name), notes.list(version.name)
            )
            for version in versions
        ],
    )


def _count_parameters_not_known_yet(data_dir: str | Path, line: str) -> None:
    """Record the counts of the line's versions that no process has built yet.

    The app creates versions without counts (it never loads TensorFlow); this
    process has it loaded for the architecture plots, so a page shows real
    counts even for a version that has not been trained or driven yet.
    """
    with Registry(data_dir) as registry:
        for version in registry.versions(line):
            if version.parameters is None:
                counts = parameter_counts(build_architecture(version.spec()))
                registry.record_parameters(version.name, counts)
                log.info("counted the parameters of %s: %s", version.name, f"{counts.total:,}")


def _known_lines(registry: Registry) -> list[str]:
    """Lines with a spec file, and lines whose versions outlived their file."""
    return sorted(set(available_lines()) | {version.line for version in registry.versions()})


def _write_line_page(
    data_dir: Path, record: LineRecord, out_dir: Path, tz: tzinfo | None, smoothing: float
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        entry.version.name: _version_images(data_dir, entry, out_dir, smoothing)
        for entry in record.versions
    }
    page = out_dir / f"{record.line}.md"
    _write_text(page, _render_line_page(record, images, tz))
    log.info("wrote %s", page)
    return page


def escape_markdown(text: str) -> str:
    """Chat text placed inside a line, shown as written: no links, images, emphasis or HTML.

    `&`, `<` and `>` become entities (no HTML tags or autolinks); the characters
    that open inline Markdown (emphasis, code, links, images, tables, strike-through,
    GitHub's `$` math) get CommonMark's backslash escape. Characters that only mean
    something at the start of a line (`#`, `-`, `1.`) are left alone: this text
    never starts one, since line breaks become spaces.
    """
    escaped = []
    for char in " ".join(text.split()):
        if char in _ENTITIES:
            escaped.append(_ENTITIES[char])
        elif char in _INLINE_MARKUP:
            escaped.append("\\" + char)
        else:
            escaped.append(char)
    return "".join(escaped)


def _version_images(
    data_dir: Path, entry: VersionRecord, out_dir: Path, smoothing: float
) -> VersionImages:
    name = entry.version.name
    plot, plot_missing = None, ""
    try:
        source = _architecture_plot(data_dir, entry.version)
    except GraphvizMissingError as error:
        log.warning("%s: architecture not drawn: %s", name, error)
        plot_missing = "not drawn: Graphviz's `dot` is not installed"
    else:
        plot = f"{name}.plot.png"
        shutil.copyfile(source, out_dir / plot)
    curves = read_loss_curves(tensorboard_dir(data_dir, name))
    chart = None
    if curves:
        chart = f"{name}.tb.png"
        streamed = [(p.start_batch, p.end_batch) for p in entry.periods if p.streamed]
        draw_loss_chart(curves, out_dir / chart, title=name, streamed=streamed, smoothing=smoothing)
    return VersionImages(plot, plot_missing, chart)


def _architecture_plot(data_dir: Path, version: ModelVersion) -> Path:
    """The version's architecture PNG, drawn from its stored spec the first time it is asked for."""
    path = version_dir(data_dir, version.name) / ARCHITECTURE_FILE
    if path.is_file():
        return path
    # plot_architecture picks the format from the extension: the partial file keeps ".png".
    partial = path.with_name(f".{path.stem}-{os.getpid()}{path.suffix}")
    # Unnamed layers (Xception's `add`s) are numbered per session: a fresh one names them
    # as a fresh process would, whichever versions were drawn before.
    keras.utils.clear_session()
    plot_architecture(build_architecture(version.spec()), partial)
    partial.replace(path)
    log.info("drew the architecture of %s to %s", version.name, path)
    return path


def _render_line_page(
    record: LineRecord, images: dict[str, VersionImages], tz: tzinfo | None
) -> str:
    parts = [f"<< [Back]({INDEX_FILE})", f"# {record.line}"]
    if record.description:
        parts.append(record.description)
    parts += [note.text for note in record.notes]
    if record.versions:
        parts.append(
            "## List of the models:\n"
            + "\n".join(f"- [`{v.version.name}`](#{v.version.name})" for v in record.versions)
        )
        for entry in record.versions:
            parts += [_SPACER, _render_version(entry, images[entry.version.name], tz)]
    else:
        parts.append(f"No versions yet (create one: `charles-stream models new {record.line}`).")
    return "\n\n".join(parts) + "\n"


def _render_version(entry: VersionRecord, images: VersionImages, tz: tzinfo | None) -> str:
    version = entry.version
    periods = ", ".join(_period_text(period, tz) for period in entry.periods) or "none yet"
    architecture = f"![{version.name}.plot]({images.plot})" if images.plot else images.plot_missing
    chart = f"![{version.name}.tb]({images.chart})" if images.chart else "none written yet"
    parts = [
        f"## {version.name}",
        f"Training periods: {periods}  \nTraining batches (total): *{version.batches_trained}*",
        f"*Model summary:*  \n{_summary_text(version)}",
        f"*Model architecture:*  \n{architecture}",
        f"*Tensorboard logs:*  \n{chart}",
    ]
    parts += [note.text for note in entry.notes]
    if entry.moments:
        parts.append(
            "*Tagged moments:*\n\n" + "\n".join(_moment_text(m, tz) for m in entry.moments)
        )
    return "\n\n".join(parts)


def _summary_text(version: ModelVersion) -> str:
    counts = version.parameters
    if counts is None:
        # The app created the version and no process has built its model yet.
        return (
            "Parameters not counted yet (they are recorded when the trainer or driver "
            f"first builds the model, or by `charles-stream models summary {version.name}`)."
        )
    return (
        f"- Total params: `{counts.total:,}`\n"
        f"- Trainable params: `{counts.trainable:,}`\n"
        f"- Non-trainable params: `{counts.non_trainable:,}`"
    )


def _render_index(records: list[LineRecord], events: list[TimelineEvent], tz: tzinfo | None) -> str:
    lines = ["# Model lines", ""]
    for record in records:
        about = f": {record.description}" if record.description else ""
        if not record.versions:
            lines.append(f"- `{record.line}`{about} (no versions yet)")
            continue
        page = f"{record.line}.md"
        lines.append(f"- [`{record.line}`]({page}){about}")
        for entry in record.versions:
            name = entry.version.name
            lines.append(
                f"  - [`{name}`]({page}#{name}): batches: *{entry.version.batches_trained}*, "
                f"{_trained_how(entry.periods)}"
            )
    return "\n".join(lines) + f"\n\n{_SPACER}\n\n" + render_markdown(events, tz)


def _trained_how(periods: list[TrainingPeriod]) -> str:
    if not periods:
        return "not trained yet"
    if any(period.streamed for period in periods):
        return "streamed"
    return "off-stream"


def _period_text(period: TrainingPeriod, tz: tzinfo | None) -> str:
    kind = "streamed" if period.streamed else "off-stream"
    batches = f"*{period.start_batch}-{period.end_batch}*"
    if period.ended is None:
        since = _date_range(period.started, period.started, tz)
        return f"`since {since}` (batches: {batches} so far, {kind})"
    return f"`{_date_range(period.started, period.ended, tz)}` (batches: {batches}, {kind})"


def _moment_text(moment: Moment, tz: tzinfo | None) -> str:
    at = moment.at.astimezone(tz)
    about = [f"tagged by {escape_markdown(moment.user)}"]
    if moment.name:
        about.insert(0, escape_markdown(f"!{moment.name}"))
    text = (
        f"- **{_month_day(at)}, {at.year} {at:%H:%M}**, batch: *{moment.batch}*: "
        f"{escape_markdown(moment.note)} ({', '.join(about)})"
    )
    if moment.replay:
        # The file's name only: the folder is a path on the streaming machine (Windows or not).
        text += f", replay: {escape_markdown(PureWindowsPath(moment.replay).name)}"
    return text


def _date_range(start: datetime, end: datetime, tz: tzinfo | None) -> str:
    """The seed's date form, with the year: "May 2nd-7th, 2026", "April 30th-May 1st, 2026"."""
    first, last = start.astimezone(tz), end.astimezone(tz)
    if first.date() == last.date():
        return f"{_month_day(first)}, {first.year}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{_month_day(first)}-{_ordinal(last.day)}, {first.year}"
    if first.year == last.year:
        return f"{_month_day(first)}-{_month_day(last)}, {first.year}"
    return f"{_month_day(first)}, {first.year}-{_month_day(last)}, {last.year}"


def _month_day(at: datetime) -> str:
    return f"{at:%B} {_ordinal(at.day)}"


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
