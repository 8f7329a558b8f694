"""The app's live terminal view: the reference's Player Console and Server/Trainer Console.

Example::

    with Live(render(state.snapshot()), console=Console(stderr=True)) as live:
        while running:
            live.update(render(state.snapshot()))

Player: raw predictions, controller values, FPS, PPS, the loaded version and
batch, unstucks. Server/Trainer: the streamed version, trainer status, batch,
losses, samples/s, buffer fill, every process with its memory (RSS, as the
supervisor last sampled it; the Player Console shows the driver's), each node
on another PC with its host name, and the newest connection and restart
events. Pure functions of one `Snapshot` of the app's state: the app redraws
a few times a second when stderr is a terminal, and logs plainly otherwise.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from engine.core.store import MIB, ProcessState, Snapshot, nodes_elsewhere
from engine.driver.console import MIN_WIDTH, player_table

# Events shown under the trainer table; the full history is in the log.
SHOWN_EVENTS = 6


def render(state: Snapshot) -> Group:
    """Both consoles, side by side in one renderable."""
    grid = Table.grid(padding=(0, 2))
    player = player_table(state.driver)
    driver = state.processes.get("driver")
    if driver is not None and driver.rss_bytes is not None:
        player.add_row("memory", memory(driver))
    grid.add_row(player, trainer_table(state))
    return Group(grid, events_table(state))


def trainer_table(state: Snapshot) -> Table:
    """The Server/Trainer Console: training progress, buffers and the processes behind it."""
    table = Table(title=f"Trainer: {state.version or '-'}", show_header=False, min_width=MIN_WIDTH)
    trainer = state.trainer
    if trainer is None:
        table.add_row("status", "starting")
    else:
        table.add_row("status", trainer.status)
        table.add_row("batch", f"{trainer.batch:,}")
        for name, value in trainer.loss.items():
            table.add_row(f"loss {name}", f"{value:.4f}")
        table.add_row("samples/s", f"{trainer.samples_per_s:,.0f}")
        for name, fill in trainer.buffers.items():
            table.add_row(f"buffer {name}", f"{fill.fill:,} / {fill.capacity:,}")
    for name, process in state.processes.items():
        restarts = f", {process.restarts} restarts" if process.restarts else ""
        used = f", {memory(process)}" if process.rss_bytes is not None else ""
        table.add_row(name, f"{process.state}{used}{restarts}")
    if state.app_process is not None and state.app_process.rss_bytes is not None:
        table.add_row("app", memory(state.app_process))
    for name, where in nodes_elsewhere(state).items():
        table.add_row(name, where)  # a node on another PC: "on gpu-box"
    for link, value in state.connections.items():
        table.add_row(link, value)
    return table


def memory(process: ProcessState) -> str:
    """A process's RSS as last sampled, compact: "812 MB"."""
    return f"{(process.rss_bytes or 0) / MIB:,.0f} MB"


def events_table(state: Snapshot) -> Table:
    """The newest connection, restart and alert lines."""
    table = Table(title="Events", show_header=False, expand=True)
    for event in state.events[-SHOWN_EVENTS:]:
        table.add_row(event)
    return table
