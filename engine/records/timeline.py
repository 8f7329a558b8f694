"""The streaming timeline: which version was streamed when, from which batch; no TensorFlow.

Example::

    version, batch, how = resolve_stream_model("data", "model_0000_demo")   # a line or a version
    timeline = Timeline("data")
    timeline.started(version, batch, how)     # "started streaming ... from batch N (how)"
    ...
    timeline.stopped(version, batch=1500)     # "stopped streaming ... at batch 1500"
    print(render_markdown(timeline.events()))

The app records a row whenever the streamed version changes (start, switch,
stop) in `<data_dir>/charles.db`; `charles-stream timeline` prints them, and
the Markdown form reads like the reference's "Streaming timeline": one
heading per day, one line per event. The versions' training periods are the
trainer's to record (`models.registry`); this is the stream's side of it.

`resolve_stream_model` turns the `[stream] model` setting (or a chat/API switch)
into a version: a line means its newest version, created as `LINE_v1` when the
line has none; `new=True` creates the line's next version. The app imports
this module, so it reads the registry and lists checkpoints but never builds a
model: a new version's parameter counts come from a version of the same line
with the same spec, else from a short `charles-stream models summary`
subprocess.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal

from engine.core import db
from engine.core.errors import ConfigError
from models.checkpoints import list_checkpoints
from models.registry import VERSION_NAME, ModelVersion, Registry, version_dir
from models.spec import ParameterCounts, spec_path

log = logging.getLogger("charles.timeline")

How = Literal["from scratch", "continuing training", "pre-trained off-stream"]
EventKind = Literal["started", "stopped"]

COMPONENT = "timeline"
MIGRATIONS: tuple[db.Migration, ...] = (
    (
        """CREATE TABLE timeline_events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('started', 'stopped')),
            version TEXT NOT NULL,
            batch INTEGER NOT NULL CHECK (batch >= 0),
            how TEXT
        )""",
    ),
)

# Counting a big line's parameters means building it: TensorFlow start-up plus the model.
_COUNT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class TimelineEvent:
    """One row of the timeline: a version started (with how) or stopped streaming, at a batch."""

    at: datetime
    kind: EventKind
    version: str
    batch: int
    how: How | None = None

    def describe(self) -> str:
        """The event as the timeline's sentence."""
        if self.kind == "started":
            return f"started streaming {self.version} from batch {self.batch:,} ({self.how})"
        return f"stopped streaming {self.version} at batch {self.batch:,}"

    def as_dict(self) -> dict[str, object]:
        """Plain JSON form (`charles-stream timeline --json`)."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "version": self.version,
            "batch": self.batch,
            "how": self.how,
            "text": self.describe(),
        }


class Timeline:
    """The timeline rows in `<data_dir>/charles.db`; each call opens and closes its connection.

    Short-lived connections keep the app's event loop free of a long-held
    SQLite handle and let other processes write the same file meanwhile.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.path = db.db_path(data_dir)
        with db.opened(self.path) as connection:
            db.migrate(connection, COMPONENT, MIGRATIONS)

    def started(self, version: str, batch: int, how: How) -> None:
        """Record that `version` went on stream at `batch`."""
        self._add("started", version, batch, how)

    def stopped(self, version: str, batch: int) -> None:
        """Record that `version` went off stream at `batch`."""
        self._add("stopped", version, batch, None)

    def events(self) -> list[TimelineEvent]:
        """Every event, oldest first."""
        with db.opened(self.path) as connection:
            rows = connection.execute(
                "SELECT at, kind, version, batch, how FROM timeline_events ORDER BY id"
            ).fetchall()
        return [
            TimelineEvent(
                at=datetime.fromisoformat(row["at"]),
                kind=row["kind"],
                version=row["version"],
                batch=row["batch"],
                how=row["how"],
            )
            for row in rows
        ]

    def _add(self, kind: EventKind, version: str, batch: int, how: How | None) -> None:
        if batch < 0:
            raise ValueError(f"batch must be >= 0, got {batch}")
        event = TimelineEvent(datetime.now(UTC), kind, version, batch, how)
        with db.opened(self.path) as connection, db.transaction(connection):
            connection.execute(
                "INSERT INTO timeline_events (at, kind, version, batch, how)"
                " VALUES (?, ?, ?, ?, ?)",
                (event.at.isoformat(), kind, version, batch, how),
            )
        log.info("timeline: %s", event.describe())


def resolve_stream_model(
    data_dir: str | Path, model: str, *, new: bool = False
) -> tuple[str, int, How]:
    """A line or version to stream -> (version, batches already trained, how it starts).

    A line means its newest version (`LINE_v1` is created when it has none);
    `new=True` creates the next version of the line (of a version's line).
    The batch is the newest checkpoint's, where a trainer resumes. Raises
    `ConfigError` for an unknown line or version, naming what exists.
    """
    match = VERSION_NAME.match(model)
    line = match["line"] if match else model
    with Registry(data_dir) as registry:
        if match and not new:
            version = registry.version(model)
        else:
            versions = registry.versions(line)
            version = (
                versions[-1] if versions and not new else _create_version(registry, line, versions)
            )
        periods = registry.periods(version.name)
    checkpoints = list_checkpoints(version_dir(data_dir, version.name))
    batch = checkpoints[-1].batch if checkpoints else 0
    how: How
    if batch == 0:
        how = "from scratch"
    elif periods and periods[-1].streamed:
        how = "continuing training"
    else:
        how = "pre-trained off-stream"
    return version.name, batch, how


def render_markdown(events: Iterable[TimelineEvent], tz: tzinfo | None = None) -> str:
    """The timeline as Markdown: a `### Month Dayth, Year` heading per day, a line per event.

    Times are shown in `tz` (default: this machine's local time zone).
    """
    lines = ["## Streaming timeline", ""]
    day = None
    for event in events:
        at = event.at.astimezone(tz)
        if at.date() != day:
            if day is not None:
                lines.append("")
            day = at.date()
            lines += [f"### {_day_heading(at)}", ""]
        lines.append(f"- {at:%H:%M}: {event.describe()}")
    if day is None:
        lines.append("Nothing streamed yet.")
    return "\n".join(lines) + "\n"


def _create_version(registry: Registry, line: str, existing: list[ModelVersion]) -> ModelVersion:
    """Register the line's next version with its spec file as it is now."""
    spec_toml = spec_path(line).read_text(encoding="utf-8")
    same_spec = [v for v in existing if v.spec_toml == spec_toml]
    counts = same_spec[-1].parameters if same_spec else _count_parameters(line)
    version = registry.create_version(line, spec_toml=spec_toml, parameters=counts)
    log.info("created %s (%s parameters)", version.name, f"{counts.total:,}")
    return version


def _count_parameters(line: str) -> ParameterCounts:
    """The line's parameter counts from `charles-stream models summary LINE --json`.

    A child process builds the model, so TensorFlow never loads in the app.
    """
    command = [
        sys.executable, "-m", "engine.cli", "--log-level", "ERROR",
        "models", "summary", line, "--json",
    ]  # fmt: skip
    what = f"`charles-stream models summary {line} --json`"
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_COUNT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"cannot create a version of {line!r}: {what} took over {_COUNT_TIMEOUT_S:g} s"
        ) from None
    try:
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        return ParameterCounts(counts["total"], counts["trainable"], counts["non_trainable"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"cannot create a version of {line!r}: {what} exited {done.returncode} without "
            f"parameter counts; it said: {done.stderr.strip()[-500:] or done.stdout.strip()!r}"
        ) from None


def _day_heading(at: datetime) -> str:
    day = at.day
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{at:%B} {day}{suffix}, {at.year}"
