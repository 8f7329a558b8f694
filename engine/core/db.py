"""The app's SQLite files (`<data_dir>/charles.db`, `samples.db`) and how each part adds tables.

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

Other SQLite files use the same layer: `engine.data.storage` keeps the sample
buffers in `samples.db` (its own file, so megabytes of JPEG blobs written many
times a second never hold charles.db's write lock) with `connect(path,
shared_between_threads=True, rows_by_name=False)` and its own migrations.

A migration may rebuild a table (SQLite's way to change a column: create the new
table, copy the rows, drop the old one, rename the new one). `migrate` runs
migrations with foreign keys off, as SQLite's documentation prescribes for that,
and checks every reference before it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from engine.core.errors import CharlesError

DB_FILENAME = "charles.db"
# Seconds a writer waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 10.0

Migration = tuple[str, ...]


class DatabaseError(CharlesError):
    """charles.db cannot be used as it is (e.g. written by a newer charles-stream)."""


def db_path(data_dir: str | Path) -> Path:
    """Where charles.db lives for a data directory (config `[app] data_dir` or `--data`)."""
    return Path(data_dir) / DB_FILENAME


def connect(
    path: str | Path,
    *,
    shared_between_threads: bool = False,
    rows_by_name: bool = True,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    page_size: int | None = None,
) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite file in WAL mode, with rows readable by column name.

    The connection is in autocommit mode; group writes with `transaction` so a
    crash never leaves half of them behind. `shared_between_threads` lets
    several threads use it (the caller serialises them, e.g. with a lock);
    `rows_by_name=False` returns plain tuples, for readers of many thousands of
    rows where `sqlite3.Row` costs time; `busy_timeout_s` is how long a writer
    waits for another process's write; `page_size` (bytes, a power of two from 512
    to 65536) applies to a file created by this call only: SQLite fixes a file's page
    size when it first writes it, and a WAL file cannot change it later.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(
            path,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=not shared_between_threads,
        )
        if page_size is not None:
            connection.execute(f"PRAGMA page_size={int(page_size)}")
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"{path}: cannot open as a SQLite database: {error}") from None
    # NORMAL is durable across a crash of any process in WAL mode; only power loss may
    # drop the last commits, which costs a few batches' records at most.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    if rows_by_name:
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
    """Apply the migrations of `component` that this database lacks; return its schema version.

    All of them run in one transaction, with foreign keys off so that a
    migration can rebuild a table others refer to; a reference left dangling
    rolls the whole upgrade back, and the file stays as it was.
    """
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    # The pragma is a no-op inside a transaction, so it is switched around it.
    (foreign_keys,) = connection.execute("PRAGMA foreign_keys").fetchone()
    connection.execute("PRAGMA foreign_keys=OFF")
    try:
        with transaction(connection):
            _apply(connection, component, migrations)
    finally:
        connection.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    return len(migrations)


def _apply(connection: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> None:
    row = connection.execute(
        "SELECT version FROM schema_versions WHERE component = ?", (component,)
    ).fetchone()
    applied = row[0] if row else 0
    if applied > len(migrations):
        raise DatabaseError(
            f"{_file_name(connection)} has '{component}' at schema version {applied}, but this "
            f"charles-stream knows versions up to {len(migrations)}; upgrade charles-stream"
        )
    for statements in migrations[applied:]:
        for statement in statements:
            connection.execute(statement)
    if applied < len(migrations):
        dangling = connection.execute("PRAGMA foreign_key_check").fetchall()
        if dangling:
            raise DatabaseError(
                f"{_file_name(connection)}: migrating '{component}' to version "
                f"{len(migrations)} would leave {len(dangling)} dangling references "
                f"(first in table {dangling[0][0]!r}); nothing was changed"
            )
    connection.execute(
        "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
        " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        (component, len(migrations)),
    )


def _file_name(connection: sqlite3.Connection) -> str:
    """The main database's file name, for messages (charles.db, samples.db)."""
    for _, name, file in connection.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).name
    return "the database"
