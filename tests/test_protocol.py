"""Node messages have one schema.

Good ones round-trip; bad ones raise ProtocolError and nothing else.
"""

from __future__ import annotations

import contextlib
import math
import random

import msgpack
import msgspec
import pytest

from engine.collector.collector import Collector
from engine.core.config import default_config
from engine.core.services import PROTOCOL_VERSION
from engine.core.wire import (
    MAX_MESSAGE_BYTES,
    Alert,
    BufferFill,
    Checkpointed,
    CollectorReport,
    DriverStatus,
    Frames,
    Hello,
    ProtocolError,
    SampleSets,
    StageTime,
    SwitchModel,
    TrainerStatus,
    collector_report,
    decode,
    encode,
    header_type,
    hello_protocol,
    message_fields,
    message_type,
)
from engine.data.balance import BalancerStats, BalanceStats
from engine.data.samples import Sample, SampleSet
from tests.driver_helpers import small_sim

SAMPLE = Sample(
    frame=b"\xff\xd8 not really a jpeg",
    width=128,
    height=72,
    outputs={"steering": -0.25, "throttle_brake": 1.0},
    speed=12.5,
    time=3.0,
    source="collector-0",
    episode=2,
    purpose_direction=0.1,
    purpose_distance_m=200.0,
)

EXAMPLES = [
    Hello(role="collector", name="collector-0", pid=123),
    SampleSets(sets=(SampleSet(output="steering", samples=(SAMPLE, SAMPLE)),)),
    TrainerStatus(
        version="model_0000_demo_v1",
        status="training",
        batch=42,
        loss={"total": 0.5, "steering": 0.3},
        samples_per_s=900.0,
        buffers={"steering": BufferFill(fill=10, capacity=20, needed=18)},
    ),
    Checkpointed(version="model_0000_demo_v1", batch=500, path="data/models/x/batch-500"),
    DriverStatus(
        version="model_0000_demo_v1",
        predictions={"steering": 0.1},
        pps=30.0,
        stages={"predict": StageTime(p50_ms=12.5, p95_ms=20.0, turns=256)},
    ),
    Frames(hood=b"\xff\xd8hood", convcam=b"\xff\xd8cc"),
    SwitchModel(version="model_0003_xception_v2"),
    CollectorReport(
        source="collector-0@6a1f",
        balance=BalanceStats(
            strategy="v3",
            steps=900,
            balancers={
                "steering": BalancerStats(
                    output="steering",
                    sets_completed=3,
                    sets_dropped=1,
                    starving={"0.9-1.0": 1},
                    emitted_bins={"throttle_brake": {"1.0": 60}},
                )
            },
            rejected={"throttle_brake": 2},
        ),
        episodes=1,
        game_seconds=30.0,
        wall_seconds=4.5,
        sets_sent=3,
        samples_sent=63,
    ),
    Alert(kind="unstuck", text="Charles went for a swim"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message):
    assert decode(encode(message)) == message


def test_wire_type_names_are_snake_case():
    assert message_type(EXAMPLES[2]) == "trainer_status"


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"type": "launch_missiles"}, "unknown message type 'launch_missiles'"),
        ({"role": "driver", "name": "x"}, "unknown message type None"),
        ({"type": "hello", "role": "pilot", "name": "x"}, "'hello.role' = 'pilot' is not accepted"),
        (
            {"type": "alert", "kind": "unstuck", "text": "x", "admin": True},
            "unknown key 'alert.admin'; accepted keys here: kind, text",
        ),
        (
            {"type": "checkpointed", "version": "v", "batch": -5, "path": "p"},
            "'checkpointed.batch' = -5 is out of range; accepted: at least 0",
        ),
        ({"type": "hello", "role": "driver", "name": "x", "protocol": "2"}, "'hello.protocol'"),
        ({"type": "frames", "hood": 3}, "'frames.hood' = 3 has the wrong type; expected bytes"),
        ({"type": "checkpointed", "version": "v", "batch": -5, "path": "p"}, "out of range"),
        ({"type": "checkpointed", "version": "v"}, "missing"),
        ({"type": "frames", "hood": "not bytes"}, "wrong type"),
        ({"type": "trainer_status", "version": "v", "status": "training", "loss": [1]}, "table"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(table, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(msgpack.packb(table, use_bin_type=True))


def test_non_map_and_non_msgpack_payloads_are_rejected():
    with pytest.raises(ProtocolError, match="must be a map"):
        decode(msgpack.packb([1, 2, 3]))
    with pytest.raises(ProtocolError, match="not msgpack"):
        decode(b"\xc1")


def test_oversized_message_is_rejected_before_parsing():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))


def test_fuzzed_bytes_only_ever_raise_protocol_error():
    rng = random.Random(1234)
    valid = [encode(message) for message in EXAMPLES]
    for _ in range(3000):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        with contextlib.suppress(ProtocolError):
            decode(bytes(data))


def test_a_collectors_stats_become_a_report_that_storage_keeps_as_they_were():
    defaults = default_config()
    config = msgspec.structs.replace(
        defaults,
        sim=small_sim(),
        data=msgspec.structs.replace(defaults.data, frame_width=32, frame_height=18),
    )
    collector = Collector(config, seed=3, source="collector-0@test", sink=lambda sample_set: None)
    stats = collector.run(game_seconds=2.0).as_dict()
    report = collector_report(stats)
    assert decode(encode(report)) == report
    # What the trainer stores (and `data stats` reads) is exactly the collector's own dict.
    assert message_fields(report) == stats


def test_a_malformed_collector_report_names_the_bad_field():
    steering = {"output": "steering", "sets_completed": "many"}
    stats = {
        "source": "collector-0",
        "balance": {"strategy": "v3", "balancers": {"steering": steering}},
    }
    with pytest.raises(ProtocolError, match=r"'balance\.balancers\.steering\.sets_completed'"):
        collector_report(stats)


def test_a_hello_with_fields_this_version_does_not_know_still_decodes():
    # A newer node's Hello: the hub must read it far enough to say "upgrade the hub".
    table = {"type": "hello", "role": "driver", "name": "x", "protocol": 9, "gpu": "H200"}
    hello = decode(msgpack.packb(table, use_bin_type=True))
    assert hello == Hello(role="driver", name="x", protocol=9)


def test_a_hello_without_a_protocol_is_protocol_1_and_ours_says_the_current_one():
    old = msgpack.packb({"type": "hello", "role": "driver", "name": "x"}, use_bin_type=True)
    assert hello_protocol(old) == 1 and decode(old).protocol == 1
    assert hello_protocol(encode(Hello(role="driver", name="x"))) == PROTOCOL_VERSION


def test_the_wire_format_is_a_map_with_type_and_bytes_as_bin():
    data = encode(Frames(hood=b"\xff\xd8"))
    assert msgpack.unpackb(data, raw=False) == {
        "type": "frames",
        "hood": b"\xff\xd8",
        "convcam": b"",
        "chase": b"",
    }


def test_header_type_reads_only_the_type():
    sets = encode(EXAMPLES[1])
    assert header_type(sets) == "sample_sets"
    # A body the full decode would refuse still has a readable header.
    assert header_type(msgpack.packb({"type": "sample_sets", "sets": "junk"})) == "sample_sets"
    with pytest.raises(ProtocolError, match="unknown message type 'nope'"):
        header_type(msgpack.packb({"type": "nope"}))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_in_a_sample_is_refused_naming_the_field(bad):
    sample = msgspec.structs.replace(SAMPLE, speed=bad)
    data = encode(SampleSets(sets=(SampleSet(output="steering", samples=(sample,)),)))
    expected = rf"'sample_sets.sets\[0\].samples\[0\].speed' = {bad!r} is not a finite number"
    with pytest.raises(ProtocolError, match=expected):
        decode(data)


def test_a_non_finite_number_in_a_report_is_refused():
    report = {"source": "c", "balance": {"strategy": "v3"}, "game_seconds": math.nan}
    with pytest.raises(ProtocolError, match=r"'game_seconds' = nan is not a finite number"):
        collector_report(report)


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"type": "driver_status", "version": "v", "fps": math.nan}, "driver_status.fps"),
        ({"type": "driver_status", "version": "v", "pps": math.inf}, "driver_status.pps"),
        (
            {"type": "driver_status", "version": "v", "distance_m": -math.inf},
            "driver_status.distance_m",
        ),
        (
            {"type": "driver_status", "version": "v", "pad": {"steering": math.nan}},
            "driver_status.pad.steering",
        ),
        (
            {"type": "trainer_status", "version": "v", "status": "training", "samples_per_s": -1.0},
            "trainer_status.samples_per_s",
        ),
    ],
    ids=["fps", "pps", "distance", "pad", "samples-per-s"],
)
def test_a_status_number_that_is_not_finite_or_is_negative_is_refused(message, key):
    with pytest.raises(
        ProtocolError, match=rf"'{key}' = .* (is not a finite number|is out of range)"
    ):
        decode(msgpack.packb(message))


def test_a_diverged_loss_is_reported_as_it_is():
    status = TrainerStatus(version="v", status="training", loss={"total": math.nan})
    assert math.isnan(decode(encode(status)).loss["total"])


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_value_nested_thousands_deep_is_a_protocol_error(depth):
    nested = b"\x91" * depth + b"\x01"
    alert = msgpack.packb({"type": "alert", "kind": "k"}, use_bin_type=True)
    # {"type": "alert", "kind": "k", "text": [[[...1...]]]}: the map header says 3 entries.
    data = b"\x83" + alert[1:] + msgpack.packb("text") + nested
    with pytest.raises(ProtocolError):
        decode(data)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        header_type(
            b"\x82"
            + msgpack.packb("type")
            + msgpack.packb("sample_sets")
            + msgpack.packb("sets")
            + nested
        )
