"""Bins that cut an output's values into classes for balancing (the reference's Balancing_v2 bins).

Example::

    bins = OutputBins("steering", "axis", divisions=10)
    len(bins)             # 21
    bins.index(0.0)       # 10 -> bins.labels[10] == "0.0"
    bins.index(0.1)       # 11 -> "(0.0,0.1]"
    bins.index(float("nan"))  # None: not binned (the balancer counts it as rejected)

Three kinds, with `d` divisions per unit (d = 10 gives bins 0.1 wide):

- ``axis`` (steering, [-1, 1]): exact 0.0 is its own bin, then d intervals each
  side: ``[-1.0,-0.9) ... [-0.1,0.0), 0.0, (0.0,0.1] ... (0.9,1.0]``; 2d+1 bins.
- ``trigger`` ([0, 1]): exact 0.0 and exact 1.0 are their own bins:
  ``0.0, (0.0,0.1] ... (0.8,0.9], (0.9,1.0), 1.0``; d+2 bins.
- ``trigger_pair`` (the combined throttle_brake, [-1, 1]): the trigger mirrored,
  exact -1.0, 0.0 and 1.0 their own bins:
  ``-1.0, (-1.0,-0.9), [-0.9,-0.8) ... [-0.1,0.0), 0.0, (0.0,0.1] ... (0.9,1.0), 1.0``;
  2d+3 bins.

Boundary rule: an interval is closed on its end away from zero, so a boundary
value belongs to the bin nearer zero (0.1 -> (0.0,0.1], -0.1 -> [-0.1,0.0),
0.9 -> (0.8,0.9]). The rule is symmetric, so v and -v always land in mirrored
bins. Where an end value has no bin of its own (axis: -1.0 and 1.0) it joins the
outermost interval. NaN, infinities and values outside the kind's range are not
binned (`index` returns None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.core.config import BinsKind, DataConfig

# Decimal places kept before rounding up, so 0.3 * 10 (= 3.0000000000000004) is 3, not 4.
_PRECISION = 9


@dataclass(frozen=True)
class OutputBins:
    """The bins of one output; `index` maps a value to its bin, `labels` names each bin."""

    output: str
    kind: BinsKind
    divisions: int = 10
    labels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _labels(self.kind, self.divisions))

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, value: float) -> int | None:
        """The bin of `value`, or None when it is NaN, infinite or outside the kind's range."""
        if not math.isfinite(value):
            return None
        low = 0.0 if self.kind == "trigger" else -1.0
        if not low <= value <= 1.0:
            return None
        d = self.divisions
        if self.kind == "axis":
            if value == 0.0:
                return d
            step = _step(abs(value), d)
            return d + step if value > 0 else d - step
        if self.kind == "trigger":
            if value == 0.0:
                return 0
            return d + 1 if value == 1.0 else _step(value, d)
        if value == 0.0:
            return d + 1
        if abs(value) == 1.0:
            return 2 * d + 2 if value > 0 else 0
        step = _step(abs(value), d)
        return d + 1 + step if value > 0 else d + 1 - step


def bins_from_config(data: DataConfig) -> dict[str, OutputBins]:
    """The bins of every output the samples record, from `[data.bins]`."""
    return {
        name: OutputBins(name, data.bins[name].kind, data.bins[name].divisions)
        for name in data.outputs
    }


def _step(magnitude: float, divisions: int) -> int:
    """Which interval (1..divisions) a magnitude in (0, 1] falls in, closed away from zero."""
    return max(1, math.ceil(round(magnitude * divisions, _PRECISION)))


def _labels(kind: BinsKind, d: int) -> tuple[str, ...]:
    edges = [i / d for i in range(d + 1)]
    positive = [f"({_fmt(edges[i])},{_fmt(edges[i + 1])}]" for i in range(d)]
    negative = [f"[-{_fmt(edges[i + 1])},-{_fmt(edges[i])})" for i in range(d)]
    negative[0] = f"[-{_fmt(edges[1])},0.0)"
    if kind == "axis":
        return (*reversed(negative), "0.0", *positive)
    positive[-1] = positive[-1][:-1] + ")"
    if kind == "trigger":
        return ("0.0", *positive, "1.0")
    negative[-1] = "(" + negative[-1][1:]
    return ("-1.0", *reversed(negative), "0.0", *positive, "1.0")


def _fmt(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
