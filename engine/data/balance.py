"""Balancing_v3 (and the optional v4): turn a stream of samples into balanced sets.

Example::

    stage = BalancingStage(config.data, window_steps=1800)
    for each sampling step:
        for sample_set in stage.offer(outputs, make_sample):   # make_sample() renders + encodes
            sink(sample_set)

One `Balancer` per balanced output k keeps an open set with one slot per bin of
k. A sample whose k-bin slot is still free joins the set with *all* its outputs
(that is what lets v3 train every head on the same images). When every slot is
filled the set is emitted; when the set stays incomplete for `window_steps`
sampling steps it is dropped and its empty bins are counted as starving, so the
streamer can see which bins the driving never produces.

v4 keeps up to `v4_candidates` samples per slot and, on completion, picks per
slot the candidate whose *other* outputs fall in the bins this balancer has
emitted least so far (running histograms), which flattens the other outputs'
distribution the reference's v3 left skewed. v3 is v4 with one candidate.

A sample goes to at most one balancer (they take turns having first pick), so no
frame ends up in two buffers and gets trained on twice. `make_sample` is only
called when some balancer wants the sample: rendering and encoding frames
nobody keeps is most of a collector's time otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from engine.core.config import DataConfig
from engine.core.samples import BalancerStats, BalanceStats, Sample, SampleSet
from engine.data.bins import OutputBins, bins_from_config

# The counters' schema is declared once in the foundation: collector reports carry it.
__all__ = ["BalanceStats", "Balancer", "BalancerStats", "BalancingStage", "balance_score"]


class BalancingStage:
    """All balancers of a collector; decides which (if any) takes each sample."""

    def __init__(self, data: DataConfig, *, window_steps: int) -> None:
        self._bins = bins_from_config(data)
        candidates = data.v4_candidates if data.balancing == "v4" else 1
        self.balancers = [
            Balancer(self._bins[name], self._bins, window_steps=window_steps, candidates=candidates)
            for name in data.balanced_outputs
        ]
        self._stats = BalanceStats(strategy=data.balancing)
        self._first_pick = 0

    def offer(
        self, outputs: Mapping[str, float], make_sample: Callable[[], Sample]
    ) -> list[SampleSet]:
        """Count a sampling step; hand the sample to a balancer that wants it; return done sets."""
        self._stats.steps += 1
        for balancer in self.balancers:
            balancer.step()
        bad = [
            name
            for name, bins in self._bins.items()
            if bins.index(outputs.get(name, math.nan)) is None
        ]
        if bad:
            for name in bad:
                self._stats.rejected[name] = self._stats.rejected.get(name, 0) + 1
            return []
        count = len(self.balancers)
        order = [self.balancers[(self._first_pick + i) % count] for i in range(count)]
        self._first_pick = (self._first_pick + 1) % count
        for balancer in order:
            if balancer.wants(outputs):
                sample_set = balancer.take(make_sample())
                return [sample_set] if sample_set is not None else []
        return []

    def stats(self) -> BalanceStats:
        """A snapshot of the counters (safe to send to another process)."""
        return BalanceStats(
            strategy=self._stats.strategy,
            steps=self._stats.steps,
            balancers={b.bins.output: b.stats_snapshot() for b in self.balancers},
            rejected=dict(self._stats.rejected),
        )


class Balancer:
    """Balancing for one output: fills one slot per bin, emits full sets, drops stale ones."""

    def __init__(
        self,
        bins: OutputBins,
        all_bins: Mapping[str, OutputBins],
        *,
        window_steps: int,
        candidates: int = 1,
    ) -> None:
        if window_steps < 1 or candidates < 1:
            raise ValueError(
                f"window_steps ({window_steps}) and candidates ({candidates}) must be >= 1"
            )
        self.bins = bins
        self._others = {name: b for name, b in all_bins.items() if name != bins.output}
        self._window_steps = window_steps
        self._max_candidates = candidates
        self._slots: list[list[Sample]] = [[] for _ in range(len(bins))]
        self._steps_open = 0
        # Running histograms of the other outputs over everything emitted (v4's guide).
        self._histograms = {name: [0] * len(b) for name, b in self._others.items()}
        self._stats = BalancerStats(output=bins.output)

    def step(self) -> None:
        """Count one sampling step; drop the open set when its window has run out."""
        self._steps_open += 1
        if self._steps_open <= self._window_steps:
            return
        if any(self._slots):
            self._stats.sets_dropped += 1
            for index, slot in enumerate(self._slots):
                if not slot:
                    label = self.bins.labels[index]
                    self._stats.starving[label] = self._stats.starving.get(label, 0) + 1
        self._open_new_set()

    def wants(self, outputs: Mapping[str, float]) -> bool:
        """Whether the slot for these outputs still has room (outputs must be binnable)."""
        index = self.bins.index(outputs[self.bins.output])
        return index is not None and len(self._slots[index]) < self._max_candidates

    def take(self, sample: Sample) -> SampleSet | None:
        """Add a wanted sample to its slot; return the set if that completed it."""
        index = self.bins.index(sample.outputs[self.bins.output])
        if index is None or len(self._slots[index]) >= self._max_candidates:
            raise ValueError(
                f"{self.bins.output}={sample.outputs[self.bins.output]!r} is not wanted; "
                "call wants() first"
            )
        self._slots[index].append(sample)
        if not all(self._slots):
            return None
        chosen = tuple(self._choose(slot) for slot in self._slots)
        self._stats.sets_completed += 1
        self._open_new_set()
        return SampleSet(output=self.bins.output, samples=chosen)

    def stats_snapshot(self) -> BalancerStats:
        """A copy of this balancer's counters."""
        return BalancerStats(
            output=self._stats.output,
            sets_completed=self._stats.sets_completed,
            sets_dropped=self._stats.sets_dropped,
            starving=dict(self._stats.starving),
            emitted_bins={
                name: {self._others[name].labels[i]: n for i, n in enumerate(counts) if n}
                for name, counts in self._histograms.items()
            },
        )

    def _choose(self, candidates: list[Sample]) -> Sample:
        # Fewest already-emitted samples in the candidate's bins of the other outputs wins;
        # ties go to the earliest candidate, so with one candidate this is plain v3.
        def crowding(sample: Sample) -> int:
            return sum(self._histograms[name][i] for name, i in self._other_bins(sample))

        best = min(candidates, key=crowding)
        for name, index in self._other_bins(best):
            self._histograms[name][index] += 1
        return best

    def _other_bins(self, sample: Sample) -> list[tuple[str, int]]:
        found = []
        for name, bins in self._others.items():
            index = bins.index(sample.outputs.get(name, math.nan))
            if index is not None:
                found.append((name, index))
        return found

    def _open_new_set(self) -> None:
        self._slots = [[] for _ in range(len(self.bins))]
        self._steps_open = 0


def balance_score(counts: Mapping[str, int], n_bins: int) -> float:
    """How evenly samples spread over an output's bins: normalised entropy, 1.0 = perfectly even.

    Used by `data stats` to show v4's effect on the outputs a buffer is not
    balanced for; 0.0 means every sample sits in one bin.
    """
    total = sum(counts.values())
    if total == 0 or n_bins < 2:
        return 0.0
    entropy = -sum(n / total * math.log(n / total) for n in counts.values() if n)
    return entropy / math.log(n_bins)
