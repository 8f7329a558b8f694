"""Free-text notes about model versions and lines, kept in `<data_dir>/charles.db`; no TensorFlow.

Example::

    notes = Notes("data")
    note = notes.add("model_0003_xception_v2",
                     "Despite being identical to the above model, it did not learn the same.")
    notes.list("model_0003_xception_v2")      # [Note(id=1, ..., text='Despite being ...')]
    notes.remove(note.id)

    charles-stream models note model_0003_xception_v2 "Despite being identical ..."

The seed page's paragraphs under each version ("This is the first streamed
model.", why training stopped, what was learnt) are what nothing else records:
the operator writes them, the model page (`models/report.py`) prints them in
order under the version's charts. A note on a line goes under the line's
description. Notes are Markdown written by the operator, so the page prints
them as they are (links, emphasis); text from chat never becomes a note.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.core import db
from engine.core.errors import UsageError
from models.registry import Registry, is_version_name
from models.spec import available_lines

log = logging.getLogger("charles.models.notes")

COMPONENT = "notes"
MIGRATIONS: tuple[db.Migration, ...] = (
    (
        """CREATE TABLE notes (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL CHECK (length(text) > 0)
        )""",
        "CREATE INDEX notes_by_subject ON notes (subject, id)",
    ),
)


@dataclass(frozen=True)
class Note:
    """One note; `subject` is the version (`LINE_vN`) or line it is about."""

    id: int
    at: datetime
    subject: str
    text: str

    def as_dict(self) -> dict[str, object]:
        """Plain JSON form (`models note NAME --json`)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "subject": self.subject,
            "text": self.text,
        }


class Notes:
    """The notes table; each call opens and closes its own short connection."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = db.db_path(data_dir)
        with db.opened(self.path) as connection:
            db.migrate(connection, COMPONENT, MIGRATIONS)

    def add(self, subject: str, text: str) -> Note:
        """Store a note about a version or line that exists; `ConfigError` for anything else.

        Leading and trailing blank space is dropped; blank lines inside stay, so a
        note can hold several paragraphs.
        """
        self.check_subject(subject)
        text = text.strip()
        if not text:
            raise UsageError(f"the note for {subject} is empty; accepted: some text")
        at = datetime.now(UTC)
        with db.opened(self.path) as connection, db.transaction(connection):
            cursor = connection.execute(
                "INSERT INTO notes (at, subject, text) VALUES (?, ?, ?)",
                (at.isoformat(), subject, text),
            )
        note = Note(cursor.lastrowid, at, subject, text)
        log.info("note %d added to %s", note.id, subject)
        return note

    def list(self, subject: str | None = None) -> list[Note]:
        """Notes oldest first, about one version or line, or all of them."""
        query = "SELECT * FROM notes"
        parameters: tuple[str, ...] = ()
        if subject is not None:
            query += " WHERE subject = ?"
            parameters = (subject,)
        with db.opened(self.path) as connection:
            rows = connection.execute(query + " ORDER BY id", parameters).fetchall()
        return [_note(row) for row in rows]

    def remove(self, note_id: int, subject: str) -> Note:
        """Delete note `note_id` of `subject`; `ConfigError` naming the subject's notes otherwise.

        The subject must match so a mistyped id cannot delete another version's note.
        """
        with db.opened(self.path) as connection, db.transaction(connection):
            row = connection.execute(
                "SELECT * FROM notes WHERE id = ? AND subject = ?", (note_id, subject)
            ).fetchone()
            if row is None:
                ids = [
                    str(other["id"])
                    for other in connection.execute(
                        "SELECT id FROM notes WHERE subject = ? ORDER BY id", (subject,)
                    )
                ]
                raise UsageError(
                    f"{subject} has no note {note_id}; its notes: {', '.join(ids) or 'none'}"
                )
            connection.execute("DELETE FROM notes WHERE id = ?", (note_id,))
        log.info("note %d of %s removed", note_id, subject)
        return _note(row)

    def check_subject(self, subject: str) -> None:
        """`ConfigError` unless `subject` is a registered version or a known line."""
        with Registry(self.data_dir) as registry:
            if is_version_name(subject):
                registry.version(subject)  # raises, listing the line's versions
                return
            lines = set(available_lines()) | {version.line for version in registry.versions()}
        if subject not in lines:
            raise UsageError(
                f"{subject!r} is neither a model version nor a line; lines: "
                f"{', '.join(sorted(lines)) or 'none'} (versions look like LINE_v1)"
            )


def _note(row: sqlite3.Row) -> Note:
    return Note(
        id=row["id"], at=datetime.fromisoformat(row["at"]), subject=row["subject"], text=row["text"]
    )
