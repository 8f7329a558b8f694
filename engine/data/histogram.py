"""`data histogram`: bar charts of bin counts, one per buffer and output, like the reference's.

Example::

    draw_balance_chart(data_stats(storage, config.data), Path("balance.png"))

Rows are buffers, columns are outputs. The diagonal (a buffer's own output) is
what Balancing_v3 flattens; the other panels show how skewed the remaining
outputs are, which is what v4 improves. Empty bins get a red label and are
counted in the panel's title, so starving bins stand out at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A bare Figure (no pyplot) draws straight to a file: no display, no global backend state.
from matplotlib.figure import Figure

_BAR = "#3b7dd8"
_OWN_BAR = "#2a9d5b"
_EMPTY = "#d62828"


def draw_balance_chart(report: dict[str, Any], out: Path) -> Path:
    """Write a PNG grid of bin-count bar charts from a `data_stats` report; return its path."""
    buffers = report["buffers"]
    outputs = list(next(iter(buffers.values()))["bins"]) if buffers else []
    rows, cols = max(1, len(buffers)), max(1, len(outputs))
    figure = Figure(figsize=(6.0 * cols, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for row, (buffer, info) in enumerate(buffers.items()):
        for col, output in enumerate(outputs):
            _draw_panel(axes[row][col], buffer, output, info, own=buffer == output)
    figure.suptitle(
        f"Sample balance ({report['storage']}): "
        f"{sum(b['samples'] for b in buffers.values())} samples",
        fontsize=12,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    return out


def _draw_panel(axis: Any, buffer: str, output: str, info: dict[str, Any], *, own: bool) -> None:
    counts = info["bins"][output]
    labels, values = list(counts), list(counts.values())
    colours = [_OWN_BAR if own else _BAR] * len(values)
    axis.bar(range(len(values)), values, color=colours)
    axis.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    # An empty bin has no bar to see: its label turns red and the title counts it.
    empty = [i for i, v in enumerate(values) if v == 0]
    for i in empty:
        axis.get_xticklabels()[i].set_color(_EMPTY)
    axis.tick_params(axis="y", labelsize=8)
    balance = info["balance"][output]
    starving = f", {len(empty)} empty" if empty else ""
    axis.set_title(
        f"{buffer} buffer: {output}  (balance {balance:.2f}{starving})",
        fontsize=10,
        fontweight="bold" if own else "normal",
    )
