"""Model versions and their training periods, kept in `<data_dir>/charles.db`; no TensorFlow.

Example::

    from models.registry import Registry
    with Registry("data") as registry:
        version = registry.create_version("model_0003_xception", spec_toml=text)
        version.name                                     # 'model_0003_xception_v1'
        version.parameters                               # None: not counted yet
        registry.record_parameters(version.name, counts) # by whoever builds the model first
        period = registry.open_period(version.name, streamed=True, start_batch=0)
        registry.record_batches(period.id, 500)          # as training goes
        registry.close_period(period.id)                 # on shutdown
        registry.periods(version.name)                   # [TrainingPeriod(... 0 -> 500, streamed)]

A *line* is a spec file (`models/<line>.toml`); a *version* (`<line>_v<N>`) is one
model trained from that spec, numbered from 1 per line. A version stores a copy of
its spec as it was when created, so editing the line's file later never changes
what an existing version is. A *training period* is one stretch of training of a
version (start/end time, start/end batch, streamed or off-stream), like the seed
page's "May 2nd-7th (batches: 24500-162650, streamed)".

The trainer opens a period when it starts, records the batch counter as it goes
and closes the period when it stops. A trainer that dies without closing leaves
its period open; the next `open_period` of that version closes it at the last
batch and time it recorded.

A version's parameter counts may be unknown (NULL) for a while: counting means
building the model, which needs TensorFlow, and the app (which creates versions
when a stream switches to a line) never loads it. `models.versions` explains who
records them and when.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from engine.core import db
from engine.core.errors import UsageError
from models.spec import ModelSpec, ParameterCounts, parse_spec

COMPONENT = "models"
MIGRATIONS: tuple[db.Migration, ...] = (
    (
        """CREATE TABLE model_versions (
            name TEXT PRIMARY KEY,
            line TEXT NOT NULL,
            number INTEGER NOT NULL CHECK (number >= 1),
            created TEXT NOT NULL,
            batches_trained INTEGER NOT NULL DEFAULT 0,
            params_total INTEGER NOT NULL,
            params_trainable INTEGER NOT NULL,
            params_non_trainable INTEGER NOT NULL,
            spec_toml TEXT NOT NULL,
            UNIQUE (line, number)
        )""",
        """CREATE TABLE training_periods (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL REFERENCES model_versions (name),
            started TEXT NOT NULL,
            ended TEXT,
            last_recorded TEXT NOT NULL,
            start_batch INTEGER NOT NULL,
            end_batch INTEGER NOT NULL,
            streamed INTEGER NOT NULL CHECK (streamed IN (0, 1))
        )""",
        "CREATE INDEX training_periods_by_version ON training_periods (version, id)",
    ),
    # Parameter counts may be unknown until a process that builds the model records them.
    # SQLite cannot drop NOT NULL in place: rebuild the table (db.migrate allows it).
    (
        """CREATE TABLE model_versions_new (
            name TEXT PRIMARY KEY,
            line TEXT NOT NULL,
            number INTEGER NOT NULL CHECK (number >= 1),
            created TEXT NOT NULL,
            batches_trained INTEGER NOT NULL DEFAULT 0,
            params_total INTEGER,
            params_trainable INTEGER,
            params_non_trainable INTEGER,
            spec_toml TEXT NOT NULL,
            UNIQUE (line, number),
            CHECK ((params_total IS NULL) = (params_trainable IS NULL)
                AND (params_total IS NULL) = (params_non_trainable IS NULL))
        )""",
        """INSERT INTO model_versions_new (name, line, number, created, batches_trained,
            params_total, params_trainable, params_non_trainable, spec_toml)
            SELECT name, line, number, created, batches_trained,
            params_total, params_trainable, params_non_trainable, spec_toml
            FROM model_versions""",
        "DROP TABLE model_versions",
        "ALTER TABLE model_versions_new RENAME TO model_versions",
    ),
)

VERSION_NAME = re.compile(r"^(?P<line>[a-z][a-z0-9_]*)_v(?P<number>[1-9][0-9]*)$")


@dataclass(frozen=True)
class ModelVersion:
    """One trained (or to-be-trained) model of a line."""

    name: str
    line: str
    number: int
    created: datetime
    batches_trained: int
    parameters: ParameterCounts | None  # None until a process that builds the model counts it
    spec_toml: str

    def spec(self) -> ModelSpec:
        """The spec this version was created from (its stored copy, not today's file)."""
        return parse_spec(self.spec_toml, line=self.line, source=f"charles.db version {self.name}")


@dataclass(frozen=True)
class TrainingPeriod:
    """One stretch of training of a version; `ended` is None while it runs."""

    id: int
    version: str
    started: datetime
    ended: datetime | None
    start_batch: int
    end_batch: int
    streamed: bool


def version_dir(data_dir: str | Path, version: str) -> Path:
    """Where a version's files live (checkpoints): `<data_dir>/models/<version>/`."""
    return Path(data_dir) / "models" / version


def is_version_name(name: str) -> bool:
    """Whether `name` has the shape of a version (`<line>_v<N>`) rather than a line."""
    return VERSION_NAME.match(name) is not None


class Registry:
    """The versions and training periods of every line, in `<data_dir>/charles.db`."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = db.db_path(data_dir)
        self._connection = db.connect(self.path)
        db.migrate(self._connection, COMPONENT, MIGRATIONS)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self._connection.close()

    def create_version(
        self, line: str, *, spec_toml: str, parameters: ParameterCounts | None = None
    ) -> ModelVersion:
        """Register the next version of `line` (v1, v2, ...) with its creation time.

        `parameters` may be left out when counting them would mean building the
        model here; `record_parameters` fills them in later.
        """
        with db.transaction(self._connection) as connection:
            (highest,) = connection.execute(
                "SELECT COALESCE(MAX(number), 0) FROM model_versions WHERE line = ?", (line,)
            ).fetchone()
            number = highest + 1
            name = f"{line}_v{number}"
            connection.execute(
                "INSERT INTO model_versions (name, line, number, created, params_total,"
                " params_trainable, params_non_trainable, spec_toml)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    line,
                    number,
                    _now(),
                    parameters.total if parameters else None,
                    parameters.trainable if parameters else None,
                    parameters.non_trainable if parameters else None,
                    spec_toml,
                ),
            )
        return self.version(name)

    def record_parameters(self, version: str, parameters: ParameterCounts) -> bool:
        """Store a version's parameter counts if they are not known yet; whether it did.

        Counts already stored are kept: they were counted from the same stored
        spec, so a second count can only agree.
        """
        with db.transaction(self._connection) as connection:
            changed = connection.execute(
                "UPDATE model_versions SET params_total = ?, params_trainable = ?,"
                " params_non_trainable = ? WHERE name = ? AND params_total IS NULL",
                (parameters.total, parameters.trainable, parameters.non_trainable, version),
            ).rowcount
        return changed == 1

    def import_version(self, version: ModelVersion) -> bool:
        """Register a version made elsewhere (the hub's registry) under its own name and number.

        A node on another machine trains or drives the hub's versions, so its
        registry holds copies of them; whether it added one. One already here
        must be the same (created at the same time from the same spec), else
        `UsageError`: this data directory holds another model of that name.
        """
        with db.transaction(self._connection) as connection:
            row = connection.execute(
                "SELECT * FROM model_versions WHERE name = ? OR (line = ? AND number = ?)",
                (version.name, version.line, version.number),
            ).fetchone()
            if row is not None:
                mine = _version(row)
                if (mine.name, mine.created, mine.spec_toml) != (
                    version.name,
                    version.created,
                    version.spec_toml,
                ):
                    raise UsageError(
                        f"{self.path} holds another {mine.name} (created "
                        f"{mine.created.isoformat()}) than the hub's {version.name} (created "
                        f"{version.created.isoformat()}); accepted: a data directory of "
                        "this node's own (--data DIR) that only the hub fills"
                    )
                return False
            counts = version.parameters
            connection.execute(
                "INSERT INTO model_versions (name, line, number, created, batches_trained,"
                " params_total, params_trainable, params_non_trainable, spec_toml)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.name,
                    version.line,
                    version.number,
                    version.created.isoformat(),
                    version.batches_trained,
                    counts.total if counts else None,
                    counts.trainable if counts else None,
                    counts.non_trainable if counts else None,
                    version.spec_toml,
                ),
            )
        return True

    def mirror_period(self, period: TrainingPeriod) -> TrainingPeriod:
        """Record a training period as another registry (a remote trainer's) has it.

        The period is known by its version and start time: the first call opens
        it (closing the version's other open periods where they last recorded,
        as `open_period` does), later ones move its end batch and end it. So the
        hub's registry shows a version trained on another machine as it shows
        one trained here: batches trained, periods, streamed or not.
        """
        self.version(period.version)
        started = period.started.isoformat()
        recorded = (period.ended or datetime.now(UTC)).isoformat()
        with db.transaction(self._connection) as connection:
            row = connection.execute(
                "SELECT id FROM training_periods WHERE version = ? AND started = ?",
                (period.version, started),
            ).fetchone()
            if row is None:
                connection.execute(
                    "UPDATE training_periods SET ended = last_recorded"
                    " WHERE version = ? AND ended IS NULL",
                    (period.version,),
                )
                period_id = connection.execute(
                    "INSERT INTO training_periods (version, started, ended, last_recorded,"
                    " start_batch, end_batch, streamed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        period.version,
                        started,
                        period.ended.isoformat() if period.ended else None,
                        recorded,
                        period.start_batch,
                        period.end_batch,
                        int(period.streamed),
                    ),
                ).lastrowid
            else:
                period_id = row["id"]
                # Within one period the counter only grows: a late, older report moves nothing.
                connection.execute(
                    "UPDATE training_periods SET end_batch = MAX(end_batch, ?), last_recorded = ?,"
                    " ended = COALESCE(?, ended) WHERE id = ?",
                    (
                        period.end_batch,
                        recorded,
                        period.ended.isoformat() if period.ended else None,
                        period_id,
                    ),
                )
            (newest,) = connection.execute(
                "SELECT MAX(id) FROM training_periods WHERE version = ?", (period.version,)
            ).fetchone()
            if newest == period_id:
                connection.execute(
                    "UPDATE model_versions SET batches_trained ="
                    " (SELECT end_batch FROM training_periods WHERE id = ?) WHERE name = ?",
                    (period_id, period.version),
                )
        return self._period(period_id)

    def version(self, name: str) -> ModelVersion:
        """A version by name; `ConfigError` listing the line's versions if it does not exist."""
        row = self._connection.execute(
            "SELECT * FROM model_versions WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            match = VERSION_NAME.match(name)
            known = [v.name for v in self.versions(match["line"] if match else None)]
            raise UsageError(
                f"unknown model version {name!r} in {self.path}; known: "
                f"{', '.join(known) or 'none (create one with: charles-stream models new LINE)'}"
            )
        return _version(row)

    def versions(self, line: str | None = None) -> list[ModelVersion]:
        """Every version (of one line, if given), by line then number."""
        query = "SELECT * FROM model_versions"
        rows = (
            self._connection.execute(f"{query} WHERE line = ? ORDER BY number", (line,))
            if line is not None
            else self._connection.execute(f"{query} ORDER BY line, number")
        )
        return [_version(row) for row in rows]

    def open_period(self, version: str, *, streamed: bool, start_batch: int) -> TrainingPeriod:
        """Start a training period of `version` at batch `start_batch` (e.g. a checkpoint's)."""
        self.version(version)
        now = _now()
        with db.transaction(self._connection) as connection:
            # A period a crashed trainer left open ends where it last recorded.
            connection.execute(
                "UPDATE training_periods SET ended = last_recorded"
                " WHERE version = ? AND ended IS NULL",
                (version,),
            )
            cursor = connection.execute(
                "INSERT INTO training_periods (version, started, last_recorded, start_batch,"
                " end_batch, streamed) VALUES (?, ?, ?, ?, ?, ?)",
                (version, now, now, start_batch, start_batch, int(streamed)),
            )
            connection.execute(
                "UPDATE model_versions SET batches_trained = ? WHERE name = ?",
                (start_batch, version),
            )
        return self._period(cursor.lastrowid)

    def record_batches(self, period_id: int, batch: int) -> None:
        """Note that the period's version has now trained up to batch counter `batch`."""
        with db.transaction(self._connection) as connection:
            _record(connection, period_id, batch)

    def close_period(self, period_id: int, batch: int | None = None) -> TrainingPeriod:
        """End a training period now, at `batch` if given, else at the last recorded batch."""
        with db.transaction(self._connection) as connection:
            if batch is None:
                _open_period_version(connection, period_id)
            else:
                _record(connection, period_id, batch)
            now = _now()
            connection.execute(
                "UPDATE training_periods SET ended = ?, last_recorded = ? WHERE id = ?",
                (now, now, period_id),
            )
        return self._period(period_id)

    def periods(self, version: str) -> list[TrainingPeriod]:
        """The training periods of a version, oldest first."""
        rows = self._connection.execute(
            "SELECT * FROM training_periods WHERE version = ? ORDER BY id", (version,)
        )
        return [_period(row) for row in rows]

    def _period(self, period_id: int | None) -> TrainingPeriod:
        row = self._connection.execute(
            "SELECT * FROM training_periods WHERE id = ?", (period_id,)
        ).fetchone()
        return _period(row)


def _record(connection: sqlite3.Connection, period_id: int, batch: int) -> None:
    version = _open_period_version(connection, period_id)
    connection.execute(
        "UPDATE training_periods SET end_batch = ?, last_recorded = ? WHERE id = ?",
        (batch, _now(), period_id),
    )
    # The counter, not a sum: a resume from an older checkpoint counts on from there.
    connection.execute(
        "UPDATE model_versions SET batches_trained = ? WHERE name = ?", (batch, version)
    )


def _open_period_version(connection: sqlite3.Connection, period_id: int) -> str:
    row = connection.execute(
        "SELECT version, ended FROM training_periods WHERE id = ?", (period_id,)
    ).fetchone()
    if row is None:
        raise ValueError(f"no training period with id {period_id}")
    if row["ended"] is not None:
        raise ValueError(f"training period {period_id} of {row['version']} has already ended")
    return row["version"]


def _version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        name=row["name"],
        line=row["line"],
        number=row["number"],
        created=datetime.fromisoformat(row["created"]),
        batches_trained=row["batches_trained"],
        parameters=(
            ParameterCounts(
                row["params_total"], row["params_trainable"], row["params_non_trainable"]
            )
            if row["params_total"] is not None
            else None
        ),
        spec_toml=row["spec_toml"],
    )


def _period(row: sqlite3.Row) -> TrainingPeriod:
    return TrainingPeriod(
        id=row["id"],
        version=row["version"],
        started=datetime.fromisoformat(row["started"]),
        ended=datetime.fromisoformat(row["ended"]) if row["ended"] else None,
        start_batch=row["start_batch"],
        end_batch=row["end_batch"],
        streamed=bool(row["streamed"]),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
