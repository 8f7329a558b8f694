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

`LapClock` times the laps the game counts (`Telemetry.laps`, forward
crossings of the start line): a lap is timed from one crossing to the next,
and a respawn voids the lap under way, since the car did not drive it.
"""

from __future__ import annotations

from engine.sim.game import Game, Telemetry


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


class LapClock:
    """Lap times from the game's lap counter: crossing to crossing, none across a respawn.

    Example::

        clock = LapClock()
        for each tick:
            clock.update(game.telemetry())
            if respawned:
                clock.void()
        clock.lap_times_s       # (118.4, 112.9): whole laps driven, in game seconds
    """

    def __init__(self) -> None:
        self.lap_times_s: tuple[float, ...] = ()
        self._laps: int | None = None
        self._since: float | None = None

    def update(self, telemetry: Telemetry) -> None:
        """Read the lap counter after a tick: a crossing ends the timed lap and starts the next."""
        if self._laps is not None and telemetry.laps > self._laps:
            if self._since is not None:
                self.lap_times_s = (*self.lap_times_s, telemetry.time - self._since)
            self._since = telemetry.time
        self._laps = telemetry.laps

    def void(self) -> None:
        """The car was moved (respawned): no lap is timed until its next crossing starts one."""
        self._since = None
