"""Small real samples and sets for the data-path tests (tiny frames keep them fast)."""

from __future__ import annotations

import numpy as np

from engine.core.config import FrameCodec
from engine.data.bins import OutputBins
from engine.data.frames import encode_frame
from engine.data.samples import Sample, SampleSet

WIDTH, HEIGHT = 32, 18
STEERING = OutputBins("steering", "axis")
THROTTLE_BRAKE = OutputBins("throttle_brake", "trigger_pair")


def grey_level(steering: float) -> int:
    """The grey a test frame is painted with, so a frame can be matched to its outputs."""
    return round((steering + 1.0) * 100.0)


def make_sample(
    outputs: dict[str, float],
    *,
    jpeg: bytes | None = None,
    width: int = WIDTH,
    codec: FrameCodec = "jpeg",
) -> Sample:
    """A sample whose frame is a uniform grey derived from its steering value, as `codec`."""
    if jpeg is None:
        frame = np.full((HEIGHT, width, 3), grey_level(outputs["steering"]), dtype=np.uint8)
        jpeg = encode_frame(frame, quality=90, codec=codec)
    return Sample(
        frame=jpeg,
        width=width,
        height=HEIGHT,
        outputs=dict(outputs),
        speed=10.0,
        time=1.5,
        source="test",
        episode=0,
        purpose_direction=0.1,
        purpose_distance_m=50.0,
    )


def value_in_bin(bins: OutputBins, index: int) -> float:
    """Some value that lands in bin `index` (exact values for exact bins)."""
    for step in range(-200, 201):
        value = step / 200.0
        if bins.index(value) == index:
            return value
    raise AssertionError(f"no value found for bin {index} of {bins.output}")


def full_set(
    output: str = "steering", throttle_brake: float = 0.5, codec: FrameCodec = "jpeg"
) -> SampleSet:
    """A complete balanced set for `output`: one sample per bin, both outputs recorded."""
    bins = STEERING if output == "steering" else THROTTLE_BRAKE
    samples = []
    for index in range(len(bins)):
        value = value_in_bin(bins, index)
        if output == "steering":
            outputs = {"steering": value, "throttle_brake": throttle_brake}
        else:
            outputs = {"steering": 0.25, "throttle_brake": value}
        samples.append(make_sample(outputs, codec=codec))
    return SampleSet(output=output, samples=tuple(samples))
