"""Which version a stream puts on, and a new version's parameter counts (recorded by builders)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.core.errors import UsageError
from models.checkpoints import META_FILE, WEIGHTS_FILE, CheckpointError
from models.registry import Registry, version_dir
from models.spec import ParameterCounts, spec_path
from models.versions import resolve_stream_model
from tests.driver_helpers import DEMO_LINE, create_version

REPO = Path(__file__).resolve().parent.parent
# model_0000_demo's counts, as `charles-stream models summary model_0000_demo` prints them.
DEMO_COUNTS = ParameterCounts(1_268_310, 1_268_310, 0)


def add_checkpoint_directory(data_dir, version: str, batch: int) -> Path:
    """A checkpoint as resolving checks it (metadata and checksum; it never loads weights)."""
    directory = version_dir(data_dir, version) / f"batch-{batch:012d}"
    directory.mkdir(parents=True)
    weights = f"weights of batch {batch}".encode()
    (directory / WEIGHTS_FILE).write_bytes(weights)
    meta = {"batch": batch, "saved_at": "2026-01-01T00:00:00+00:00"}
    meta["sha256"] = hashlib.sha256(weights).hexdigest()
    (directory / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return directory


def add_period(data_dir, version: str, *, streamed: bool, batches: int) -> None:
    with Registry(data_dir) as registry:
        period = registry.open_period(version, streamed=streamed, start_batch=0)
        registry.close_period(period.id, batches)


def stored_counts(data_dir, version: str) -> ParameterCounts | None:
    with Registry(data_dir) as registry:
        return registry.version(version).parameters


def test_a_line_without_versions_gets_v1_from_scratch(tmp_path):
    assert resolve_stream_model(tmp_path, DEMO_LINE) == (f"{DEMO_LINE}_v1", 0, "from scratch")
    with Registry(tmp_path) as registry:
        (version,) = registry.versions(DEMO_LINE)
    assert version.spec_toml == spec_path(DEMO_LINE).read_text(encoding="utf-8")


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


@pytest.mark.parametrize("meta", ["null", "[]", "5", "{}", '{"batch": 1000}', "not json"])
def test_a_damaged_newest_checkpoint_is_not_the_batch_the_stream_says(tmp_path, meta):
    # The trainer falls back to batch 500; the timeline must say 500, not the directory's 1000.
    first = create_version(tmp_path)
    add_checkpoint_directory(tmp_path, first, 500)
    newest = add_checkpoint_directory(tmp_path, first, 1000)
    (newest / META_FILE).write_text(meta, encoding="utf-8")
    assert resolve_stream_model(tmp_path, first)[1] == 500


def test_a_version_whose_every_checkpoint_is_damaged_is_refused_naming_them(tmp_path):
    first = create_version(tmp_path)
    (add_checkpoint_directory(tmp_path, first, 500) / WEIGHTS_FILE).write_bytes(b"torn")
    with pytest.raises(CheckpointError, match=r"batch-000000000500: model.weights.h5 checksum"):
        resolve_stream_model(tmp_path, first)


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


def test_a_new_version_runs_no_child_process_and_leaves_its_counts_unknown(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    version, _, _ = resolve_stream_model(tmp_path, DEMO_LINE)
    assert stored_counts(tmp_path, version) is None


def test_the_app_path_never_imports_tensorflow(tmp_path):
    # A fresh interpreter: this test process has TensorFlow loaded by other tests.
    script = textwrap.dedent(
        """
        import sys
        import engine.app.actions
        from models.versions import resolve_stream_model

        print(resolve_stream_model(sys.argv[1], "model_0000_demo")[0])
        print(resolve_stream_model(sys.argv[1], "model_0000_demo", new=True)[0])
        print(sorted(name for name in sys.modules if name.split(".")[0] in {"tensorflow", "keras"}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"{DEMO_LINE}_v1", f"{DEMO_LINE}_v2", "[]"]


def test_a_version_of_an_unchanged_spec_takes_the_counts_already_known(tmp_path):
    spec_toml = spec_path(DEMO_LINE).read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version(DEMO_LINE, spec_toml=spec_toml, parameters=DEMO_COUNTS)
    version, _, _ = resolve_stream_model(tmp_path, DEMO_LINE, new=True)
    assert stored_counts(tmp_path, version) == DEMO_COUNTS


def test_a_version_of_an_edited_spec_is_not_given_the_old_counts(tmp_path):
    spec_toml = spec_path(DEMO_LINE).read_text(encoding="utf-8")
    with Registry(tmp_path) as registry:
        registry.create_version(
            DEMO_LINE,
            spec_toml=spec_toml.replace("frames = 1", "frames = 2"),
            parameters=ParameterCounts(1, 1, 0),
        )
    version, _, _ = resolve_stream_model(tmp_path, DEMO_LINE, new=True)
    assert stored_counts(tmp_path, version) is None


def test_the_trainer_records_the_counts_when_it_builds_the_model(tmp_path):
    from engine.trainer.trainer import Trainer
    from models.build import build_architecture, parameter_counts
    from models.spec import parse_spec
    from tests.test_trainer import LINE, TINY_SPEC, VERSION, make_config, store_sets

    config = make_config(tmp_path)
    data_dir = Path(config.app.data_dir)
    spec_toml = TINY_SPEC.format(frames=1)
    with Registry(data_dir) as registry:
        registry.create_version(LINE, spec_toml=spec_toml)
    store_sets(config)
    assert stored_counts(data_dir, VERSION) is None
    # Opening the trainer builds the model, which records its counts.
    with Trainer(config, VERSION, streamed=False, seed=1) as trainer:
        assert trainer.version == VERSION
    expected = parameter_counts(build_architecture(parse_spec(spec_toml, line=LINE, source="t")))
    assert stored_counts(data_dir, VERSION) == expected


def test_the_driver_records_the_counts_when_it_loads_the_version(tmp_path):
    from engine.driver.inference import load_version

    version, _, _ = resolve_stream_model(tmp_path, DEMO_LINE)
    load_version(tmp_path, version)
    assert stored_counts(tmp_path, version) == DEMO_COUNTS
