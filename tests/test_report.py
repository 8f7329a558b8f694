"""Model pages and their index, generated from a synthetic history with real event files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from markdown_it import MarkdownIt

from engine.cli import main
from engine.core import db
from engine.core.errors import UsageError
from engine.records.moments import Moments
from engine.records.timeline import Timeline
from models.loss_chart import read_loss_curves, smooth
from models.notes import Notes
from models.registry import Registry, version_dir
from models.report import ARCHITECTURE_FILE, escape_markdown, write_index, write_line_report
from models.spec import SPEC_DIR, ParameterCounts
from models.tensorboard_log import LossLog, tensorboard_dir
from tests.driver_helpers import DEMO_LINE
from tests.system_programs import needs_dot

pytestmark = pytest.mark.tf

V1, V2 = f"{DEMO_LINE}_v1", f"{DEMO_LINE}_v2"
# The seed's model_0003_xception counts, to check the summary's formatting.
XCEPTION_COUNTS = ParameterCounts(23_519_466, 23_464_938, 54_528)
XSS_NOTE = "<img src=x onerror=alert(1)> [click](https://evil.example) *bold*"
REPLAY = r"C:\Users\streamer\Videos\Replay 2026-05-03 14-05-10.mkv"


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def losses(batch: int, run: float) -> dict[str, float]:
    """A falling curve per output; `run` tells an abandoned run's points from the resumed one's."""
    return {
        "total": run / (1 + batch / 100),
        "steering": run / (2 + batch / 100),
        "throttle_brake": run / (3 + batch / 100),
    }


def log_losses(data_dir: Path, version: str, batches: range, run: float = 1.0) -> None:
    """One trainer run's TensorBoard event file (a LossLog per run, as the trainer opens one)."""
    with LossLog(tensorboard_dir(data_dir, version)) as curves:
        for batch in batches:
            curves.write(batch, losses(batch, run), samples_per_s=500.0)


def add_period(
    data_dir: Path,
    version: str,
    start: int,
    end: int,
    when: tuple[datetime, datetime | None],
    *,
    streamed: bool,
) -> None:
    """A training period at fixed times (the registry stamps now; the test history is in 2026)."""
    with Registry(data_dir) as registry:
        period = registry.open_period(version, streamed=streamed, start_batch=start)
        registry.record_batches(period.id, end)
        if when[1] is not None:
            registry.close_period(period.id)
    started, ended = (moment.isoformat() if moment else None for moment in when)
    statement = "UPDATE training_periods SET started = ?, ended = ? WHERE id = ?"
    set_row(data_dir, statement, started, ended, period.id)


def set_row(data_dir: Path, statement: str, *values: object) -> None:
    with db.opened(db.db_path(data_dir)) as connection, db.transaction(connection):
        connection.execute(statement, values)


def create_versions(data_dir: Path, count: int) -> None:
    spec_toml = (SPEC_DIR / f"{DEMO_LINE}.toml").read_text(encoding="utf-8")
    with Registry(data_dir) as registry:
        for _ in range(count):
            registry.create_version(DEMO_LINE, spec_toml=spec_toml, parameters=XCEPTION_COUNTS)


def build_history(data_dir: Path) -> None:
    """v1 trained off-stream, v2 streamed from scratch, then a switch to v1 on stream.

    v1's streamed run dies at batch 450 and resumes from its batch-400 checkpoint,
    so its event files log batches 400-450 twice.
    """
    create_versions(data_dir, 2)
    add_period(data_dir, V1, 0, 300, (at(4, 22, 10), at(4, 24, 18)), streamed=False)
    log_losses(data_dir, V1, range(0, 301, 50))
    add_period(data_dir, V2, 0, 150, (at(4, 30, 20), at(5, 2, 9)), streamed=True)
    log_losses(data_dir, V2, range(0, 151, 50))
    add_period(data_dir, V1, 300, 600, (at(5, 2, 9), at(5, 7, 22)), streamed=True)
    log_losses(data_dir, V1, range(300, 451, 50), run=9.0)
    log_losses(data_dir, V1, range(400, 601, 50))

    timeline = Timeline(data_dir)
    timeline.started(V2, 0, "from scratch")
    timeline.stopped(V2, 150)
    timeline.started(V1, 300, "pre-trained off-stream")
    timeline.stopped(V1, 600)
    for event_id, moment in enumerate((at(4, 30, 20), at(5, 2, 9), at(5, 2, 9), at(5, 7, 22)), 1):
        set_row(
            data_dir, "UPDATE timeline_events SET at = ? WHERE id = ?", moment.isoformat(), event_id
        )

    moments = Moments(data_dir)
    swim = moments.tag(
        version=V1, batch=420, note="Charles went for a swim", user="viewer42", name="water"
    )
    moments.set_replay(swim.id, REPLAY)
    moments.tag(version=V1, batch=480, note=XSS_NOTE, user="mallory_")
    for moment_id, moment in ((1, at(5, 3, 14, 5)), (2, at(5, 4, 9, 30))):
        set_row(data_dir, "UPDATE moments SET at = ? WHERE id = ?", moment.isoformat(), moment_id)

    notes = Notes(data_dir)
    notes.add(DEMO_LINE, "This line is the [demo](https://example.org/demo) line.")
    notes.add(V2, "**This is the first streamed model.**")
    notes.add(V2, "Despite being identical to the above model, it did not learn the same.")
    notes.add(V1, "The model performed quite well and later replaced v2 on the stream.")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("history")
    build_history(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def report(history, tmp_path_factory) -> Path:
    """The demo line's page, written once for the tests that only read it."""
    out = tmp_path_factory.mktemp("report")
    write_line_report(history, DEMO_LINE, out, tz=UTC)
    return out


def page(report: Path) -> str:
    return (report / f"{DEMO_LINE}.md").read_text(encoding="utf-8")


def version_section(report: Path, version: str) -> str:
    """From the version's heading to the next version's (or the end)."""
    return page(report).split(f"\n## {version}\n", 1)[1].split("\n## ", 1)[0]


def test_page_has_the_title_description_line_notes_and_a_linked_list_of_versions(report):
    text = page(report)
    assert text.startswith("<< [Back](README.md)\n\n# model_0000_demo\n\n")
    assert "Small CNN for CPU machines: learns the built-in game in minutes." in text
    assert "This line is the [demo](https://example.org/demo) line." in text
    assert (
        "## List of the models:\n"
        "- [`model_0000_demo_v1`](#model_0000_demo_v1)\n"
        "- [`model_0000_demo_v2`](#model_0000_demo_v2)\n"
    ) in text
    assert re.findall(r"^## (model_\S+)$", text, flags=re.MULTILINE) == [V1, V2]


def test_training_periods_show_dates_batch_ranges_and_whether_streamed(report):
    assert (
        "Training periods: `April 22nd-24th, 2026` (batches: *0-300*, off-stream), "
        "`May 2nd-7th, 2026` (batches: *300-600*, streamed)  \n"
        "Training batches (total): *600*\n"
    ) in version_section(report, V1)
    assert (
        "Training periods: `April 30th-May 2nd, 2026` (batches: *0-150*, streamed)  \n"
        "Training batches (total): *150*\n"
    ) in version_section(report, V2)


def test_model_summary_shows_the_parameter_counts_like_the_seed(report):
    assert (
        "*Model summary:*  \n"
        "- Total params: `23,519,466`\n"
        "- Trainable params: `23,464,938`\n"
        "- Non-trainable params: `54,528`\n"
    ) in version_section(report, V1)


@needs_dot
def test_architecture_plot_and_loss_chart_are_pngs_next_to_the_page(report):
    for version in (V1, V2):
        section = version_section(report, version)
        plot, chart = f"{version}.plot.png", f"{version}.tb.png"
        assert f"*Model architecture:*  \n![{version}.plot]({plot})\n" in section
        assert f"*Tensorboard logs:*  \n![{version}.tb]({chart})\n" in section
        for name in (plot, chart):
            assert (report / name).read_bytes().startswith(b"\x89PNG")


def test_loss_curves_come_from_the_event_files_and_a_resumed_run_replaces_the_old_points(
    history,
):
    curves = read_loss_curves(tensorboard_dir(history, V1))
    assert list(curves) == ["total", "steering", "throttle_brake"]
    total = curves["total"]
    assert total.steps == tuple(range(0, 601, 50))
    # The abandoned run (x9) kept only 300 and 350: the resume from 400 replaced 400 and 450.
    expected = [losses(step, 9.0 if step in (300, 350) else 1.0)["total"] for step in total.steps]
    assert total.values == pytest.approx(expected, rel=1e-6)


def test_loss_chart_draws_the_total_curve(report):
    image = cv2.imread(str(report / f"{V1}.tb.png"))
    assert image.shape[:2] == (400, 1000)
    # The total's smoothed line, in its colour #ff7043 (BGR below).
    total_pixels = np.all(np.abs(image.astype(int) - (67, 112, 255)) < 20, axis=-1)
    assert total_pixels.sum() > 500


def test_smoothing_is_tensorboards_debiased_moving_average():
    values = [1.0, 0.0, 0.0]
    assert smooth(values, 0.0) == values
    # First point unbiased (not pulled to 0); then (0.6 * 0.4) / (1 - 0.6**2) = 0.375.
    assert smooth(values, 0.6) == pytest.approx([1.0, 0.375, 0.6**2 * 0.4 / (1 - 0.6**3)])
    assert smooth([2.5] * 4, 0.9) == [2.5] * 4


def test_moments_show_time_batch_note_name_user_and_the_replay_file_name(report):
    assert (
        "*Tagged moments:*\n\n"
        "- **May 3rd, 2026 14:05**, batch: *420*: Charles went for a swim "
        "(\\!water, tagged by viewer42), replay: Replay 2026-05-03 14-05-10.mkv\n"
    ) in version_section(report, V1)


def test_chat_text_renders_as_text_not_as_html_links_or_emphasis(report):
    # CommonMark with raw HTML allowed, as GitHub and most site generators render pages.
    html = MarkdownIt("commonmark").render(version_section(report, V1))
    (item,) = [line for line in html.splitlines() if "batch: <em>480</em>" in line]
    assert item.endswith(
        ": &lt;img src=x onerror=alert(1)&gt; [click](https://evil.example) *bold* "
        "(tagged by mallory_)</li>"
    )


def test_escape_markdown_escapes_html_and_inline_markup_only():
    assert escape_markdown("a & <b> `c` ![d](e) _f_ |g| ~h~ $i$ \\") == (
        "a &amp; &lt;b&gt; \\`c\\` \\!\\[d\\]\\(e\\) \\_f\\_ \\|g\\| \\~h\\~ \\$i\\$ \\\\"
    )
    assert escape_markdown("plain text, 1-2. #3: ok?") == "plain text, 1-2. #3: ok?"
    assert escape_markdown("one\n# two\n- three") == "one # two - three"


def test_notes_appear_under_their_version_as_written_and_in_order(report):
    section = version_section(report, V2)
    first, second = (
        "**This is the first streamed model.**",
        "Despite being identical to the above model, it did not learn the same.",
    )
    assert f"\n\n{first}\n\n{second}" in section
    assert first not in version_section(report, V1)


@needs_dot
def test_the_architecture_plot_is_drawn_once_per_version_into_its_folder(history, report):
    cached = version_dir(history, V1) / ARCHITECTURE_FILE
    assert cached.read_bytes() == (report / f"{V1}.plot.png").read_bytes()


@needs_dot
def test_running_twice_gives_the_same_files(history, report, tmp_path):
    for version in (V1, V2):
        (version_dir(history, version) / ARCHITECTURE_FILE).unlink()  # drawn again, too
    write_line_report(history, DEMO_LINE, tmp_path, tz=UTC)
    first = {path.name: path.read_bytes() for path in report.iterdir()}
    second = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert sorted(second) == sorted(first)
    assert second == first


def test_index_lists_every_line_and_version_and_the_streaming_timeline(history, tmp_path):
    written = write_index(history, tmp_path, tz=UTC)
    assert written == [tmp_path / "README.md", tmp_path / f"{DEMO_LINE}.md"]
    index = written[0].read_text(encoding="utf-8")
    assert (
        "- [`model_0000_demo`](model_0000_demo.md): Small CNN for CPU machines: learns the "
        "built-in game in minutes.\n"
        "  - [`model_0000_demo_v1`](model_0000_demo.md#model_0000_demo_v1): batches: *600*, "
        "streamed\n"
        "  - [`model_0000_demo_v2`](model_0000_demo.md#model_0000_demo_v2): batches: *150*, "
        "streamed\n"
    ) in index
    assert "- `model_0003_xception`: Xception backbone" in index
    assert "(no versions yet)" in index
    assert index.endswith(
        "## Streaming timeline\n\n"
        "### April 30th, 2026\n\n"
        "- 20:00: started streaming model_0000_demo_v2 from batch 0 (from scratch)\n\n"
        "### May 2nd, 2026\n\n"
        "- 09:00: stopped streaming model_0000_demo_v2 at batch 150\n"
        "- 09:00: started streaming model_0000_demo_v1 from batch 300 (pre-trained off-stream)\n"
        "\n"
        "### May 7th, 2026\n\n"
        "- 22:00: stopped streaming model_0000_demo_v1 at batch 600\n"
    )


def test_a_period_still_training_shows_since_when_and_batches_so_far(tmp_path):
    create_versions(tmp_path, 1)
    add_period(tmp_path, V1, 0, 250, (at(5, 9, 8), None), streamed=True)
    out = write_line_report(tmp_path, DEMO_LINE, tmp_path / "out", tz=UTC)
    text = out.read_text(encoding="utf-8")
    assert "Training periods: `since May 9th, 2026` (batches: *0-250* so far, streamed)" in text
    # No event files yet: no chart, and the page says so.
    assert "*Tensorboard logs:*  \nnone written yet\n" in text
    assert not (tmp_path / "out" / f"{V1}.tb.png").exists()


def test_without_graphviz_the_page_says_the_architecture_was_not_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr("models.build.shutil.which", lambda name: None)
    create_versions(tmp_path, 1)
    text = write_line_report(tmp_path, DEMO_LINE, tmp_path / "out").read_text(encoding="utf-8")
    assert "*Model architecture:*  \nnot drawn: Graphviz's `dot` is not installed\n" in text
    assert "Training periods: none yet" in text


def test_a_version_name_or_unknown_line_is_refused_naming_the_lines(tmp_path):
    with pytest.raises(UsageError, match="is a version; a report is per line: model_0000_demo"):
        write_line_report(tmp_path, V1, tmp_path / "out")
    with pytest.raises(
        UsageError, match=r"unknown model line 'nope'; known lines: .*model_0000_demo"
    ):
        write_line_report(tmp_path, "nope", tmp_path / "out")


def test_report_command_writes_the_page_and_prints_its_path(history, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["report", DEMO_LINE, "--data", str(history), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out / DEMO_LINE}.md\n"
    assert (out / f"{V1}.tb.png").is_file()


def test_report_command_refuses_bad_input_with_exit_2(history, capsys):
    assert main(["report", "nope", "--data", str(history)]) == 2
    for argv in (["report"], ["report", DEMO_LINE, "--index"], ["report", "--smoothing", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--data", str(history)])
        assert exit_info.value.code == 2
    assert "out of range; accepted: 0 to below 1" in capsys.readouterr().err


def test_report_command_exits_2_when_out_is_not_a_writable_folder(history, tmp_path, caplog):
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    assert main(["report", DEMO_LINE, "--data", str(history), "--out", str(out)]) == 2
    assert f"cannot write the report to --out {out}" in caplog.text


def test_note_command_adds_lists_and_removes_notes(tmp_path, capsys):
    create_versions(tmp_path, 1)
    data = ["--data", str(tmp_path)]
    assert main(["models", "note", V1, "  It did not steer.\n\nSecond paragraph. ", *data]) == 0
    assert capsys.readouterr().out == f"note 1 added to {V1}\n"
    assert main(["models", "note", V1, *data, "--json"]) == 0
    (note,) = json.loads(capsys.readouterr().out)
    assert (note["id"], note["subject"], note["text"]) == (
        1,
        V1,
        "It did not steer.\n\nSecond paragraph.",
    )
    assert main(["models", "note", V1, "--remove", "1", *data]) == 0
    assert main(["models", "note", V1, *data]) == 0
    assert capsys.readouterr().out == f"note 1 removed from {V1}\nno notes on {V1}\n"


def test_note_on_an_unknown_version_or_an_empty_note_exits_2(tmp_path, caplog):
    create_versions(tmp_path, 1)
    data = ["--data", str(tmp_path)]
    assert main(["models", "note", f"{DEMO_LINE}_v7", "text", *data]) == 2
    assert f"unknown model version '{DEMO_LINE}_v7'" in caplog.text
    assert main(["models", "note", V1, "   ", *data]) == 2
    assert "is empty" in caplog.text
    assert main(["models", "note", V1, "--remove", "5", *data]) == 2
    assert f"{V1} has no note 5; its notes: none" in caplog.text


def test_a_version_nobody_has_built_yet_is_counted_for_its_page(tmp_path, monkeypatch):
    monkeypatch.setattr("models.build.shutil.which", lambda name: None)  # no plot: just counts
    spec_toml = (SPEC_DIR / f"{DEMO_LINE}.toml").read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version(DEMO_LINE, spec_toml=spec_toml)  # as the app creates one
    text = write_line_report(tmp_path, DEMO_LINE, tmp_path / "out").read_text(encoding="utf-8")
    assert (
        "*Model summary:*  \n"
        "- Total params: `1,268,310`\n"
        "- Trainable params: `1,268,310`\n"
        "- Non-trainable params: `0`\n"
    ) in text
    with Registry(tmp_path) as registry:
        assert registry.version(V1).parameters == ParameterCounts(1_268_310, 1_268_310, 0)
