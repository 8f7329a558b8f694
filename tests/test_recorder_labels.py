"""The recorder without a screen or X server: labels from key states, smoothing, pause, storage.

A scripted `KeyState` stands in for the X keymap and a fake clock for time, so
each test says exactly which keys were held when, and checks what the recorder
stored: balanced sets in a real SampleStorage, source "human:<player>".
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3

import msgspec
import numpy as np
import pytest

from engine.core.config import Config, OutputBinsConfig, default_config
from engine.core.errors import UsageError
from engine.data.controls import control_outputs
from engine.data.storage import SampleStorage
from engine.recorder.cli import player_name, smoothing_seconds
from engine.recorder.inputs import (
    Controls,
    Hotkey,
    KeyBindings,
    KeyboardInput,
    Smoother,
    parse_key_bindings,
    targets,
)
from engine.recorder.recorder import Recorder
from engine.recorder.screen import parse_region

HZ = 30.0


class ScriptedKeys:
    """Held keys as the test sets them (the X keymap's stand-in)."""

    def __init__(self) -> None:
        self.down: set[str] = set()

    def held(self) -> frozenset[str]:
        return frozenset(self.down)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def small_config(*, balanced: tuple[str, ...] = ("steering",), divisions: int = 1) -> Config:
    """Tiny frames; 3 steering bins ([-1,0), 0.0, (0,1]) so a few key changes complete a set."""
    config = default_config()
    bins = dict(config.data.bins)
    bins["steering"] = OutputBinsConfig("axis", divisions=divisions)
    bins["throttle_brake"] = OutputBinsConfig("trigger_pair", divisions=divisions)
    data = msgspec.structs.replace(
        config.data, frame_width=32, frame_height=18, balanced_outputs=balanced, bins=bins
    )
    collector = msgspec.structs.replace(config.collector, sample_hz=HZ)
    return msgspec.structs.replace(config, data=data, collector=collector)


def grey_frame() -> np.ndarray:
    return np.full((72, 128, 3), 128, np.uint8)


def test_keys_give_minus_one_zero_or_one_and_opposite_keys_cancel():
    keys = KeyBindings()
    assert targets(keys, {"Left"}) == (-1.0, 0.0)
    assert targets(keys, {"Right", "Up"}) == (1.0, 1.0)
    assert targets(keys, {"Down"}) == (0.0, -1.0)
    assert targets(keys, {"Left", "Right", "Up", "Down"}) == (0.0, 0.0)
    assert targets(keys, set()) == (0.0, 0.0)


def test_raw_keys_are_read_as_they_are_held():
    keys = ScriptedKeys()
    inputs = KeyboardInput(KeyBindings(), keys)
    keys.down = {"Left", "Up"}
    assert inputs.read(0.0) == Controls(-1.0, 1.0)
    keys.down = {"Down"}
    assert inputs.read(0.01) == Controls(0.0, -1.0)


def test_smoothing_turns_a_tapped_key_into_a_graded_value():
    keys = ScriptedKeys()
    inputs = KeyboardInput(KeyBindings(), keys, smoothing_s=0.2, dead_zone=0.02)
    inputs.read(0.0)
    keys.down = {"Right"}
    tapped = inputs.read(0.1)  # held 0.1 s of a 0.2 s time constant
    assert tapped.steering == pytest.approx(1 - math.exp(-0.5))
    keys.down = set()
    released = inputs.read(0.2)
    assert 0.0 < released.steering < tapped.steering
    held = [inputs.read(0.2 + t / 10) for t in range(1, 30)]
    assert held[-1].steering == 0.0  # snapped into the dead zone: exactly straight ahead


def test_smoothing_follows_time_not_the_number_of_reads():
    coarse, fine = Smoother(0.3), Smoother(0.3)
    coarse.update(0.0, 0.0)
    fine.update(0.0, 0.0)
    value = coarse.update(1.0, 0.3)
    for step in range(1, 31):
        fine_value = fine.update(1.0, step * 0.01)
    assert value == pytest.approx(fine_value) == pytest.approx(1 - math.exp(-1))


def test_the_hotkey_acts_once_per_press():
    keys = ScriptedKeys()
    pause = Hotkey("F9", keys)
    keys.down = {"F9"}
    assert [pause.pressed() for _ in range(3)] == [True, False, False]
    keys.down = set()
    assert not pause.pressed()
    keys.down = {"F9"}
    assert pause.pressed()


def test_acceleration_and_braking_are_split_from_throttle_brake():
    names = ("steering", "acceleration", "braking")
    assert control_outputs(0.5, -0.25, names) == {
        "steering": 0.5,
        "acceleration": 0.0,
        "braking": 0.25,
    }


def run_script(
    recorder: Recorder, clock: FakeClock, keys: ScriptedKeys, script: list[tuple[set[str], int]]
) -> None:
    """Hold each key set for N samples, polling the recorder at the sample rate."""
    for down, polls in script:
        keys.down = set(down)
        for _ in range(polls):
            recorder.poll(clock.now)
            clock.now += 1 / HZ


def stored_rows(storage: SampleStorage) -> list[tuple[str, str, dict[str, float]]]:
    with sqlite3.connect(storage.path) as connection:
        rows = connection.execute("SELECT buffer, source, outputs FROM samples ORDER BY id")
        return [(buffer, source, json.loads(outputs)) for buffer, source, outputs in rows]


def make_recorder(config: Config, storage: SampleStorage, keys: ScriptedKeys, clock: FakeClock):
    return Recorder(
        config,
        source="human:ada",
        grab=grey_frame,
        inputs=KeyboardInput(KeyBindings(), keys),
        pause=Hotkey("F9", keys),
        sink=storage.insert_set,
        clock=clock,
    )


def test_stored_samples_are_human_and_labelled_with_the_keys_held(tmp_path):
    keys, clock = ScriptedKeys(), FakeClock()
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = make_recorder(small_config(), storage, keys, clock)
        run_script(recorder, clock, keys, [({"Left", "Up"}, 5), (set(), 5), ({"Right"}, 5)])
        rows = stored_rows(storage)
    assert [source for _, source, _ in rows] == ["human:ada"] * 3
    assert {buffer for buffer, _, _ in rows} == {"steering"}
    # One sample per steering bin, each with the throttle the keys held with it.
    assert sorted((o["steering"], o["throttle_brake"]) for _, _, o in rows) == [
        (-1.0, 1.0),
        (0.0, 0.0),
        (1.0, 0.0),
    ]
    assert recorder.stats.samples_stored == 3
    assert recorder.stats.stored_by_buffer == {"steering": 3}
    # Only samples a balancer wanted were grabbed and encoded: the three stored, and one
    # Right that opened the next set; not the 15 polls.
    assert recorder.stats.frames_grabbed == 4


def test_holding_left_dominates_a_buffer_balanced_on_throttle(tmp_path):
    keys, clock = ScriptedKeys(), FakeClock()
    config = small_config(balanced=("throttle_brake",))
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = Recorder(
            config,
            source="human:ada",
            grab=grey_frame,
            inputs=KeyboardInput(KeyBindings(), keys, smoothing_s=0.15),
            sink=storage.insert_set,
            clock=clock,
        )
        pedals = [({"Left", "Up"}, 30), ({"Left"}, 30), ({"Left", "Down"}, 30), ({"Left"}, 30)]
        run_script(recorder, clock, keys, pedals * 3)
        rows = stored_rows(storage)
    steering = [outputs["steering"] for _, _, outputs in rows]
    assert len(rows) >= 5
    assert steering.count(-1.0) >= 0.8 * len(steering)


def test_nothing_is_sampled_while_paused(tmp_path):
    keys, clock = ScriptedKeys(), FakeClock()
    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = make_recorder(small_config(), storage, keys, clock)
        run_script(recorder, clock, keys, [({"Left"}, 3), ({"F9"}, 1)])  # pause
        assert recorder.stats.paused
        steps = recorder.stats.steps
        run_script(recorder, clock, keys, [({"Right"}, 10), (set(), 10), ({"Left"}, 10)])
        assert recorder.stats.steps == steps  # not even offered to balancing
        assert recorder.stats.frames_grabbed == 1  # the Left sample before the pause
        run_script(recorder, clock, keys, [({"F9"}, 1), ({"Right"}, 3)])  # resume
        assert not recorder.stats.paused
        run_script(recorder, clock, keys, [(set(), 3)])
        rows = stored_rows(storage)
    assert sorted(o["steering"] for _, _, o in rows) == [-1.0, 0.0, 1.0]
    assert recorder.stats.episodes == 2  # a resume starts a new episode
    assert recorder.stats.paused_s == pytest.approx(31 / HZ)


def test_run_stops_at_the_samples_asked_for_and_on_ctrl_c(tmp_path):
    keys, clock = ScriptedKeys(), FakeClock()
    cycle = iter([{"Left"}, set(), {"Right"}] * 100)

    def sleep(seconds: float) -> None:
        clock.now += max(seconds, 1 / HZ)
        keys.down = next(cycle)

    with SampleStorage(tmp_path / "samples.db", capacity=100) as storage:
        recorder = Recorder(
            small_config(),
            source="human:ada",
            grab=grey_frame,
            inputs=KeyboardInput(KeyBindings(), keys),
            sink=storage.insert_set,
            clock=clock,
            sleep=sleep,
        )
        stats = recorder.run(samples=6)
        assert stats.samples_stored == 6

        def interrupted() -> bool:
            raise KeyboardInterrupt

        stats = recorder.run(should_stop=interrupted)
        assert len(stored_rows(storage)) == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("left", "is not ROLE=KEY"),
        ("steer=Left", "unknown role 'steer'"),
        ("left=NoSuchKey", "'NoSuchKey' is not an X keysym name"),
        ("left=Up", "bound to two roles"),
    ],
)
def test_bad_key_maps_name_the_value_and_what_is_accepted(text, message):
    with pytest.raises(UsageError, match=message):
        parse_key_bindings(text)


def test_a_partial_key_map_keeps_the_other_defaults():
    assert parse_key_bindings("left=a,right=d") == KeyBindings(left="a", right="d")


@pytest.mark.parametrize("text", ["1,2,3", "0,0,-5,10", "a,b,c,d"])
def test_bad_regions_are_refused(text):
    with pytest.raises(ValueError, match=r"L,T,W,H|width and height"):
        parse_region(text)


@pytest.mark.parametrize("text", ["-1", "nan", "fast"])
def test_bad_smoothing_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="accepted: seconds from 0"):
        smoothing_seconds(text)


def test_player_names_are_checked():
    assert player_name("ada") == "ada"
    with pytest.raises(UsageError, match="letters, digits"):
        player_name("<b>ada</b>")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--region", "1,2"], "--region '1,2' is not accepted"),
        (["--region", "0,0,64,36", "--keys", "up=w"], "unknown role 'up'"),
        (["--region", "0,0,64,36", "--pause-key", "Up"], "also a driving key"),
        (["--region", "0,0,64,36", "--pause-key", "Pause9"], "'Pause9' is not an X keysym"),
        (["--region", "0,0,64,36", "--player", "a b"], "--player 'a b' is not accepted"),
    ],
)
def test_bad_flags_exit_2_naming_the_value(flags, message, tmp_path, caplog):
    from engine.cli import main

    assert main(["record", *flags, "--data", str(tmp_path)]) == 2
    assert message in caplog.text
