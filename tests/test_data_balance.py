"""Balancing_v3/v4: full sets of one sample per bin, all outputs kept, stale sets dropped."""

from __future__ import annotations

import random

import pytest

from engine.core.config import DataConfig
from engine.data.balance import Balancer, BalancingStage, balance_score
from tests.data_helpers import STEERING, THROTTLE_BRAKE, make_sample, value_in_bin

BOTH = {"steering": STEERING, "throttle_brake": THROTTLE_BRAKE}
STEERING_ONLY = DataConfig(balanced_outputs=("steering",))


def steer(rng: random.Random) -> float:
    """Steering as a driver produces it: mostly continuous, sometimes exactly straight."""
    return 0.0 if rng.random() < 0.05 else rng.uniform(-1, 1)


def pedal(rng: random.Random) -> float:
    """throttle_brake: continuous, sometimes pinned at full brake, coasting or full throttle."""
    return rng.choice((-1.0, 0.0, 1.0)) if rng.random() < 0.15 else rng.uniform(-1, 1)


def steering_values() -> list[float]:
    return [value_in_bin(STEERING, i) for i in range(len(STEERING))]


def test_a_set_is_emitted_once_every_bin_has_a_sample():
    balancer = Balancer(STEERING, BOTH, window_steps=1000)
    results = []
    for value in steering_values():
        balancer.step()
        results.append(balancer.take(make_sample({"steering": value, "throttle_brake": 0.3})))
    assert results[:-1] == [None] * 20
    sample_set = results[-1]
    assert sample_set.output == "steering"
    assert [STEERING.index(s.outputs["steering"]) for s in sample_set.samples] == list(range(21))


def test_every_sample_of_a_set_keeps_all_outputs():
    stage = BalancingStage(STEERING_ONLY, window_steps=1000)
    sets = []
    for i, value in enumerate(steering_values()):
        outputs = {"steering": value, "throttle_brake": -0.5 + i / 40}
        sets += stage.offer(outputs, lambda outputs=outputs: make_sample(outputs))
    (sample_set,) = sets
    for i, sample in enumerate(sample_set.samples):
        assert sample.outputs == {"steering": steering_values()[i], "throttle_brake": -0.5 + i / 40}


def test_a_filled_bin_wants_no_more_samples_so_their_frames_are_never_rendered():
    stage = BalancingStage(STEERING_ONLY, window_steps=1000)
    rendered = []

    def render() -> object:
        rendered.append(1)
        return make_sample({"steering": 0.0, "throttle_brake": 0.0})

    for _ in range(5):
        stage.offer({"steering": 0.0, "throttle_brake": 0.0}, render)
    assert len(rendered) == 1


def test_a_set_not_completed_within_the_window_is_dropped_and_its_empty_bins_starve():
    stage = BalancingStage(STEERING_ONLY, window_steps=10)
    # Only steering 0.0 and 0.5 ever appear: 19 of 21 bins stay empty.
    for step in range(25):
        outputs = {"steering": 0.5 if step % 2 else 0.0, "throttle_brake": 1.0}
        assert stage.offer(outputs, lambda outputs=outputs: make_sample(outputs)) == []
    stats = stage.stats().balancers["steering"]
    assert stats.sets_dropped == 2 and stats.sets_completed == 0
    assert stats.starving["[-1.0,-0.9)"] == 2
    assert "0.0" not in stats.starving and "(0.4,0.5]" not in stats.starving


def test_a_dropped_set_starts_over_empty():
    balancer = Balancer(STEERING, BOTH, window_steps=3)
    balancer.step()
    balancer.take(make_sample({"steering": 0.0, "throttle_brake": 0.0}))
    for _ in range(3):
        balancer.step()
    assert balancer.wants({"steering": 0.0}) is True


def test_nan_or_out_of_range_outputs_are_rejected_counted_and_never_rendered():
    stage = BalancingStage(DataConfig(), window_steps=100)

    def render() -> object:
        raise AssertionError("a rejected sample must not be rendered")

    stage.offer({"steering": float("nan"), "throttle_brake": 0.0}, render)
    stage.offer({"steering": 0.0, "throttle_brake": 1.5}, render)
    stage.offer({"steering": 0.0}, render)
    assert stage.stats().rejected == {"steering": 1, "throttle_brake": 2}


def test_a_sample_goes_to_one_buffer_only():
    stage = BalancingStage(DataConfig(), window_steps=10_000)
    rng = random.Random(3)
    sets = []
    for _ in range(3000):
        outputs = {"steering": steer(rng), "throttle_brake": pedal(rng)}
        sets += stage.offer(outputs, lambda outputs=outputs: make_sample(outputs))
    assert {s.output for s in sets} == {"steering", "throttle_brake"}
    in_sets = [id(sample) for sample_set in sets for sample in sample_set.samples]
    assert len(in_sets) == len(set(in_sets))


def test_v4_balances_the_other_output_better_than_v3_on_a_skewed_stream():
    def secondary_balance(balancing: str) -> float:
        data = DataConfig(balanced_outputs=("steering",), balancing=balancing, v4_candidates=8)
        stage = BalancingStage(data, window_steps=100_000)
        rng = random.Random(7)
        counts: dict[str, int] = {}
        for _ in range(20_000):
            # Full throttle 80% of the time, like an NPC on straights.
            throttle = 1.0 if rng.random() < 0.8 else rng.uniform(-1, 1)
            outputs = {"steering": steer(rng), "throttle_brake": throttle}
            for sample_set in stage.offer(outputs, lambda outputs=outputs: make_sample(outputs)):
                for sample in sample_set.samples:
                    label = THROTTLE_BRAKE.labels[
                        THROTTLE_BRAKE.index(sample.outputs["throttle_brake"])
                    ]
                    counts[label] = counts.get(label, 0) + 1
        assert sum(counts.values()) >= 21 * 20
        return balance_score(counts, len(THROTTLE_BRAKE))

    v3, v4 = secondary_balance("v3"), secondary_balance("v4")
    assert v4 > v3 + 0.2, (v3, v4)


def test_balance_score_is_one_for_even_counts_and_zero_for_one_bin():
    assert balance_score({"a": 5, "b": 5, "c": 5}, 3) == pytest.approx(1.0)
    assert balance_score({"a": 9, "b": 0, "c": 0}, 3) == 0.0
