"""From model predictions to gamepad values, and the gamepads that apply them.

Example::

    translator = Translator(config.controller)
    with open_controller(config.controller, game=game) as pad:
        pad.send(translator.translate(steering=0.03, throttle_brake=-0.4))

Games ignore small stick and trigger movements (a dead zone). A model that
predicts a gentle 0.05 steer would do nothing in such a game, so the
translator maps any prediction above `ignore_below` to just past the dead
zone and scales the rest of the travel linearly:
``out = sign(p) * (dead_zone + (1 - dead_zone) * |p|)``.

`throttle_brake` > 0 goes to the right trigger (accelerate), < 0 to the left
trigger (brake), as GTA V and most driving games map them. NaN means "the
model has no idea" and becomes neutral; values beyond [-1, 1] are clipped.

Every controller goes neutral when it is closed, so leaving a `with` block by
any path (return, exception, SIGTERM turned into SystemExit, Ctrl-C) releases
the pad. A car with a pinned throttle on stream is the failure this prevents.
"""

from __future__ import annotations

import math
import platform
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from engine.core.config import ControllerConfig
from engine.core.errors import DeviceError
from engine.games.profile import GameProfile

# Where Linux exposes user-space input devices; vgamepad needs to write to it.
UINPUT_PATH = Path("/dev/uinput")


class ControllerError(DeviceError):
    """A gamepad that cannot be created, with what to do about it."""


@dataclass(frozen=True)
class GamepadState:
    """What a virtual Xbox 360 pad is told: stick in [-1, 1], triggers in [0, 1]."""

    steering: float = 0.0
    left_trigger: float = 0.0
    right_trigger: float = 0.0

    @property
    def throttle_brake(self) -> float:
        """The combined axis the built-in game and the model use."""
        return self.right_trigger - self.left_trigger


NEUTRAL_PAD = GamepadState()


class Translator:
    """Turns raw predictions into gamepad values: dead zones, clipping, NaN, smoothing."""

    def __init__(self, config: ControllerConfig) -> None:
        self._config = config
        self._last = NEUTRAL_PAD

    def translate(self, steering: float, throttle_brake: float) -> GamepadState:
        """Map one prediction pair to the pad; NaN in either output gives neutral."""
        if not (math.isfinite(steering) and math.isfinite(throttle_brake)):
            self._last = NEUTRAL_PAD
            return NEUTRAL_PAD
        stick = _past_dead_zone(steering, self._config.steering_dead_zone, self._config)
        trigger = _past_dead_zone(throttle_brake, self._config.trigger_dead_zone, self._config)
        target = GamepadState(
            steering=stick, left_trigger=max(0.0, -trigger), right_trigger=max(0.0, trigger)
        )
        self._last = _smooth(self._last, target, self._config.smoothing)
        return self._last

    def reset(self) -> None:
        """Forget the smoothing history (after an unstuck, the old motion is meaningless)."""
        self._last = NEUTRAL_PAD


def _past_dead_zone(value: float, dead_zone: float, config: ControllerConfig) -> float:
    value = min(1.0, max(-1.0, value))
    magnitude = abs(value)
    if magnitude < config.ignore_below:
        return 0.0
    return math.copysign(dead_zone + (1.0 - dead_zone) * magnitude, value)


def _smooth(previous: GamepadState, target: GamepadState, smoothing: float) -> GamepadState:
    if smoothing == 0.0:
        return target
    keep = smoothing

    def blend(old: float, new: float) -> float:
        return keep * old + (1.0 - keep) * new

    return GamepadState(
        steering=blend(previous.steering, target.steering),
        left_trigger=blend(previous.left_trigger, target.left_trigger),
        right_trigger=blend(previous.right_trigger, target.right_trigger),
    )


class Controller(ABC):
    """A pad the driver writes to; leaving its `with` block always leaves it neutral."""

    @abstractmethod
    def send(self, state: GamepadState) -> None:
        """Apply the state now."""

    @abstractmethod
    def neutral(self) -> None:
        """Release stick and triggers."""

    def close(self) -> None:
        """Go neutral and release the device."""
        self.neutral()

    def __enter__(self) -> Controller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SimController(Controller):
    """Drives the built-in game: the pad's values become the game's controls."""

    def __init__(self, game: SimGame) -> None:
        self._game = game

    def send(self, state: GamepadState) -> None:
        """Apply the state to the game (its dead-man switch needs fresh input each tick)."""
        from engine.sim.game import Controls

        self._game.set_controls(
            Controls(steering=state.steering, throttle_brake=state.throttle_brake)
        )

    def neutral(self) -> None:
        """Release stick and triggers in the game."""
        self.send(NEUTRAL_PAD)


class SimGame(Protocol):
    """What SimController needs of the built-in game."""

    def set_controls(self, controls: object) -> None:
        """Set the car's inputs."""


class VGamepadController(Controller):
    """A virtual Xbox 360 pad through vgamepad (ViGEmBus on Windows, uinput on Linux)."""

    def __init__(self) -> None:
        self._pad = _create_vx360()

    def send(self, state: GamepadState) -> None:
        """Write stick and triggers and flush them to the virtual device."""
        self._pad.left_joystick_float(x_value_float=state.steering, y_value_float=0.0)
        self._pad.left_trigger_float(value_float=state.left_trigger)
        self._pad.right_trigger_float(value_float=state.right_trigger)
        self._pad.update()

    def neutral(self) -> None:
        """Release stick and triggers on the virtual device."""
        self._pad.reset()
        self._pad.update()

    def press(self, button: str, hold_s: float) -> None:
        """Press and release one Xbox 360 button (e.g. "BACK"): a real game's unstuck step."""
        import vgamepad

        code = getattr(vgamepad.XUSB_BUTTON, f"XUSB_GAMEPAD_{button}")
        self._pad.press_button(button=code)
        self._pad.update()
        try:
            time.sleep(hold_s)  # the game must see the button held for a few frames
        finally:
            self._pad.release_button(button=code)
            self._pad.update()


def open_controller(
    config: ControllerConfig,
    game: SimGame | None = None,
    profile: GameProfile | None = None,
) -> Controller:
    """Create the configured backend; raise ControllerError saying how to fix a missing driver.

    The keyboard presses the game `profile`'s keys with its PWM timing (the arrows without one).
    """
    if config.backend == "sim":
        if game is None:
            raise ControllerError("controller.backend = 'sim' needs the built-in game running")
        return SimController(game)
    if config.backend == "keyboard":
        # Imported here: keyboard.py imports this module, and Xlib is only needed for keys.
        from engine.driver.keyboard import KeyboardController, KeyMap

        if profile is None:
            return KeyboardController()
        keys = profile.input.keyboard
        return KeyboardController(
            KeyMap(
                steer_left=keys.steer_left,
                steer_right=keys.steer_right,
                accelerate=keys.accelerate,
                brake=keys.brake,
            ),
            period_s=keys.period_s,
            min_press_s=keys.min_press_s,
        )
    return VGamepadController()


def _create_vx360() -> object:
    system = platform.system()
    if system == "Linux" and not UINPUT_PATH.exists():
        raise ControllerError(
            "cannot create a virtual gamepad: /dev/uinput does not exist. "
            "Load the uinput module (`sudo modprobe uinput`) and give your user write access "
            "to /dev/uinput (e.g. add it to the 'input' group), or set controller.backend = 'sim'."
        )
    try:
        import vgamepad
    except ImportError as error:
        hint = (
            "install it with `pip install vgamepad` (it also installs the ViGEmBus driver)"
            if system == "Windows"
            else "install it with `pip install 'charles-stream[gamepad]'` (needs libevdev)"
        )
        raise ControllerError(
            f"cannot create a virtual gamepad: vgamepad is missing ({error}); {hint}"
        ) from None
    try:
        return vgamepad.VX360Gamepad()
    except Exception as error:  # vgamepad raises bare Exceptions/AssertionErrors on driver issues
        hint = (
            "install or repair the ViGEmBus driver "
            "(re-run `pip install --force-reinstall vgamepad`)"
            if system == "Windows"
            else "check that /dev/uinput is writable by this user"
        )
        raise ControllerError(f"cannot create a virtual gamepad: {error}; {hint}") from None
