"""A version's loss chart, read from its real TensorBoard event files and drawn to a PNG.

Example::

    curves = read_loss_curves(Path("data/tensorboard/model_0000_demo_v1"))
    curves["total"].steps, curves["total"].values          # (0, 50, 100, ...), (0.31, ...)
    draw_loss_chart(curves, Path("report/model_0000_demo_v1.tb.png"),
                    title="model_0000_demo_v1", streamed=[(300, 600)], smoothing=0.6)

The trainer writes `loss/total` and `loss/<output>` with TensorBoard's own
writer (`models/tensorboard_log.py`), as tensors of the "scalars" plugin, as
`tf.summary.scalar` does; this reads them with TensorBoard's own `EventAccumulator`,
keeping every point. A trainer that resumes from a checkpoint older than its
last logged batch logs those batches again: like TensorBoard after a restart,
the newer run replaces the older run's points from that batch on.

The chart looks like TensorBoard's scalar card: each loss as a faint raw line
under its smoothed line (TensorBoard's debiased exponential moving average),
batches on the x axis, streamed training periods shaded. It is drawn on a bare
matplotlib `Figure` without the "Software" PNG tag, so the same events give
the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

LOSS_PREFIX = "loss/"
# TensorBoard's default position of its smoothing slider.
DEFAULT_SMOOTHING = 0.6

# Colours by curve position ("total" first), as TensorBoard cycles its runs' colours.
_PALETTE = ("#ff7043", "#0077bb", "#009988", "#ee3377", "#33bbee", "#cc3311", "#bbbbbb")
# Twitch purple: the batches the stream watched being trained.
_STREAMED = "#9146ff"


@dataclass(frozen=True)
class LossCurve:
    """One loss over a version's batches: strictly increasing steps, one value each."""

    steps: tuple[int, ...]
    values: tuple[float, ...]


def read_loss_curves(directory: Path) -> dict[str, LossCurve]:
    """The `loss/*` curves of one version's event-file directory, "total" first, then by name.

    A missing directory or one without loss tags gives an empty dict.
    """
    if not directory.is_dir():
        return {}
    # 0 keeps every point; TensorBoard's default samples tensors down to 10.
    accumulator = EventAccumulator(str(directory), size_guidance={TENSORS: 0})
    accumulator.Reload()
    names = sorted(
        tag.removeprefix(LOSS_PREFIX)
        for tag in accumulator.Tags()[TENSORS]
        if tag.startswith(LOSS_PREFIX)
    )
    names.sort(key=lambda name: name != "total")
    curves = {}
    for name in names:
        events = accumulator.Tensors(LOSS_PREFIX + name)
        points = [
            (event.wall_time, event.step, float(make_ndarray(event.tensor_proto)))
            for event in events
        ]
        curves[name] = _latest_run(points)
    return curves


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing: an exponential moving average with debiasing.

    Debiasing divides by the weight the average has accumulated, so the first
    points are not pulled towards 0; a constant series and non-finite values are
    left as they are, as in TensorBoard. `weight` is the slider, in [0, 1).
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    if all(value == values[0] for value in values):
        return list(values)
    smoothed = []
    last = 0.0
    accumulated = 0
    for value in values:
        if not math.isfinite(value):
            smoothed.append(value)
            continue
        last = last * weight + (1.0 - weight) * value
        accumulated += 1
        smoothed.append(last / (1.0 - weight**accumulated))
    return smoothed


def draw_loss_chart(
    curves: Mapping[str, LossCurve],
    out: Path,
    *,
    title: str,
    streamed: Iterable[tuple[int, int]],
    smoothing: float,
) -> Path:
    """Write the curves as a PNG chart, shading the streamed (start, end) batch ranges."""
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    axis = figure.subplots()
    for index, (start, end) in enumerate(streamed):
        label = "streamed" if index == 0 else None
        axis.axvspan(start, end, color=_STREAMED, alpha=0.1, linewidth=0, label=label)
    for index, (name, curve) in enumerate(curves.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        # A single point draws no line; a marker keeps it visible.
        marker = "o" if len(curve.steps) == 1 else None
        axis.plot(curve.steps, curve.values, color=colour, alpha=0.25, linewidth=1, marker=marker)
        smoothed = smooth(curve.values, smoothing)
        axis.plot(curve.steps, smoothed, color=colour, linewidth=1.6, marker=marker, label=name)
    axis.set_title(f"{title}  (smoothing {smoothing:g})", fontsize=11)
    axis.set_xlabel("batch")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Without "Software" (matplotlib's version) the bytes depend only on the data.
    figure.savefig(out, dpi=100, metadata={"Software": None})
    return out


def _latest_run(points: Iterable[tuple[float, int, float]]) -> LossCurve:
    """(wall time, step, value) -> one value per step; a step logged again replaces the rest.

    When a step is not past the last one kept, the trainer restarted from an
    older checkpoint: the points from that step on belong to the abandoned run.
    """
    kept: list[tuple[int, float]] = []
    for _, step, value in sorted(points, key=lambda point: point[0]):
        while kept and kept[-1][0] >= step:
            kept.pop()
        kept.append((step, value))
    return LossCurve(tuple(step for step, _ in kept), tuple(value for _, value in kept))
