"""A real third-party game, Debian's TORCS, seen through mss and driven through XTest keys.

One TORCS race serves the module (starting one costs the two cores 10-20 s of
software OpenGL); only the last test moves the car. Frame rates go to the
test's output (`pytest -s`) for BENCHMARKS.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from Xlib.display import Display
from Xlib.error import DisplayError

from engine.driver.controller import GamepadState
from engine.driver.keyboard import KeyboardController
from tests.torcs_process import TorcsProcess, group_alive, require_installed

pytestmark = [pytest.mark.x11, pytest.mark.slow]

SECONDS = 3.0
# Changed frames/s the capture must see at least: TORCS draws 60-80 quiet, 20-45 on busy cores.
MIN_FPS = 5.0


@pytest.fixture(scope="module")
def torcs(tmp_path_factory) -> Iterator[TorcsProcess]:
    """TORCS in a Quick Race with a human-driven car standing on the grid."""
    require_installed()
    with TorcsProcess(tmp_path_factory.mktemp("torcs")) as game:
        yield game


def test_the_fixture_reaches_a_race_in_the_game_window(torcs):
    assert torcs.window is not None
    name = torcs.window.get_wm_name()
    geometry = torcs.window.get_geometry()
    assert "torcs" in name
    assert (geometry.width, geometry.height) == (torcs.width, torcs.height)
    assert torcs.in_race()


def test_capture_sees_the_game_drawing_frames(torcs):
    fps, _ = torcs.motion(SECONDS)
    print(f"\nTORCS {torcs.width}x{torcs.height}: mss saw {fps:.1f} changed frames/s")
    assert fps > MIN_FPS
    frame = torcs.grab()
    assert frame.shape == (torcs.height, torcs.width, 3)


def test_the_keyboard_controller_on_accelerate_moves_the_car(torcs):
    _, standing = torcs.motion(SECONDS)
    with KeyboardController(display=torcs.display) as keys:
        keys.send(GamepadState(right_trigger=1.0))
        time.sleep(1.0)  # under way: the picture now streams past
        fps, driving = torcs.motion(SECONDS)
        keys.send(GamepadState(left_trigger=1.0))  # brake, for whatever runs next
    print(f"\nframe motion standing {standing:.2f}, accelerating {driving:.2f} ({fps:.1f} fps)")
    assert driving > max(1.0, 5 * standing)


def test_closing_ends_torcs_and_its_xvfb_even_after_a_failure(tmp_path):
    require_installed()
    with (
        pytest.raises(RuntimeError, match="a failing test"),
        TorcsProcess(tmp_path, race=False) as game,
    ):
        group, display = game.process_group, game.display
        assert game.in_menu()
        raise RuntimeError("a failing test")
    assert group is not None and not group_alive(group)
    with pytest.raises(DisplayError):
        Display(display)
