"""Game.place: a car put at rest where asked, off the lane and angled; bad places refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.core.errors import UsageError
from engine.sim.game import LANE_CENTRE_M, MAX_HEADING_ERROR_RAD, Controls, Game
from engine.sim.track import ROAD_HALF_WIDTH_M
from tests.driver_helpers import small_sim

SEED = 7


def heading_error(game: Game) -> float:
    """The car's heading minus the track's direction where it stands, wrapped to (-pi, pi]."""
    error = game.car.heading - game.track.heading_at(game.track_s)
    return (error + math.pi) % (2 * math.pi) - math.pi


@pytest.mark.parametrize(("offset", "error"), [(0.4, 0.3), (-3.9, -0.35), (2.0, -1.2)])
def test_place_puts_the_car_at_rest_at_the_offset_and_angle_asked(offset, error):
    game = Game(small_sim(), seed=SEED)
    game.place(400.0, offset, error)
    telemetry = game.telemetry()
    assert game.track_s == pytest.approx(400.0, abs=0.5)
    assert telemetry.lateral_offset == pytest.approx(offset, abs=0.02)
    assert heading_error(game) == pytest.approx(error, abs=0.02)
    assert telemetry.speed == 0.0 and telemetry.on_road


def test_place_by_default_is_a_respawn_on_the_lane_centre_straight_along_the_track():
    rng = np.random.default_rng(3)
    respawned, placed = Game(small_sim(), seed=SEED), Game(small_sim(), seed=SEED)
    respawned.respawn(rng)
    placed.place(float(np.random.default_rng(3).uniform(0.0, placed.track.length_m)))
    assert placed.car == respawned.car
    assert placed.telemetry().lateral_offset == pytest.approx(LANE_CENTRE_M, abs=0.01)


def test_an_angled_car_drives_off_at_its_angle_and_the_game_stays_deterministic():
    games = [Game(small_sim(), seed=SEED) for _ in range(2)]
    for game in games:
        game.place(400.0, LANE_CENTRE_M, 0.3)
        for _ in range(round(game.config.tick_hz)):
            game.set_controls(Controls(0.0, 1.0))
            game.tick()
    assert games[0].car == games[1].car
    # About 2 m driven at 0.3 rad to the left of the track: some 0.6 m towards the centre line.
    assert games[0].telemetry().lateral_offset > LANE_CENTRE_M + 0.3


@pytest.mark.parametrize(
    ("s", "offset", "error", "words"),
    [
        (
            10.0,
            ROAD_HALF_WIDTH_M + 0.1,
            0.0,
            "offset = 4.6 m is off the road; accepted: -4.5 to 4.5",
        ),
        (10.0, -6.0, 0.0, "offset = -6 m is off the road"),
        (10.0, 0.0, MAX_HEADING_ERROR_RAD + 0.1, "heading_error = 1.6708 rad is not accepted"),
        (10.0, 0.0, -3.0, "heading_error = -3 rad is not accepted; accepted: -1.5708 to 1.5708"),
        (math.nan, 0.0, 0.0, "s = nan is not accepted; accepted: a finite number"),
        (10.0, math.inf, 0.0, "offset = inf is not accepted"),
    ],
)
def test_a_place_off_the_road_backwards_or_not_finite_is_refused(s, offset, error, words):
    game = Game(small_sim(), seed=SEED)
    before = game.car
    with pytest.raises(UsageError, match=words.replace(".", r"\.").replace("(", r"\(")):
        game.place(s, offset, error)
    assert game.car == before
