"""The keyboard NPC: the autopilot sitting at the keyboard of the built-in game's window.

Example::

    keys = open_controller(keyboard_config, profile=load_profile("builtin"))
    npc = KeyboardNpc(Autopilot(config.autopilot, seed=7), keys, pause_key="F9")
    run_window(game, pilot=None, seconds=None, player=npc)   # the game reads only the keys
    npc.finish()

`charles-stream record` records whoever plays a game window; this player lets
it record an expert with nobody at the machine. It looks at the game's state
(as a person looks at the screen) and touches the game only through X key
events (XTest), with the same duty-cycled keys the driver uses
(`engine/driver/keyboard.py`): the game cannot tell it from a person.

Recording recoveries, not mistakes: the autopilot makes deliberate mistakes
(swerves, drifts, hard braking) so that the car visits the states a learner
gets into. What a model should learn there is the way back, not the swerve,
so with a `pause_key` the NPC pauses the recorder for the length of each
mistake and resumes it for the recovery - the way people record recovery data
for driving models (drive to the edge with recording off, record coming back).
The recorder must start paused (`record --paused`): the NPC's first press
starts it.
"""

from __future__ import annotations

import logging
import threading
import time

from engine.driver.controller import GamepadState
from engine.driver.keyboard import KeyboardController
from engine.sim.autopilot import Autopilot
from engine.sim.game import Game

log = logging.getLogger("charles.npc")

# Long enough for a recorder polling at 30 Hz to see the key down at least once, and up
# again between two taps.
PAUSE_TAP_S = 0.1
PAUSE_GAP_S = 0.1


class KeyboardNpc:
    """Decides with the autopilot before every game tick and presses the keys for it."""

    def __init__(
        self,
        pilot: Autopilot,
        keys: KeyboardController,
        *,
        pause_key: str | None = None,
        pause_tap_s: float = PAUSE_TAP_S,
        pause_gap_s: float = PAUSE_GAP_S,
    ) -> None:
        self._pilot = pilot
        self._keys = keys
        self._pause_key = pause_key
        self._pause_tap_s = pause_tap_s
        self._pause_gap_s = pause_gap_s
        self._recording = False  # as the NPC believes the recorder is (it starts paused)
        self._taps: list[threading.Thread] = []
        self.pause_taps = 0

    def __call__(self, game: Game) -> None:
        """Look at the game, press the keys the autopilot asks for; toggle recording if due."""
        controls = self._pilot.decide(game)
        throttle = controls.throttle_brake
        self._keys.send(
            GamepadState(
                steering=controls.steering,
                right_trigger=max(0.0, throttle),
                left_trigger=max(0.0, -throttle),
            )
        )
        tapping = bool(self._taps) and self._taps[-1].is_alive()
        if self._pause_key and not tapping and self._recording == self._pilot.making_mistake:
            self._tap_pause()

    def finish(self) -> None:
        """Let go of every key and leave the recorder paused (a closing window is no data)."""
        self._keys.neutral()
        self.wait_for_taps()
        if self._recording:
            self._tap_pause()
            self.wait_for_taps()

    def wait_for_taps(self) -> None:
        """Until the pause key taps under way are done (the key is up again)."""
        for tap in self._taps:
            tap.join()

    def _tap_pause(self) -> None:
        """Press the pause key in the background: the game must not stall for the tap."""
        self._recording = not self._recording
        self.pause_taps += 1
        log.debug("pause key: recording %s", "on" if self._recording else "off")
        assert self._pause_key is not None
        key = self._pause_key

        def tap_and_gap() -> None:
            self._keys.press(key, self._pause_tap_s)
            time.sleep(self._pause_gap_s)  # Two taps must look like two presses to the recorder.

        tap = threading.Thread(target=tap_and_gap, name="pause-tap")
        tap.start()
        self._taps = [t for t in self._taps if t.is_alive()] + [tap]
