"""Running the game off-screen: as fast as possible, or paced to the wall clock.

Example::

    stats = run_headless(game, Autopilot(config.autopilot, seed=7), seconds=10.0)
    stats.frames, stats.fps

Each tick renders the hood view, the frame a collector or driver would use,
so `fps` is an honest figure of what a headless game delivers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.sim.autopilot import Autopilot
from engine.sim.game import Game
from engine.sim.score import RoadProgress


@dataclass(frozen=True)
class RunStats:
    """How a run went: frames rendered and the wall-clock seconds it took."""

    frames: int
    wall_s: float
    # Metres gained along the track on the road (engine/sim/score.py): the eval score's numerator.
    progress_m: float = 0.0

    @property
    def fps(self) -> float:
        """Frames rendered per wall-clock second."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def run_headless(
    game: Game,
    pilot: Autopilot | None,
    seconds: float | None,
    realtime: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunStats:
    """Tick and render the hood view for `seconds` of game time; without a pilot nobody drives.

    `seconds=None` runs until Ctrl-C (KeyboardInterrupt), which ends the run normally.
    """
    ticks = math.inf if seconds is None else round(seconds * game.config.tick_hz)
    progress = RoadProgress(game)
    started = clock()
    tick = 0
    try:
        while tick < ticks:
            _step(game, pilot, progress)
            tick += 1
            if realtime:
                # Sleeping is the point here: game time must not run ahead of the wall clock.
                ahead = started + tick * game.dt - clock()
                if ahead > 0:
                    sleep(ahead)
    except KeyboardInterrupt:
        if seconds is not None:
            raise
    return RunStats(frames=tick, wall_s=clock() - started, progress_m=progress.metres)


def _step(game: Game, pilot: Autopilot | None, progress: RoadProgress) -> None:
    """One tick: the pilot decides, the game moves, the hood view renders."""
    if pilot is not None:
        game.set_controls(pilot.decide(game))
    progress.tick()
    game.render_hood()
