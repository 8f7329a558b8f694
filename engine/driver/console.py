"""The Player Console: what the model predicts and what the pad does with it.

Example::

    live.update(player_table(driver_status))

The reference's Player Console (raw predictions, controller values, FPS,
PPS, the loaded version and batch, unstucks) and the inference engine it runs
on, drawn from one `DriverStatus`, and below it where a turn of the loop
spends its time: p50 / p95 per stage (`engine.driver.stage_times`), so a
streamer sees at a glance whether the model, the capture or the overlay's
JPEGs hold the car back.
`charles-stream drive` shows it alone; the app shows it beside the Trainer
Console (`engine/app/consoles.py`).
"""

from __future__ import annotations

from rich.table import Table

from engine.core.wire import DriverStatus

# Wide enough that "Player: model_0003_xception_v4 (batch 162,650)" stays on one line.
MIN_WIDTH = 48


def player_table(status: DriverStatus | None) -> Table:
    """The Player Console: what the model predicts and what the pad does with it."""
    if status is None:
        table = Table(
            title="Player: waiting for the driver", show_header=False, min_width=MIN_WIDTH
        )
        table.add_row("status", "starting")
        return table
    table = Table(
        title=f"Player: {status.version} (batch {status.batch:,})",
        show_header=False,
        min_width=MIN_WIDTH,
    )
    for name, value in status.predictions.items():
        table.add_row(f"prediction {name}", f"{value:+.3f}")
    for name, value in status.pad.items():
        table.add_row(f"pad {name}", f"{value:.3f}")
    table.add_row("FPS / PPS", f"{status.fps:.1f} / {status.pps:.1f}")
    if status.engine:
        table.add_row("engine", status.engine)
    table.add_row("unstucks", str(status.unstucks))
    table.add_row("distance / off-road", f"{status.distance_m:,.0f} m / {status.offroad_events}")
    if status.stages:
        table.add_row("stage times", "p50 / p95 ms")
    for stage, took in status.stages.items():
        table.add_row(f"  {stage.replace('_', ' ')}", f"{took.p50_ms:.2f} / {took.p95_ms:.2f}")
    return table
