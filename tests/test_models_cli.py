"""`charles-stream models summary|new|list`: what a line costs, its versions and periods."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from models.registry import Registry
from models.spec import ParameterCounts, spec_path
from tests.system_programs import needs_dot

DEMO_TOTAL = 1_268_310
# The demo's first conv: 5x5 kernels, 24 filters, per input channel.
DEMO_CONV1_PER_CHANNEL = 5 * 5 * 24


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_summary_json_prints_total_trainable_and_non_trainable(capsys):
    counts = run_json(capsys, "models", "summary", "model_0000_demo", "--json")
    assert counts == {"total": DEMO_TOTAL, "trainable": DEMO_TOTAL, "non_trainable": 0}


def test_summary_prints_counts_the_way_the_seed_page_does(capsys):
    assert main(["models", "summary", "model_0000_demo"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 1,268,310" in out and "Non-trainable params: 0" in out
    assert "Convcam layer: convcam (9x16x64)" in out


def test_summary_frames_flag_answers_what_a_frame_stack_costs(capsys):
    counts = run_json(capsys, "models", "summary", "model_0000_demo", "--frames", "3", "--json")
    assert counts["total"] == DEMO_TOTAL + 6 * DEMO_CONV1_PER_CHANNEL


def test_summary_of_a_version_uses_the_spec_it_was_created_with(tmp_path, capsys):
    text = spec_path("model_0000_demo").read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version(
            "model_0000_demo",
            spec_toml=text.replace("frames = 1", "frames = 2"),
            parameters=ParameterCounts(0, 0, 0),
        )
    counts = run_json(
        capsys, "models", "summary", "model_0000_demo_v1", "--data", str(tmp_path), "--json"
    )
    assert counts["total"] == DEMO_TOTAL + 3 * DEMO_CONV1_PER_CHANNEL


def test_new_creates_the_next_version_and_list_shows_it_with_its_periods(tmp_path, capsys):
    data = str(tmp_path)
    run_json(capsys, "models", "new", "model_0000_demo", "--data", data, "--json")
    created = run_json(capsys, "models", "new", "model_0000_demo", "--data", data, "--json")
    assert created["version"] == "model_0000_demo_v2"
    assert created["parameters"]["total"] == DEMO_TOTAL
    with Registry(tmp_path) as registry:
        period = registry.open_period("model_0000_demo_v2", streamed=True, start_batch=0)
        registry.close_period(period.id, batch=500)

    listing = run_json(capsys, "models", "list", "--data", data, "--json")
    (demo,) = [line for line in listing["lines"] if line["line"] == "model_0000_demo"]
    assert [version["version"] for version in demo["versions"]] == [
        "model_0000_demo_v1",
        "model_0000_demo_v2",
    ]
    (recorded,) = demo["versions"][1]["training_periods"]
    assert (recorded["start_batch"], recorded["end_batch"], recorded["streamed"]) == (0, 500, True)
    assert demo["versions"][1]["batches_trained"] == 500
    assert "model_0003_xception" in {line["line"] for line in listing["lines"]}


def test_list_shows_lines_versions_and_periods_as_text(tmp_path, capsys):
    with Registry(tmp_path) as registry:
        registry.create_version(
            "model_0003_xception", spec_toml="", parameters=ParameterCounts(23_519_466, 1, 2)
        )
        period = registry.open_period("model_0003_xception_v1", streamed=False, start_batch=0)
        registry.record_batches(period.id, 24_500)
    assert main(["models", "list", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model_0003_xception_v1" in out and "23,519,466" in out
    assert "(batches: 0-24500, off-stream)" in out and "model_0000_demo  (no versions yet)" in out


def test_data_dir_comes_from_the_config_without_data_flag(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\ndata_dir = "{tmp_path / "elsewhere"}"\n', encoding="utf-8")
    run_json(capsys, "models", "new", "model_0000_demo", "--config", str(config), "--json")
    assert (tmp_path / "elsewhere" / "charles.db").is_file()


def test_unknown_line_exits_2_and_lists_the_lines(capsys):
    assert main(["models", "summary", "model_0042_nope"]) == 2
    assert "unknown model line 'model_0042_nope'" in capsys.readouterr().err


def test_bad_outputs_flag_exits_2_naming_the_flag(capsys):
    assert main(["models", "summary", "model_0000_demo", "--outputs", "steering,"]) == 2
    assert "--outputs steering,:" in capsys.readouterr().err


def test_unknown_backbone_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "summary", "model_0000_demo", "--backbone", "resnet"])
    assert exit_info.value.code == 2


@needs_dot
def test_plot_draws_the_architecture_to_a_png(tmp_path, capsys):
    plot = tmp_path / "architecture.png"
    assert main(["models", "summary", "model_0000_demo", "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_plot_without_graphviz_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    plot = tmp_path / "architecture.png"
    assert main(["models", "summary", "model_0000_demo", "--plot", str(plot)]) == 1
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert not plot.exists()


def test_list_says_a_version_the_app_created_is_not_counted_yet(tmp_path, capsys):
    text = spec_path("model_0000_demo").read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version("model_0000_demo", spec_toml=text)
    listing = run_json(capsys, "models", "list", "--data", str(tmp_path), "--json")
    (demo,) = [line for line in listing["lines"] if line["line"] == "model_0000_demo"]
    assert demo["versions"][0]["parameters"] is None
    assert main(["models", "list", "--data", str(tmp_path)]) == 0
    assert "parameters: not counted yet" in capsys.readouterr().out


def test_summary_of_a_version_records_counts_not_known_yet(tmp_path, capsys):
    text = spec_path("model_0000_demo").read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version("model_0000_demo", spec_toml=text)
    data = str(tmp_path)
    run_json(
        capsys, "models", "summary", "model_0000_demo_v1", "--frames", "2", "--json", "--data", data
    )
    with Registry(tmp_path) as registry:
        assert registry.version("model_0000_demo_v1").parameters is None  # not this version's
    run_json(capsys, "models", "summary", "model_0000_demo_v1", "--data", data, "--json")
    with Registry(tmp_path) as registry:
        assert registry.version("model_0000_demo_v1").parameters.total == DEMO_TOTAL
