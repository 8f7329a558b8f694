"""Versions are numbered per line, keep their spec, and record training periods."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from engine.core import db
from engine.core.errors import UsageError
from models import registry as registry_module
from models.registry import Registry, version_dir
from models.spec import ParameterCounts, spec_path

COUNTS = ParameterCounts(total=23_519_466, trainable=23_464_938, non_trainable=54_528)
XCEPTION_TOML = spec_path("model_0003_xception").read_text(encoding="utf-8")


@pytest.fixture
def registry(tmp_path):
    with Registry(tmp_path) as registry:
        yield registry


def new_version(registry: Registry, line: str = "model_0003_xception") -> str:
    return registry.create_version(line, spec_toml=XCEPTION_TOML, parameters=COUNTS).name


def test_versions_are_numbered_from_1_per_line(registry):
    names = [new_version(registry) for _ in range(3)] + [new_version(registry, "model_0000_demo")]
    assert names == [
        "model_0003_xception_v1",
        "model_0003_xception_v2",
        "model_0003_xception_v3",
        "model_0000_demo_v1",
    ]


def test_numbering_continues_after_reopening_the_database(tmp_path):
    with Registry(tmp_path) as first:
        new_version(first)
    with Registry(tmp_path) as second:
        assert new_version(second) == "model_0003_xception_v2"


def test_a_version_keeps_its_creation_time_parameters_and_spec(registry):
    before = datetime.now(UTC)
    version = registry.version(new_version(registry))
    assert before <= version.created <= datetime.now(UTC)
    assert version.parameters == COUNTS and version.batches_trained == 0
    assert version.spec().output_names == ("steering", "throttle_brake")


def test_an_unknown_version_lists_the_lines_known_versions(registry):
    new_version(registry)
    with pytest.raises(UsageError, match=r"'model_0003_xception_v7'.*known: .*_v1$"):
        registry.version("model_0003_xception_v7")


def test_training_periods_record_batches_time_and_whether_streamed(registry):
    name = new_version(registry)
    off_stream = registry.open_period(name, streamed=False, start_batch=0)
    registry.record_batches(off_stream.id, 12_000)
    registry.close_period(off_stream.id, batch=24_500)
    streamed = registry.open_period(name, streamed=True, start_batch=24_500)
    registry.record_batches(streamed.id, 162_650)

    periods = registry.periods(name)
    assert [(p.start_batch, p.end_batch, p.streamed) for p in periods] == [
        (0, 24_500, False),
        (24_500, 162_650, True),
    ]
    assert periods[0].started <= periods[0].ended <= periods[1].started
    assert periods[1].ended is None
    assert registry.version(name).batches_trained == 162_650


def test_a_period_a_crashed_trainer_left_open_ends_at_its_last_record(registry):
    name = new_version(registry)
    crashed = registry.open_period(name, streamed=True, start_batch=0)
    registry.record_batches(crashed.id, 500)
    resumed = registry.open_period(name, streamed=True, start_batch=400)

    first, second = registry.periods(name)
    assert (first.end_batch, first.ended is not None) == (500, True)
    assert first.ended <= second.started and second.id == resumed.id
    # The counter restarts from the checkpoint the trainer resumed from.
    assert registry.version(name).batches_trained == 400


def test_recording_on_an_ended_period_is_refused(registry):
    period = registry.open_period(new_version(registry), streamed=False, start_batch=0)
    registry.close_period(period.id)
    with pytest.raises(ValueError, match="has already ended"):
        registry.record_batches(period.id, 10)


def test_a_period_needs_an_existing_version(registry):
    with pytest.raises(UsageError, match="unknown model version 'model_0003_xception_v1'"):
        registry.open_period("model_0003_xception_v1", streamed=False, start_batch=0)


def test_a_versions_files_live_under_data_models(tmp_path):
    assert version_dir(tmp_path, "model_0003_xception_v1") == (
        tmp_path / "models" / "model_0003_xception_v1"
    )


def test_counts_can_be_unknown_until_whoever_builds_the_model_records_them(registry):
    version = registry.create_version("model_0003_xception", spec_toml=XCEPTION_TOML)
    assert version.parameters is None
    assert registry.record_parameters(version.name, COUNTS)
    assert registry.version(version.name).parameters == COUNTS


def test_counts_once_recorded_are_kept(registry):
    name = new_version(registry)
    assert not registry.record_parameters(name, ParameterCounts(1, 1, 0))
    assert registry.version(name).parameters == COUNTS


def test_a_charles_db_from_before_unknown_counts_upgrades_with_versions_and_periods(tmp_path):
    # charles.db as the registry's first schema left it: counts NOT NULL.
    connection = db.connect(db.db_path(tmp_path))
    db.migrate(connection, registry_module.COMPONENT, registry_module.MIGRATIONS[:1])
    connection.execute(
        "INSERT INTO model_versions (name, line, number, created, batches_trained, params_total,"
        " params_trainable, params_non_trainable, spec_toml)"
        " VALUES ('model_0003_xception_v1', 'model_0003_xception', 1, ?, 500, ?, ?, ?, ?)",
        (datetime.now(UTC).isoformat(), *COUNTS.as_dict().values(), XCEPTION_TOML),
    )
    connection.execute(
        "INSERT INTO training_periods (version, started, ended, last_recorded, start_batch,"
        " end_batch, streamed) VALUES ('model_0003_xception_v1', ?, ?, ?, 0, 500, 1)",
        (datetime.now(UTC).isoformat(),) * 3,
    )
    connection.close()
    with Registry(tmp_path) as registry:
        (kept,) = registry.versions()
        (period,) = registry.periods(kept.name)
        uncounted = registry.create_version("model_0003_xception", spec_toml=XCEPTION_TOML)
    with pytest.raises(sqlite3.IntegrityError):  # periods still refer to the rebuilt table
        db.connect(db.db_path(tmp_path)).execute(
            "INSERT INTO training_periods (version, started, last_recorded, start_batch,"
            " end_batch, streamed) VALUES ('model_0003_xception_v9', '', '', 0, 0, 1)"
        )
    assert (kept.parameters, kept.batches_trained, kept.spec_toml) == (COUNTS, 500, XCEPTION_TOML)
    assert (period.end_batch, period.streamed) == (500, True)
    assert uncounted.parameters is None
