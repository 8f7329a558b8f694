"""NPC collectors: the built-in game sampled at 30 Hz, balanced, respawned, stored by `collect`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from engine.cli import main
from engine.collector.collector import Collector, apply_dead_zone
from engine.core.config import OutputBinsConfig, load_config
from engine.core.errors import ConfigError
from engine.data.controls import control_outputs
from engine.data.frames import decode_frame
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage, default_storage_path
from engine.sim.game import Controls

pytestmark = pytest.mark.slow

# Tiny frames, 2 divisions per unit (5 steering bins, 7 throttle_brake bins), a wide dead zone
# and frequent perturbations keep sets quick to complete: 20 s of game time yield several.
CONFIG = """
[app]
data_dir = "{data_dir}"

[sim]
hood_width = 96
hood_height = 54

[data]
frame_width = 32
frame_height = 18
buffer_capacity = 500
set_window_s = 60.0

[data.bins]
steering = {{ kind = "axis", divisions = 2 }}
throttle_brake = {{ kind = "trigger_pair", divisions = 2 }}

[autopilot]
perturbation_interval_s = 1.0
perturbation_strength = 1.0

[collector]
collectors = 2
episode_s = 30.0
report_interval_s = 2.0
dead_zone = 0.1
"""


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data"), encoding="utf-8")
    return path


def run_collector(config, game_seconds: float, **changes) -> tuple[list[SampleSet], object]:
    if changes:
        config = msgspec.structs.replace(
            config, collector=msgspec.structs.replace(config.collector, **changes)
        )
    sets: list[SampleSet] = []
    collector = Collector(config, seed=5, source="test-collector", sink=sets.append)
    return sets, collector.run(game_seconds=game_seconds)


def test_the_game_is_sampled_every_thirtieth_of_a_second_of_game_time(config_path):
    _, stats = run_collector(load_config(config_path), 4.0)
    assert stats.balance.steps == 120
    assert stats.game_seconds == pytest.approx(4.0)


def test_collected_sets_are_balanced_with_real_frames_and_every_output(config_path):
    config = load_config(config_path)
    sets, stats = run_collector(config, 20.0)
    assert sets, stats
    for sample_set in sets:
        expected_size = 5 if sample_set.output == "steering" else 7
        assert len(sample_set.samples) == expected_size
        for sample in sample_set.samples:
            assert set(sample.outputs) == {"steering", "throttle_brake"}
            assert decode_frame(sample.frame, expected=(32, 18)).shape == (18, 32, 3)
            assert sample.source == "test-collector"
            assert sample.purpose_distance_m is not None
    assert stats.samples_sent == sum(len(s.samples) for s in sets)


def test_a_car_that_stays_slow_is_respawned(config_path):
    # Anything under 200 km/h counts as stopped here, so the car is "stuck" every 0.5 s.
    _, stats = run_collector(load_config(config_path), 3.0, stuck_speed_kmh=200.0, stuck_s=0.5)
    assert stats.respawns >= 5


def test_each_episode_drives_a_new_track(config_path):
    # Three steering bins (left, straight, right): most 10 s episodes complete sets of their own
    # once the car is up to speed and the NPC's mistakes need recovering from.
    config = load_config(config_path)
    data = msgspec.structs.replace(
        config.data,
        balanced_outputs=("steering",),
        bins={**config.data.bins, "steering": OutputBinsConfig("axis", divisions=1)},
    )
    sets, stats = run_collector(msgspec.structs.replace(config, data=data), 40.0, episode_s=10.0)
    assert stats.episodes == 4
    episodes = {sample.episode for s in sets for sample in s.samples}
    assert len(episodes) >= 3


def test_stats_are_reported_during_the_run(config_path):
    reports = []
    collector = Collector(
        load_config(config_path), seed=1, source="c", sink=lambda s: None, report=reports.append
    )
    collector.run(game_seconds=5.0)
    assert [round(r.game_seconds) for r in reports] == [2, 4, 5]


def test_outputs_the_game_cannot_record_are_a_config_error(config_path):
    config = load_config(config_path)
    data = msgspec.structs.replace(
        config.data,
        outputs=("steering", "yaw"),
        balanced_outputs=("steering",),
        bins={**config.data.bins, "yaw": OutputBinsConfig("axis")},
    )
    with pytest.raises(ConfigError, match=r"'yaw'.*records steering, throttle_brake"):
        Collector(msgspec.structs.replace(config, data=data), seed=1, source="c", sink=print)


@pytest.mark.parametrize(
    ("value", "snapped"),
    [(0.015, 0.0), (-0.02, 0.0), (0.03, 0.03), (0.985, 1.0), (-0.99, -1.0), (0.5, 0.5)],
)
def test_controls_within_the_dead_zone_of_minus_one_zero_or_one_become_exact(value, snapped):
    controls = apply_dead_zone(Controls(value, value), dead_zone=0.02)
    assert controls == Controls(snapped, snapped)


def test_acceleration_and_braking_are_split_from_throttle_brake():
    names = ("steering", "acceleration", "braking")
    assert control_outputs(0.5, -0.25, names) == {
        "steering": 0.5,
        "acceleration": 0.0,
        "braking": 0.25,
    }


def test_collect_stores_at_least_n_samples_from_every_collector(config_path, capsys):
    flags = ["--samples", "40", "--collectors", "2", "--seed", "3", "--json"]
    code = main(["collect", "--config", str(config_path), *flags])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] >= 40 and summary["collectors"] == 2
    with SampleStorage(summary["storage"], capacity=500) as storage:
        assert len(storage.load()) == summary["samples"]
        assert len(storage.collector_stats()) == 2


@pytest.mark.parametrize(
    "flags",
    [
        ["--samples", "0"],
        ["--samples", "many"],
        ["--samples", "5", "--collectors", "0"],
        ["--samples", "5", "--seed", "-1"],
    ],
)
def test_bad_collect_flags_exit_2(flags, config_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", "--config", str(config_path), *flags])
    assert exit_info.value.code == 2


def _children(pid: int) -> set[int]:
    """Pids of the processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    """Poll a process-table condition (there is no event to await for another process's end)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _start_collect(config_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """`charles-stream collect` with 2 collectors, once both collector processes run."""
    flags = ["--samples", "1000000", "--collectors", "2", "--config", str(config_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "collect", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    # The collectors are the supervised children that run the collector node.
    def collectors() -> set[int]:
        return {
            pid
            for pid in _children(process.pid)
            if b"engine.collector.node" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }

    _wait_for(lambda: len(collectors()) == 2)
    return process, collectors()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_collect_stops_its_collectors(config_path, signum):
    process, collectors = _start_collect(config_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    # Once both collect (their SIGTERM handling in place), they stop by themselves.
    _wait_for(lambda: sum("collecting as" in line for line in list(lines)) == 2)
    process.send_signal(signum)
    process.wait(timeout=60)
    reader.join(timeout=60)
    errors = "".join(lines)
    assert process.returncode == 128 + signum
    assert not any(_alive(pid) for pid in collectors)
    # The supervisor's SIGTERM: each collector ended on its own terms, none was killed.
    for index in (0, 1):
        assert re.search(rf"collector-{index} \(pid \d+\) exited with code 0", errors), errors
    assert "SIGKILL" not in errors
    # What they sent last, their final reports after their last sets, is stored.
    reported = re.findall(r"stopped by SIGTERM after (\d+) sets", errors)
    storage_path = default_storage_path(load_config(config_path))
    with SampleStorage(storage_path, capacity=500) as storage:
        stats = storage.collector_stats()
    assert sorted(int(n) for n in reported) == sorted(s["sets_sent"] for s in stats.values())


def test_collectors_end_when_collect_is_killed(config_path):
    process, collectors = _start_collect(config_path)
    process.kill()
    process.wait()
    _wait_for(lambda: not any(_alive(pid) for pid in collectors))


def test_samples_are_labelled_with_the_npcs_intent_not_its_noisy_controls(config_path, monkeypatch):
    """The noisy NPC drives; each label is what the clean NPC would do in that same state."""
    import engine.collector.collector as collector_module
    from engine.sim.autopilot import Autopilot
    from engine.sim.expert import expert_config

    config = load_config(config_path)
    expert = Autopilot(expert_config(config.autopilot))
    driven: dict[tuple[int, float], tuple[Controls, Controls]] = {}

    class RecordingGame(collector_module.Game):
        def set_controls(self, controls: Controls) -> None:
            key = (self.seed, round(self.time, 6))
            driven[key] = (controls, apply_dead_zone(expert.decide(self), 0.1))
            super().set_controls(controls)

    monkeypatch.setattr(collector_module, "Game", RecordingGame)
    sets, _ = run_collector(config, 20.0, episode_s=30.0)
    labels = [s for sample_set in sets for s in sample_set.samples]
    assert labels
    noisy_differs = 0
    for sample in labels:
        # One track here (30 s episodes), so the time alone finds the tick.
        (applied, intent) = next(v for k, v in driven.items() if k[1] == round(sample.time, 6))
        assert sample.outputs["steering"] == pytest.approx(intent.steering)
        assert sample.outputs["throttle_brake"] == pytest.approx(intent.throttle_brake)
        noisy_differs += abs(applied.steering - intent.steering) > 0.05
    assert noisy_differs > 0
