"""The keyboard NPC's decisions: keys for the autopilot's controls, the recorder paused for
exactly the length of each deliberate mistake; and the eval score counted inside the game."""

from __future__ import annotations

import threading

import msgspec
import pytest

from engine.core.config import default_config
from engine.driver.controller import GamepadState
from engine.driver.keyboard_npc import KeyboardNpc
from engine.sim.autopilot import Autopilot
from engine.sim.expert import expert_config
from engine.sim.game import Game
from engine.sim.score import RoadProgress, metres_per_offroad


class ScriptedKeys:
    """Stands in for the KeyboardController: records what the NPC sends and presses."""

    def __init__(self) -> None:
        self.sent: list[GamepadState] = []
        self.presses: list[str] = []
        self.neutral_calls = 0
        self._lock = threading.Lock()

    def send(self, state: GamepadState) -> None:
        self.sent.append(state)

    def neutral(self) -> None:
        self.neutral_calls += 1

    def press(self, key: str, hold_s: float) -> None:
        with self._lock:
            self.presses.append(key)


def _game_and_pilot(**autopilot) -> tuple[Game, Autopilot]:
    config = default_config()
    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    pilot = Autopilot(msgspec.structs.replace(config.autopilot, **autopilot), seed=3)
    return game, pilot


def _play(npc: KeyboardNpc, game: Game, seconds: float) -> None:
    for _ in range(round(seconds * game.config.tick_hz)):
        npc(game)
        last = npc._keys.sent[-1]
        # The keys are the game's only input: here the controls they stand for.
        from engine.sim.game import Controls

        game.set_controls(Controls(last.steering, last.throttle_brake))
        game.tick()


def test_the_npc_sends_the_autopilots_controls_as_key_values():
    game, pilot = _game_and_pilot(perturbation_interval_s=0.0)
    twin = Autopilot(pilot.config, seed=3)
    keys = ScriptedKeys()
    npc = KeyboardNpc(pilot, keys)
    npc(game)
    expected = twin.decide(game)
    sent = keys.sent[-1]
    assert sent.steering == pytest.approx(expected.steering)
    assert sent.throttle_brake == pytest.approx(expected.throttle_brake)
    assert min(sent.left_trigger, sent.right_trigger) == 0.0


def test_the_recorder_is_paused_exactly_while_a_mistake_is_made():
    game, pilot = _game_and_pilot(perturbation_interval_s=2.0)
    keys = ScriptedKeys()
    # Taps take no time here: the game runs faster than real time.
    npc = KeyboardNpc(pilot, keys, pause_key="F9", pause_tap_s=0.0, pause_gap_s=0.0)
    mistakes_seen = 0
    was_mistake = False
    for _ in range(40 * 30):
        _play(npc, game, 1 / 30)
        npc.wait_for_taps()
        if pilot.making_mistake and not was_mistake:
            mistakes_seen += 1
        was_mistake = pilot.making_mistake
    npc.finish()
    assert mistakes_seen >= 5
    # One press starts recording; then a pause and a resume per mistake; finish leaves it paused.
    assert keys.presses == ["F9"] * npc.pause_taps
    assert npc.pause_taps == 2 * mistakes_seen + 2 * (not was_mistake)
    assert keys.neutral_calls >= 1


def test_without_a_pause_key_nothing_but_the_driving_keys_is_pressed():
    game, pilot = _game_and_pilot(perturbation_interval_s=1.0)
    keys = ScriptedKeys()
    npc = KeyboardNpc(pilot, keys)
    _play(npc, game, 10.0)
    npc.finish()
    assert keys.presses == [] and npc.pause_taps == 0


def test_road_progress_counts_metres_along_the_track_on_the_road():
    config = default_config()
    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    pilot = Autopilot(expert_config(config.autopilot), seed=3)
    progress = RoadProgress(game)
    for _ in range(20 * 30):
        game.set_controls(pilot.decide(game))
        progress.tick()
    telemetry = game.telemetry()
    assert telemetry.offroad_events == 0
    # Clean driving: progress along the centre line is about the distance driven.
    assert progress.metres == pytest.approx(telemetry.distance_m, rel=0.1)
    assert metres_per_offroad(100.0, 0) == 100.0 and metres_per_offroad(100.0, 1) == 50.0


def test_reversing_earns_no_progress():
    config = default_config()
    game = Game(msgspec.structs.replace(config.sim, window="off"), seed=3)
    progress = RoadProgress(game)
    from engine.sim.game import Controls

    for _ in range(5 * 30):
        game.set_controls(Controls(0.0, -1.0))  # from rest, the brake reverses
        progress.tick()
    assert progress.metres <= 0.0
