"""Node messages have one schema.

Good ones round-trip; bad ones raise ProtocolError and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random

import msgpack
import pytest

from engine.collector.collector import Collector
from engine.core.config import default_config
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
    SwitchModel,
    TrainerStatus,
    collector_report,
    decode,
    encode,
    message_type,
)
from engine.data.balance import BalancerStats, BalanceStats
from engine.data.samples import Sample, SampleSet
from tests.driver_helpers import small_sim

SAMPLE = Sample(
    frame_jpeg=b"\xff\xd8 not really a jpeg",
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
    DriverStatus(version="model_0000_demo_v1", predictions={"steering": 0.1}, pps=30.0),
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
            {"type": "hello", "role": "driver", "name": "x", "admin": True},
            "unknown key 'hello.admin'",
        ),
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
    config = dataclasses.replace(
        defaults,
        sim=small_sim(),
        data=dataclasses.replace(defaults.data, frame_width=32, frame_height=18),
    )
    collector = Collector(config, seed=3, source="collector-0@test", sink=lambda sample_set: None)
    stats = collector.run(game_seconds=2.0).as_dict()
    report = collector_report(stats)
    assert decode(encode(report)) == report
    # What the trainer stores (and `data stats` reads) is exactly the collector's own dict.
    assert dataclasses.asdict(report) == stats


def test_a_malformed_collector_report_names_the_bad_field():
    steering = {"output": "steering", "sets_completed": "many"}
    stats = {
        "source": "collector-0",
        "balance": {"strategy": "v3", "balancers": {"steering": steering}},
    }
    with pytest.raises(ProtocolError, match=r"'balance\.balancers\.steering\.sets_completed'"):
        collector_report(stats)
