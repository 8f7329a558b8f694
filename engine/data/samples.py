"""What a training sample is, and the balanced sets collectors send on.

Example::

    sample = Sample(frame_jpeg=encode_frame(rgb, 90), width=480, height=270,
                    outputs={"steering": -0.2, "throttle_brake": 0.7}, speed=21.5,
                    time=12.3, source="collector-0", episode=4)
    SampleSet(output="steering", samples=(sample, ...))   # one sample per steering bin

`outputs` maps an output name to its value, so which outputs a sample carries
(two heads, or separate acceleration and braking) is configuration, not code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One hood frame (JPEG) with the control values and telemetry recorded with it."""

    frame_jpeg: bytes
    width: int
    height: int
    outputs: dict[str, float]
    speed: float
    time: float
    source: str
    episode: int
    # Direction (rad, relative to the car's heading) and distance to a goal point, if known.
    purpose_direction: float | None = None
    purpose_distance_m: float | None = None


@dataclass(frozen=True, slots=True)
class SampleSet:
    """A Balancing_v3 set: one sample per bin of `output`; every sample keeps all outputs."""

    output: str
    samples: tuple[Sample, ...]
