"""The streaming timeline: its rows in charles.db and its Markdown form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from engine.cli import main
from engine.records.timeline import Timeline, TimelineEvent, render_markdown


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
