"""The declared process table: which children `[stream]` asks for, with which command lines."""

from __future__ import annotations

import msgspec
import pytest

from engine.app.processes import ProcessSpec, process_table
from engine.core.config import RecorderEntry, StreamConfig, SupervisorConfig, default_config

VERSION = "model_0000_demo_v1"


def test_the_default_config_runs_trainer_driver_and_two_collectors():
    specs = process_table(default_config(), "config.toml", VERSION)
    assert specs == [
        ProcessSpec(
            "trainer",
            "engine.trainer.node",
            ("--config", "config.toml", "--model", VERSION),
            "always",
            stop_order=2,
            liveness_s=120.0,
            huge_pages=True,  # runs TensorFlow
        ),
        ProcessSpec(
            "driver",
            "engine.driver.node",
            ("--config", "config.toml", "--model", VERSION),
            "always",
            stop_order=0,
            liveness_s=20.0,
            huge_pages=True,  # runs TensorFlow
        ),
        ProcessSpec(
            "collector-0",
            "engine.collector.node",
            ("--config", "config.toml", "--index", "0"),
            "always",
            stop_order=1,
            liveness_s=30.0,
        ),
        ProcessSpec(
            "collector-1",
            "engine.collector.node",
            ("--config", "config.toml", "--index", "1"),
            "always",
            stop_order=1,
            liveness_s=30.0,
        ),
    ]


def test_no_collectors_and_no_trainer_leave_the_driver_alone():
    stream = StreamConfig(collectors=0, trainer=False)
    config = msgspec.structs.replace(default_config(), stream=stream)
    specs = process_table(config, "config.toml", VERSION)
    assert [spec.name for spec in specs] == ["driver"]


def test_without_a_config_file_children_get_no_config_flag():
    specs = process_table(default_config(), None, VERSION)
    assert [spec.args for spec in specs[:2]] == [("--model", VERSION)] * 2
    assert specs[2].args == ("--index", "0")


def test_a_model_process_without_a_version_is_refused():
    with pytest.raises(ValueError, match="trainer process needs the streamed model version"):
        process_table(default_config(), None, "")


def test_collectors_alone_need_no_version():
    config = msgspec.structs.replace(
        default_config(), stream=StreamConfig(collectors=3, trainer=False, driver=False)
    )
    specs = process_table(config, None, "")
    assert [spec.name for spec in specs] == ["collector-0", "collector-1", "collector-2"]


def test_liveness_bounds_come_from_supervisor_and_0_turns_one_off():
    supervisor = SupervisorConfig(
        liveness_trainer_s=0.0, liveness_collector_s=5.0, liveness_recorder_s=7.0
    )
    config = msgspec.structs.replace(default_config(), supervisor=supervisor)
    config = msgspec.structs.replace(
        config, stream=StreamConfig(recorders=(RecorderEntry(game="builtin", player="ada"),))
    )
    bounds = {spec.name: spec.liveness_s for spec in process_table(config, None, VERSION)}
    assert bounds == {
        "trainer": None,
        "driver": 20.0,
        "collector-0": 5.0,
        "collector-1": 5.0,
        "recorder-0": 7.0,
    }
