"""The app's one SQLite file, `<data_dir>/charles.db`, and how each part adds its tables.

Example::

    from engine.core import db

    MIGRATIONS = (
        ("CREATE TABLE moments (id INTEGER PRIMARY KEY, at TEXT NOT NULL, note TEXT)",),
        ("ALTER TABLE moments ADD COLUMN clip_url TEXT",),
    )
    connection = db.connect(db.db_path("data"))
    db.migrate(connection, "moments", MIGRATIONS)
    with db.transaction(connection):
        connection.execute("INSERT INTO moments (at, note) VALUES (?, ?)", (now, "!water"))

Each part of the app (model registry, timeline, moments, votes) owns a *component*
and an append-only tuple of migrations, each migration a tuple of SQL statements.
`migrate` applies the ones a database has not seen yet and records how far it got in
`schema_versions`, so parts evolve their tables independently and an old database
upgrades in place. Never edit a shipped migration; append a new one.

The file runs in WAL mode: the trainer, the driver and the app read and write it
from separate processes, and WAL lets readers go on while one process writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DB_FILENAME = "charles.db"
# Seconds a writer waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 10.0

Migration = tuple[str, ...]


class DatabaseError(RuntimeError):
    """charles.db cannot be used as it is (e.g. written by a newer charles-stream)."""


def db_path(data_dir: str | Path) -> Path:
    """Where charles.db lives for a data directory (config `[app] data_dir` or `--data`)."""
    return Path(data_dir) / DB_FILENAME


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite file in WAL mode, with rows readable by column name.

    The connection is in autocommit mode; group writes with `transaction` so a
    crash never leaves half of them behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"{path}: cannot open as a SQLite database: {error}") from None
    # NORMAL is durable across a crash of any process in WAL mode; only power loss may
    # drop the last commits, which costs a few batches' records at most.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.row_factory = sqlite3.Row
    return connection


@contextmanager
def opened(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A connection for one short piece of work, closed afterwards.

    Parts the app calls now and then (timeline, moments) use it rather than
    holding a handle, so other processes write the same file freely meanwhile.
    """
    connection = connect(path)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block as one write transaction: all of it is committed, or none of it.

    BEGIN IMMEDIATE takes the write lock up front, so two processes that read
    then write (e.g. "next version number") cannot interleave.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def migrate(connection: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Apply the migrations of `component` that this database lacks; return its schema version."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    with transaction(connection):
        row = connection.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (component,)
        ).fetchone()
        applied = row["version"] if row else 0
        if applied > len(migrations):
            raise DatabaseError(
                f"charles.db has '{component}' at schema version {applied}, but this "
                f"charles-stream knows versions up to {len(migrations)}; upgrade charles-stream"
            )
        for statements in migrations[applied:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, len(migrations)),
        )
    return len(migrations)
