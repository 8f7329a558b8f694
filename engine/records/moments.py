"""Tagged moments of the stream: when, who, which model at which batch, and a note.

Example::

    moments = Moments("data")
    moment = moments.tag(version="model_0000_demo_v1", batch=1200, note="water", user="viewer42")
    moments.set_replay(moment.id, "replays/2026-11-26 01-02-03.mkv")   # when OBS saved one
    moments.list(version="model_0000_demo_v1")

Chat (`!tag`, named moments like `!water`) and `POST /api/tag` tag moments; the
model line's report lists them per version, as the reference's page listed its
clips. Rows live in `<data_dir>/charles.db` next to the timeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.core import db

log = logging.getLogger("charles.moments")

COMPONENT = "moments"
MIGRATIONS: tuple[db.Migration, ...] = (
    (
        """CREATE TABLE moments (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            version TEXT NOT NULL,
            batch INTEGER NOT NULL CHECK (batch >= 0),
            name TEXT,
            note TEXT NOT NULL,
            replay TEXT
        )""",
    ),
)

# A note longer than this is cut: it has to fit an overlay alert and a report line.
MAX_NOTE_CHARS = 200


@dataclass(frozen=True)
class Moment:
    """One tagged moment; `name` is set for named moments (e.g. "water"), `replay` once saved."""

    id: int
    at: datetime
    user: str
    version: str
    batch: int
    note: str
    name: str | None = None
    replay: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain JSON form (API replies, reports)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "user": self.user,
            "version": self.version,
            "batch": self.batch,
            "name": self.name,
            "note": self.note,
            "replay": self.replay,
        }


class Moments:
    """The moments table; each call opens and closes its own short connection."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = db.db_path(data_dir)
        with db.opened(self.path) as connection:
            db.migrate(connection, COMPONENT, MIGRATIONS)

    def tag(
        self, *, version: str, batch: int, note: str, user: str, name: str | None = None
    ) -> Moment:
        """Store a moment now; the note is stripped and cut to MAX_NOTE_CHARS."""
        if batch < 0:
            raise ValueError(f"batch must be >= 0, got {batch}")
        note = " ".join(note.split())[:MAX_NOTE_CHARS]
        at = datetime.now(UTC)
        with db.opened(self.path) as connection, db.transaction(connection):
            cursor = connection.execute(
                "INSERT INTO moments (at, user, version, batch, name, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (at.isoformat(), user, version, batch, name, note),
            )
        moment = Moment(cursor.lastrowid, at, user, version, batch, note, name)
        log.info("moment %d tagged by %s: %s (%s, batch %d)", moment.id, user, note, version, batch)
        return moment

    def set_replay(self, moment_id: int, path: str) -> None:
        """Remember the replay file OBS saved for a moment."""
        with db.opened(self.path) as connection, db.transaction(connection):
            connection.execute("UPDATE moments SET replay = ? WHERE id = ?", (path, moment_id))

    def list(self, version: str | None = None) -> list[Moment]:
        """Moments oldest first, of one version or of all."""
        query = "SELECT * FROM moments"
        parameters: tuple[str, ...] = ()
        if version is not None:
            query += " WHERE version = ?"
            parameters = (version,)
        with db.opened(self.path) as connection:
            rows = connection.execute(query + " ORDER BY id", parameters).fetchall()
        return [
            Moment(
                id=row["id"],
                at=datetime.fromisoformat(row["at"]),
                user=row["user"],
                version=row["version"],
                batch=row["batch"],
                note=row["note"],
                name=row["name"],
                replay=row["replay"],
            )
            for row in rows
        ]
