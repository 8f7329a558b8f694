"""The eval score, counted inside the game: progress on the road per off-road event.

Example::

    progress = RoadProgress(game)
    for each tick:
        progress.tick()                    # instead of game.tick()
    metres_per_offroad(progress.metres, game.telemetry().offroad_events)

Progress is measured along the track's centre line, and only while the car is
on the road, so circling, reversing or cutting across the grass earns nothing.
`eval` (headless, in-process) and a game window run as a foreign program (the
dress rehearsal, where the score goes to the scorer and never to the driver)
count it with this one class, so their figures compare.
"""

from __future__ import annotations

from engine.sim.game import Game


class RoadProgress:
    """Ticks a game and adds up the metres each tick gained along the track on the road."""

    def __init__(self, game: Game) -> None:
        self._game = game
        self.metres = 0.0

    def tick(self) -> None:
        """One game tick; a respawn between ticks is not progress (measured tick by tick)."""
        game = self._game
        before = game.track_s
        game.tick()
        if game.telemetry().on_road:
            length = game.track.length_m
            # Wrapped into (-L/2, L/2]: crossing the start line is progress, reversing is not.
            self.metres += (game.track_s - before + length / 2) % length - length / 2


def metres_per_offroad(progress_m: float, offroad_events: int) -> float:
    """The score: progress on the road (m) / (off-road events + 1).

    The "+ 1" keeps a clean run finite and makes one off-road event worth half a clean run.
    """
    return progress_m / (offroad_events + 1)
