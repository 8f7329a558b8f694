"""Buffers: the 90% rule, half-batch composition and removal, refill, background batches."""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest
from msgspec.structs import replace

from engine.data.batches import BatchSource
from engine.data.buffers import SampleBuffers
from engine.data.frames import encode_frame
from engine.data.samples import SampleSet
from engine.data.storage import SampleStorage
from tests.data_helpers import HEIGHT, WIDTH, full_set, grey_level, make_sample

OUTPUTS = ("steering", "throttle_brake")
# Only ends a hung test: a passing one never waits this long, however busy the machine.
WAIT_S = 60.0


def open_buffers(tmp_path, capacity: int, threshold: float = 0.9, seed: int = 1) -> SampleBuffers:
    storage = SampleStorage(tmp_path / "samples.db", capacity=capacity)
    return SampleBuffers.open(storage, OUTPUTS, ready_threshold=threshold, seed=seed)


def test_training_waits_until_every_buffer_is_at_least_90_percent_full(tmp_path):
    buffers = open_buffers(tmp_path, capacity=40)  # ready at 36 each
    buffers.add_set(full_set("steering"))
    buffers.add_set(full_set("throttle_brake"))
    buffers.add_set(full_set("throttle_brake"))
    assert buffers.fill() == {"steering": 21, "throttle_brake": 40}
    assert not buffers.ready()
    buffers.add_set(full_set("steering"))
    assert buffers.ready()
    buffers.draw(5)
    assert buffers.fill() == {"steering": 35, "throttle_brake": 35}
    assert not buffers.ready()


def test_a_draw_takes_the_same_number_from_each_buffer_and_removes_them(tmp_path):
    buffers = open_buffers(tmp_path, capacity=100)
    for _ in range(2):
        buffers.add_set(full_set("steering"))
        buffers.add_set(full_set("throttle_brake"))
    drawn = buffers.draw(16)
    assert sorted(s.buffer for s in drawn) == ["steering"] * 16 + ["throttle_brake"] * 16
    assert buffers.fill() == {"steering": 42 - 16, "throttle_brake": 46 - 16}
    stored_ids = {row.id for row in buffers.storage.load()}
    assert not stored_ids & {s.id for s in drawn}
    again = buffers.draw(100)
    assert not {s.id for s in again} & {s.id for s in drawn}


def test_a_draw_marks_its_samples_in_storage_and_leaves_the_delete_for_later(tmp_path):
    buffers = open_buffers(tmp_path, capacity=100)
    buffers.add_set(full_set("steering"))
    buffers.add_set(full_set("throttle_brake"))
    drawn = buffers.draw(4)
    assert buffers.storage.drawn_pending() == 8
    assert buffers.storage.counters()["samples_drawn"] == 8
    assert not {row.id for row in buffers.storage.load()} & {s.id for s in drawn}


def test_the_prefetch_thread_deletes_drawn_rows_while_the_buffers_wait(tmp_path):
    buffers = open_buffers(tmp_path, capacity=42)  # ready at 38 each
    for _ in range(2):
        buffers.add_set(full_set("steering"))
        buffers.add_set(full_set("throttle_brake"))
    with BatchSource(buffers, batch_size=16, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        assert source.next_batch(timeout=WAIT_S) is not None
        # The draw took the buffers below the threshold: the thread waits, and deletes meanwhile.
        assert wait_until(lambda: buffers.storage.drawn_pending() == 0)
        assert source.costs.compacted_rows == 16
    assert buffers.storage.counters()["samples_drawn"] == 16
    assert len(buffers.storage.load()) == 2 * 42 - 16


def test_the_prefetch_thread_counts_its_cpu_per_part_and_batch(tmp_path):
    buffers = open_buffers(tmp_path, capacity=84, threshold=0.1)
    for _ in range(4):
        buffers.add_set(full_set("steering"))
        buffers.add_set(full_set("throttle_brake"))
    with BatchSource(buffers, batch_size=8, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        for _ in range(3):
            assert source.next_batch(timeout=WAIT_S) is not None
        costs = source.costs.per_batch_ms()
    assert source.costs.batches >= 3
    assert set(costs) == {"draw", "decode", "convert", "compact", "total"}
    assert costs["decode"] > 0 and costs["draw"] > 0
    assert costs["total"] == pytest.approx(sum(v for k, v in costs.items() if k != "total"))


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    """Poll `condition` until it holds; False only when a hung test reaches `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_restart_refills_exactly_what_was_not_trained_on(tmp_path):
    buffers = open_buffers(tmp_path, capacity=100)
    buffers.add_set(full_set("steering"))
    buffers.add_set(full_set("throttle_brake"))
    buffers.draw(4)
    buffers.storage.close()
    reopened = open_buffers(tmp_path, capacity=100)
    assert reopened.fill() == {"steering": 17, "throttle_brake": 19}


def test_samples_another_process_stored_are_picked_up_once(tmp_path):
    buffers = open_buffers(tmp_path, capacity=100)
    buffers.add_set(full_set("steering"))
    with SampleStorage(tmp_path / "samples.db", capacity=100) as collector_side:
        collector_side.insert_set(full_set("throttle_brake"))
    assert buffers.load_new() == 23
    assert buffers.load_new() == 0
    assert buffers.fill() == {"steering": 21, "throttle_brake": 23}


def test_buffers_rotate_at_the_storage_capacity(tmp_path):
    buffers = open_buffers(tmp_path, capacity=30)
    for _ in range(3):
        buffers.add_set(full_set("steering"))
    assert buffers.fill()["steering"] == 30
    assert len([r for r in buffers.storage.load() if r.buffer == "steering"]) == 30


def test_a_batch_is_float_nhwc_raw_pixels_with_each_frame_paired_to_its_outputs(tmp_path):
    buffers = open_buffers(tmp_path, capacity=42)
    for _ in range(2):
        buffers.add_set(full_set("steering", throttle_brake=0.5))
        buffers.add_set(full_set("throttle_brake"))
    with BatchSource(buffers, batch_size=32, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        batch = source.next_batch(timeout=WAIT_S)
    x, y = batch
    assert x.dtype == np.float32 and x.shape == (32, HEIGHT, WIDTH, 3)
    assert x.min() >= 0.0 and x.max() <= 255.0 and x.max() > 1.0
    assert set(y) == set(OUTPUTS) and all(
        v.shape == (32,) and v.dtype == np.float32 for v in y.values()
    )
    for frame, steering in zip(x, y["steering"], strict=True):
        assert abs(frame.mean() - grey_level(float(steering))) < 2.5


def bright_left_set() -> SampleSet:
    """A steering set whose frames are bright on the left half only and grey by steering."""
    samples = []
    for sample in full_set("steering").samples:
        frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[:, : WIDTH // 2] = grey_level(sample.outputs["steering"]) + 50
        samples.append(make_sample(dict(sample.outputs), jpeg=encode_frame(frame, quality=95)))
    return SampleSet("steering", tuple(samples))


@pytest.mark.parametrize("mirror", [0.0, 0.5, 1.0])
def test_a_mirrored_frame_is_flipped_left_right_with_its_steering_negated(tmp_path, mirror):
    buffers = open_buffers(tmp_path, capacity=42, threshold=0.5)
    buffers.add_set(bright_left_set())
    buffers.add_set(full_set("throttle_brake"))
    with BatchSource(
        buffers, batch_size=20, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS, mirror=mirror, seed=3
    ) as source:
        x, y = source.next_batch(timeout=WAIT_S)
    halves = [(frame[:, : WIDTH // 2].mean(), frame[:, WIDTH // 2 :].mean()) for frame in x]
    flipped = 0
    for (left, right), steering in zip(halves, y["steering"], strict=True):
        if min(left, right) > 20:  # a uniform throttle_brake frame, stored with steering 0.25
            assert abs(abs(steering) - 0.25) < 1e-6
            continue
        flipped += right > left
        stored = (max(left, right) - 50) / 100.0 - 1.0  # grey_level() undone
        assert abs(steering - (-stored if right > left else stored)) < 0.03
    assert {0.0: flipped == 0, 0.5: 0 < flipped < 10, 1.0: flipped == 10}[mirror]


def test_frames_are_resized_to_the_batch_frame_size(tmp_path):
    buffers = open_buffers(tmp_path, capacity=42, threshold=0.5)
    buffers.add_set(full_set("steering"))
    buffers.add_set(full_set("throttle_brake"))
    with BatchSource(buffers, batch_size=4, frame_size=(16, 9), outputs=OUTPUTS) as source:
        assert source.next_batch(timeout=WAIT_S).x.shape == (4, 9, 16, 3)


def test_no_batch_is_produced_while_buffers_are_not_ready(tmp_path):
    buffers = open_buffers(tmp_path, capacity=42)
    buffers.add_set(full_set("steering"))
    with BatchSource(buffers, batch_size=8, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        assert source.next_batch(timeout=0.3) is None
        buffers.add_set(full_set("steering"))
        buffers.add_set(full_set("throttle_brake"))
        assert source.next_batch(timeout=0.3) is None
        buffers.add_set(full_set("throttle_brake"))
        assert source.next_batch(timeout=WAIT_S) is not None


def test_corrupt_samples_are_skipped_counted_and_replaced_from_the_same_buffer(tmp_path):
    storage = SampleStorage(tmp_path / "samples.db", capacity=42)
    buffers = SampleBuffers.open(storage, ("steering",), ready_threshold=1.0, seed=5)
    good = full_set("steering")
    not_jpeg = [replace(s, frame=b"definitely not a jpeg") for s in good.samples[:10]]
    # Frames twice as wide as the width stored with them: the wrong shape.
    wrong_shape = [
        replace(make_sample(dict(s.outputs), width=WIDTH * 2), width=WIDTH)
        for s in good.samples[10:]
    ]
    no_target = [replace(s, outputs={"steering": float("nan")}) for s in wrong_shape[:3]]
    buffers.add_set(good)
    buffers.add_set(SampleSet("steering", tuple(not_jpeg + no_target + wrong_shape[3:])))
    with BatchSource(buffers, batch_size=21, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS) as source:
        batch = source.next_batch(timeout=WAIT_S)
    # Whichever 21 were drawn first, every corrupt one was replaced until only good ones remain.
    assert len(batch.x) == 21
    for frame, steering in zip(batch.x, batch.y["steering"], strict=True):
        assert abs(frame.mean() - grey_level(float(steering))) < 2.5
    assert storage.counters()["corrupt_samples"] == 21
    assert buffers.fill() == {"steering": 0}


def test_a_batch_size_smaller_than_the_buffer_count_is_rejected(tmp_path):
    buffers = open_buffers(tmp_path, capacity=42)
    with pytest.raises(ValueError, match="batch_size 1 is smaller than the number of buffers"):
        BatchSource(buffers, batch_size=1, frame_size=(WIDTH, HEIGHT), outputs=OUTPUTS)


def test_with_several_uses_a_sample_leaves_memory_and_storage_at_its_last_draw(tmp_path):
    storage = SampleStorage(tmp_path / "samples.db", capacity=100)
    buffers = SampleBuffers.open(
        storage, ("steering",), ready_threshold=0.01, seed=3, uses_per_sample=3
    )
    buffers.add_set(_reuse_set(4))
    draws = [s.id for _ in range(12) for s in buffers.draw(1)]
    # 4 samples x 3 uses = 12 draws; each drawn exactly 3 times, then gone everywhere.
    assert sorted(collections.Counter(draws).values()) == [3, 3, 3, 3]
    assert buffers.fill() == {"steering": 0}
    assert storage.load() == []


def test_discard_removes_a_sample_that_still_had_uses(tmp_path):
    storage = SampleStorage(tmp_path / "samples.db", capacity=100)
    buffers = SampleBuffers.open(
        storage, ("steering",), ready_threshold=0.01, seed=3, uses_per_sample=5
    )
    buffers.add_set(_reuse_set(2))
    (first,) = buffers.draw(1)
    buffers.discard([first])
    assert first.id not in {s.id for s in storage.load()}
    assert buffers.fill() == {"steering": 1}


def _reuse_set(count: int) -> SampleSet:
    samples = tuple(
        make_sample({"steering": i / count, "throttle_brake": 0.0}) for i in range(count)
    )
    return SampleSet(output="steering", samples=samples)
