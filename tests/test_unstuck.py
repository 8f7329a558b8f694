"""A car that stops moving or stays off the road is stuck; the fix fits what is being driven."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.config import AutopilotConfig, UnstuckConfig
from engine.driver.unstuck import (
    AlertOnly,
    ButtonSequence,
    Respawn,
    StuckWatch,
    choose_action,
)
from engine.sim.autopilot import Autopilot
from engine.sim.game import Controls, Game
from tests.driver_helpers import small_sim

WATCH = UnstuckConfig(window_s=2.0, min_distance_m=3.0, offroad_s=1.0, motion_threshold=1.5)


def watch_game(
    game: Game, seconds: float, decide, *, use_telemetry: bool = True
) -> list[tuple[float, str]]:
    """Drive `seconds` of game time; every (time, reason) the watch called stuck, then reset."""
    watch = StuckWatch(WATCH)
    verdicts = []
    for _ in range(round(seconds * game.config.tick_hz)):
        game.set_controls(decide(game))
        game.tick()
        telemetry = game.telemetry() if use_telemetry else None
        reason = watch.update(game.time, telemetry, game.render_hood())
        if reason:
            verdicts.append((round(game.time, 2), reason))
            watch.reset(game.time)
    return verdicts


def stand_still(game: Game) -> Controls:
    return Controls(0.0, -1.0)


def test_a_car_driving_its_lane_is_never_stuck():
    game = Game(small_sim(), seed=3)
    pilot = Autopilot(AutopilotConfig(perturbation_interval_s=0.0), seed=3)
    assert watch_game(game, 4.0, pilot.decide) == []


def test_a_car_that_does_not_move_is_stuck_once_the_window_has_passed():
    verdicts = watch_game(Game(small_sim(), seed=3), 4.5, stand_still)
    # Watching starts at the first frame (1/30 s); a whole window later it is stuck, then again.
    assert [time for time, _ in verdicts] == pytest.approx([2.03, 4.03], abs=0.02)
    assert "moved 0.0 m in 2.0 s" in verdicts[0][1]


def test_a_car_off_the_road_is_stuck_after_offroad_s():
    def off_to_the_right(game: Game) -> Controls:
        return Controls(1.0, 0.6)

    verdicts = watch_game(Game(small_sim(), seed=3), 6.0, off_to_the_right)
    assert verdicts, "a car driving in circles on the grass must be called stuck"
    assert "off the road" in verdicts[0][1]


def test_without_telemetry_a_still_screen_means_stuck():
    verdicts = watch_game(Game(small_sim(), seed=3), 2.5, stand_still, use_telemetry=False)
    assert [time for time, _ in verdicts] == pytest.approx([2.03], abs=0.02)
    assert "screen changed" in verdicts[0][1]


def test_without_telemetry_a_moving_picture_means_moving():
    game = Game(small_sim(), seed=3)
    pilot = Autopilot(AutopilotConfig(perturbation_interval_s=0.0), seed=3)
    # Get going first: the watch only sees the screen, and a car at rest shows a still one.
    for _ in range(60):
        game.set_controls(pilot.decide(game))
        game.tick()
    assert watch_game(game, 5.0, pilot.decide, use_telemetry=False) == []


def test_reset_starts_a_new_window():
    watch = StuckWatch(WATCH)
    telemetry = Game(small_sim(), seed=3).telemetry()
    frame = np.zeros((9, 16, 3), np.uint8)
    assert watch.update(0.0, telemetry, frame) is None
    watch.reset(1.5)
    assert watch.update(3.0, telemetry, frame) is None
    assert watch.update(3.5, telemetry, frame) is not None


class RespawningSource:
    def __init__(self) -> None:
        self.requests = 0

    def request_respawn(self) -> None:
        self.requests += 1

    def wait_respawned(self, timeout: float) -> bool:
        return True


class PressingPad:
    def __init__(self) -> None:
        self.pressed: list[tuple[str, float]] = []

    def press(self, button: str, hold_s: float) -> None:
        self.pressed.append((button, hold_s))


def test_the_built_in_game_is_unstuck_by_a_respawn():
    source = RespawningSource()
    action = choose_action(UnstuckConfig(buttons=("BACK",)), source, PressingPad())
    action()
    assert isinstance(action, Respawn) and source.requests == 1


def test_a_real_game_gets_the_configured_buttons_in_order():
    pad = PressingPad()
    action = choose_action(UnstuckConfig(buttons=("BACK", "A"), button_hold_s=0.2), object(), pad)
    action()
    assert isinstance(action, ButtonSequence)
    assert pad.pressed == [("BACK", 0.2), ("A", 0.2)]
    assert action.description == "press BACK, A"


@pytest.mark.parametrize("buttons", [(), ("BACK",)])
def test_without_buttons_or_a_pad_that_presses_only_an_alert_is_left(buttons):
    action = choose_action(UnstuckConfig(buttons=buttons), object(), object())
    assert isinstance(action, AlertOnly)
