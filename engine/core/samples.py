"""What a training sample is, the balanced sets collectors send, and their balancing counters.

Example::

    sample = Sample(frame=encode_frame(rgb, 90, "jpeg"), width=480, height=270,
                    outputs={"steering": -0.2, "throttle_brake": 0.7}, speed=21.5,
                    time=12.3, source="collector-0", episode=4)
    SampleSet(output="steering", samples=(sample, ...))   # one sample per steering bin
    BalanceStats(strategy="v3", steps=900)                 # what a collector reports

Declared once, here in the foundation, because they are both data (storage,
buffers and batches in `engine.data` hold them) and wire schema (a
`SampleSets` message and a `CollectorReport` carry them, `engine.core.wire`).
They are msgspec Structs: cheaper to create and smaller than dataclasses on
the hot paths, and validated field by field when a message is decoded
(a non-finite speed or control value is refused; NaN would poison training).

`outputs` maps an output name to its value, so which outputs a sample carries
(two heads, or separate acceleration and braking) is configuration, not code.
"""

from __future__ import annotations

import msgspec

from engine.core.schema import Count, Finite


# gc=False: a buffer holds tens of thousands of samples, and none can be part of a cycle.
class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One hood frame with the control values and telemetry recorded with it."""

    # JPEG or a raw frame behind its header: the bytes say which (engine/data/frames.py).
    frame: bytes
    width: int
    height: int
    outputs: dict[str, Finite]
    speed: Finite
    time: Finite
    source: str
    episode: int
    # Direction (rad, relative to the car's heading) and distance to a goal point, if known.
    purpose_direction: Finite | None = None
    purpose_distance_m: Finite | None = None


class SampleSet(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Balancing_v3 set: one sample per bin of `output`; every sample keeps all outputs."""

    output: str
    samples: tuple[Sample, ...]


class BalancerStats(msgspec.Struct, forbid_unknown_fields=True):
    """Running counters of one balancer; cumulative since the collector started."""

    output: str
    sets_completed: Count = 0
    sets_dropped: Count = 0
    # bin label -> how many dropped sets lacked a sample in that bin.
    starving: dict[str, Count] = msgspec.field(default_factory=dict)
    # other output -> bin label -> count among emitted samples (what v4 flattens).
    emitted_bins: dict[str, dict[str, Count]] = msgspec.field(default_factory=dict)


class BalanceStats(msgspec.Struct, forbid_unknown_fields=True):
    """Counters of a whole stage: per balancer, plus samples that could not be binned."""

    strategy: str
    steps: Count = 0
    balancers: dict[str, BalancerStats] = msgspec.field(default_factory=dict)
    # output -> samples rejected because that output was NaN or out of range.
    rejected: dict[str, Count] = msgspec.field(default_factory=dict)
