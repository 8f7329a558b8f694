"""The streaming timeline: rows in charles.db, its Markdown form, and resolving what to stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from engine.cli import main
from engine.core.errors import UsageError
from engine.records.timeline import Timeline, TimelineEvent, render_markdown, resolve_stream_model
from models.registry import Registry, version_dir
from tests.driver_helpers import DEMO_LINE, create_version


def add_checkpoint_directory(data_dir, version: str, batch: int) -> None:
    """What a checkpoint looks like to a listing (the timeline never loads weights)."""
    (version_dir(data_dir, version) / f"batch-{batch:012d}").mkdir(parents=True)


def add_period(data_dir, version: str, *, streamed: bool, batches: int) -> None:
    with Registry(data_dir) as registry:
        period = registry.open_period(version, streamed=streamed, start_batch=0)
        registry.close_period(period.id, batches)


def test_start_switch_stop_are_recorded_in_order(tmp_path):
    timeline = Timeline(tmp_path)
    timeline.started("demo_v1", 0, "from scratch")
    timeline.stopped("demo_v1", 1500)
    timeline.started("demo_v2", 71750, "pre-trained off-stream")
    timeline.stopped("demo_v2", 72000)
    rows = [(e.kind, e.version, e.batch, e.how) for e in Timeline(tmp_path).events()]
    assert rows == [
        ("started", "demo_v1", 0, "from scratch"),
        ("stopped", "demo_v1", 1500, None),
        ("started", "demo_v2", 71750, "pre-trained off-stream"),
        ("stopped", "demo_v2", 72000, None),
    ]


def test_markdown_has_a_heading_per_day_and_a_line_per_event():
    events = [
        TimelineEvent(
            datetime(2026, 5, 2, 14, 3, tzinfo=UTC), "started", "x_v2", 0, "from scratch"
        ),
        TimelineEvent(datetime(2026, 5, 2, 18, 40, tzinfo=UTC), "stopped", "x_v2", 15250),
        TimelineEvent(
            datetime(2026, 5, 3, 9, 0, tzinfo=UTC), "started", "x_v1", 24500, "continuing training"
        ),
    ]
    assert render_markdown(events, tz=UTC) == (
        "## Streaming timeline\n"
        "\n"
        "### May 2nd, 2026\n"
        "\n"
        "- 14:03: started streaming x_v2 from batch 0 (from scratch)\n"
        "- 18:40: stopped streaming x_v2 at batch 15,250\n"
        "\n"
        "### May 3rd, 2026\n"
        "\n"
        "- 09:00: started streaming x_v1 from batch 24,500 (continuing training)\n"
    )


def test_timeline_command_prints_json_and_markdown(tmp_path, capsys):
    Timeline(tmp_path).started("demo_v1", 0, "from scratch")
    assert main(["timeline", "--data", str(tmp_path), "--json"]) == 0
    (event,) = json.loads(capsys.readouterr().out)
    assert event["text"] == "started streaming demo_v1 from batch 0 (from scratch)"
    assert main(["timeline", "--data", str(tmp_path), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("## Streaming timeline\n")
    assert ": started streaming demo_v1 from batch 0 (from scratch)\n" in markdown


def test_a_line_without_versions_gets_v1_with_real_parameter_counts(tmp_path):
    assert resolve_stream_model(tmp_path, DEMO_LINE) == (f"{DEMO_LINE}_v1", 0, "from scratch")
    with Registry(tmp_path) as registry:
        (version,) = registry.versions(DEMO_LINE)
    assert version.parameters.total > 100_000  # counted by building the model, in a child


def test_a_line_resolves_to_its_newest_version(tmp_path):
    create_version(tmp_path)
    newest = create_version(tmp_path)
    assert resolve_stream_model(tmp_path, DEMO_LINE)[0] == newest
    with Registry(tmp_path) as registry:
        assert len(registry.versions(DEMO_LINE)) == 2


def test_new_creates_the_next_version_of_the_line(tmp_path):
    first = create_version(tmp_path)
    assert resolve_stream_model(tmp_path, first, new=True) == (
        f"{DEMO_LINE}_v2",
        0,
        "from scratch",
    )


def test_a_version_is_kept_with_its_latest_checkpoint_batch(tmp_path):
    first = create_version(tmp_path)
    create_version(tmp_path)
    add_checkpoint_directory(tmp_path, first, 500)
    add_checkpoint_directory(tmp_path, first, 1000)
    add_period(tmp_path, first, streamed=True, batches=1000)
    assert resolve_stream_model(tmp_path, first) == (first, 1000, "continuing training")


def test_a_version_trained_off_stream_is_pre_trained(tmp_path):
    version = create_version(tmp_path)
    add_checkpoint_directory(tmp_path, version, 24500)
    add_period(tmp_path, version, streamed=False, batches=24500)
    assert resolve_stream_model(tmp_path, version)[2] == "pre-trained off-stream"


def test_an_unknown_line_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(UsageError, match=r"unknown model line 'no_such_line'.*model_0000_demo"):
        resolve_stream_model(tmp_path, "no_such_line")


def test_an_unknown_version_is_refused_naming_the_lines_versions(tmp_path):
    create_version(tmp_path)
    with pytest.raises(UsageError, match=rf"unknown model version '{DEMO_LINE}_v7'.*_v1"):
        resolve_stream_model(tmp_path, f"{DEMO_LINE}_v7")
