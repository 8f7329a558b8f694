"""What `charles-stream data stats` reports about the stored samples, as one plain dict.

Example::

    with SampleStorage(path, capacity=config.data.buffer_capacity) as storage:
        report = data_stats(storage, config.data)
    report["buffers"]["steering"]["fill"]            # 0.93
    report["buffers"]["steering"]["balance"]         # {"steering": 1.0, "throttle_brake": 0.61}
    report["starving_bins"]["steering"]              # {"[-1.0,-0.9)": 4}

`balance` is the normalised entropy of each output's bin counts inside a buffer
(1.0 = perfectly even): the buffer's own output should be near 1.0; the other
outputs show what Balancing_v3 leaves skewed and how much v4 recovers.
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.config import DataConfig
from engine.data.balance import balance_score
from engine.data.bins import bins_from_config
from engine.data.storage import SampleStorage


def data_stats(storage: SampleStorage, data: DataConfig) -> dict[str, Any]:
    """Fill, bin counts and balance per buffer; balancing, intake and corruption counters."""
    bins = bins_from_config(data)
    stored = storage.outputs_by_buffer()
    buffers = {}
    for buffer in data.balanced_outputs:
        rows = stored.get(buffer, [])
        counts = {}
        for name, output_bins in bins.items():
            per_bin = dict.fromkeys(output_bins.labels, 0)
            for outputs in rows:
                index = output_bins.index(outputs.get(name, math.nan))
                if index is not None:
                    per_bin[output_bins.labels[index]] += 1
            counts[name] = per_bin
        buffers[buffer] = {
            "samples": len(rows),
            "capacity": data.buffer_capacity,
            "fill": len(rows) / data.buffer_capacity,
            "bins": counts,
            "balance": {
                name: round(balance_score(per_bin, len(bins[name])), 4)
                for name, per_bin in counts.items()
            },
        }
    counters = storage.counters()
    report: dict[str, Any] = {
        "storage": str(storage.path),
        "ready": all(b["fill"] >= data.ready_threshold for b in buffers.values()),
        "ready_threshold": data.ready_threshold,
        "buffers": buffers,
        "samples_per_s": storage.intake_per_s(),
        "samples_stored_total": counters.get("samples_stored", 0),
        "samples_drawn_total": counters.get("samples_drawn", 0),
        "samples_rotated_out": counters.get("samples_rotated_out", 0),
        "corrupt_samples": counters.get("corrupt_samples", 0),
    }
    report.update(_collector_totals(storage.collector_stats()))
    return report


def _collector_totals(collectors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sum every collector's last cumulative report (CollectorStats.as_dict) into totals."""
    completed: dict[str, int] = {}
    dropped: dict[str, int] = {}
    starving: dict[str, dict[str, int]] = {}
    rejected: dict[str, int] = {}
    strategies = set()
    respawns = episodes = 0
    for report in collectors.values():
        stats = report["balance"]
        respawns += report["respawns"]
        episodes += report["episodes"]
        strategies.add(stats["strategy"])
        for output, balancer in stats["balancers"].items():
            completed[output] = completed.get(output, 0) + balancer["sets_completed"]
            dropped[output] = dropped.get(output, 0) + balancer["sets_dropped"]
            per_bin = starving.setdefault(output, {})
            for label, count in balancer["starving"].items():
                per_bin[label] = per_bin.get(label, 0) + count
        for output, count in stats["rejected"].items():
            rejected[output] = rejected.get(output, 0) + count
    return {
        "collectors": len(collectors),
        "episodes": episodes,
        "respawns": respawns,
        "balancing": sorted(strategies),
        "sets_completed": completed,
        "sets_dropped": dropped,
        "starving_bins": {
            output: dict(sorted(per_bin.items(), key=lambda item: -item[1]))
            for output, per_bin in starving.items()
        },
        "rejected_values": rejected,
    }
