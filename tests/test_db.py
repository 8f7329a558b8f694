"""charles.db: one SQLite file in WAL mode, each part migrating its own tables forward."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from engine.core import db

NOTES_V1 = (("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",),)
NOTES_V2 = (*NOTES_V1, ("ALTER TABLE notes ADD COLUMN author TEXT",))


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row["name"] for row in connection.execute(f"PRAGMA table_info({table})")]


def test_the_database_runs_in_wal_mode(tmp_path):
    connection = db.connect(db.db_path(tmp_path / "data"))
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "data" / "charles.db").exists()


def test_migrations_apply_once(tmp_path):
    connection = db.connect(tmp_path / "charles.db")
    assert db.migrate(connection, "notes", NOTES_V1) == 1
    connection.execute("INSERT INTO notes (text) VALUES ('kept')")
    assert db.migrate(connection, "notes", NOTES_V1) == 1
    assert connection.execute("SELECT text FROM notes").fetchall()[0]["text"] == "kept"


def test_an_appended_migration_upgrades_an_existing_database_in_place(tmp_path):
    path = tmp_path / "charles.db"
    db.migrate(db.connect(path), "notes", NOTES_V1)
    upgraded = db.connect(path)
    assert db.migrate(upgraded, "notes", NOTES_V2) == 2
    assert columns(upgraded, "notes") == ["id", "text", "author"]


def test_components_migrate_independently(tmp_path):
    connection = db.connect(tmp_path / "charles.db")
    db.migrate(connection, "notes", NOTES_V2)
    db.migrate(connection, "votes", (("CREATE TABLE votes (id INTEGER PRIMARY KEY)",),))
    versions = dict(connection.execute("SELECT component, version FROM schema_versions"))
    assert versions == {"notes": 2, "votes": 1}


def test_a_database_from_newer_code_is_refused(tmp_path):
    path = tmp_path / "charles.db"
    db.migrate(db.connect(path), "notes", NOTES_V2)
    with pytest.raises(db.DatabaseError, match=r"'notes' at schema version 2.*up to 1"):
        db.migrate(db.connect(path), "notes", NOTES_V1)


def test_a_failing_transaction_leaves_nothing_behind(tmp_path):
    connection = db.connect(tmp_path / "charles.db")
    db.migrate(connection, "notes", NOTES_V1)
    with pytest.raises(sqlite3.IntegrityError), db.transaction(connection):
        connection.execute("INSERT INTO notes (text) VALUES ('half')")
        connection.execute("INSERT INTO notes (text) VALUES (NULL)")
    assert connection.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "charles.db"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(db.DatabaseError, match=f"{path}: cannot open"):
        db.connect(path)


AUTHORS_V1 = (
    (
        "CREATE TABLE authors (name TEXT PRIMARY KEY, age INTEGER NOT NULL)",
        "CREATE TABLE books (id INTEGER PRIMARY KEY, author TEXT REFERENCES authors (name))",
    ),
)
# SQLite's way to drop NOT NULL: rebuild the table that `books` refers to.
AUTHORS_V2 = (
    *AUTHORS_V1,
    (
        "CREATE TABLE authors_new (name TEXT PRIMARY KEY, age INTEGER)",
        "INSERT INTO authors_new SELECT name, age FROM authors",
        "DROP TABLE authors",
        "ALTER TABLE authors_new RENAME TO authors",
    ),
)


def test_a_migration_may_rebuild_a_table_that_others_refer_to(tmp_path):
    path = tmp_path / "charles.db"
    connection = db.connect(path)
    db.migrate(connection, "authors", AUTHORS_V1)
    connection.execute("INSERT INTO authors VALUES ('ada', 36)")
    connection.execute("INSERT INTO books (author) VALUES ('ada')")
    upgraded = db.connect(path)
    assert db.migrate(upgraded, "authors", AUTHORS_V2) == 2
    upgraded.execute("INSERT INTO authors VALUES ('anonymous', NULL)")
    assert upgraded.execute("SELECT author FROM books").fetchone()["author"] == "ada"
    assert upgraded.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        upgraded.execute("INSERT INTO books (author) VALUES ('nobody')")


def test_a_migration_that_leaves_dangling_references_changes_nothing(tmp_path):
    connection = db.connect(tmp_path / "charles.db")
    db.migrate(connection, "authors", AUTHORS_V1)
    connection.execute("INSERT INTO authors VALUES ('ada', 36)")
    connection.execute("INSERT INTO books (author) VALUES ('ada')")
    losing_rows = (*AUTHORS_V1, ("DELETE FROM authors",))
    with pytest.raises(db.DatabaseError, match=r"1 dangling references.*'books'"):
        db.migrate(connection, "authors", losing_rows)
    assert connection.execute("SELECT COUNT(*) FROM authors").fetchone()[0] == 1
    (version,) = connection.execute("SELECT version FROM schema_versions").fetchone()
    assert version == 1


def test_another_file_can_be_shared_between_threads_with_plain_tuple_rows(tmp_path):
    connection = db.connect(
        tmp_path / "samples.db", shared_between_threads=True, rows_by_name=False
    )
    db.migrate(connection, "notes", NOTES_V1)
    connection.execute("INSERT INTO notes (text) VALUES ('kept')")
    rows = []
    reader = threading.Thread(
        target=lambda: rows.extend(connection.execute("SELECT id, text FROM notes"))
    )
    reader.start()
    reader.join()
    assert rows == [(1, "kept")]
