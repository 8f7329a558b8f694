"""The streaming timeline: which version was streamed when, from which batch; no TensorFlow.

Example::

    timeline = Timeline("data")
    timeline.started("model_0000_demo_v1", 0, "from scratch")  # "started streaming ... (how)"
    ...
    timeline.stopped("model_0000_demo_v1", batch=1500)   # "stopped streaming ... at batch 1500"
    print(render_markdown(timeline.events()))

The app records a row whenever the streamed version changes (start, switch,
stop) in `<data_dir>/charles.db`; `charles-stream timeline` prints them, and
the Markdown form reads like the reference's "Streaming timeline": one
heading per day, one line per event. The versions' training periods are the
trainer's to record (`models.registry`); which version a stream puts on, and
from which batch, is `models.versions.resolve_stream_model`'s to say. This is
the stream's side of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal

from engine.core import db

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


def _day_heading(at: datetime) -> str:
    day = at.day
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{at:%B} {day}{suffix}, {at.year}"
