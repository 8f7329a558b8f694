"""Game profiles: the shipped ones validate, bad ones say file, key, value and what is accepted."""

from __future__ import annotations

import argparse

import msgspec
import numpy as np
import pytest

from engine.core.config import Config
from engine.core.errors import ConfigError, DeviceError, UsageError
from engine.driver.cli import _with_flags
from engine.driver.controller import open_controller
from engine.driver.unstuck import AlertOnly, KeySequence, choose_action
from engine.games.profile import apply_to_config, load_profile, shipped_profiles
from engine.games.window import FoundWindow, apply_masks, capture_area

GOOD = """
description = "a test game"
[window.linux]
title = "Test Game"
[input.keyboard]
accelerate = "w"
brake = "s"
steer_left = "a"
steer_right = "d"
[unstuck]
sequence = [{ key = "r", hold_s = 0.2 }, { key = "Return", hold_s = 0.1 }]
"""


def _write(tmp_path, text: str):
    path = tmp_path / "mygame.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["builtin", "gta5", "torcs"])
def test_every_shipped_profile_validates(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.window_target("linux").title
    assert profile.description


def test_the_shipped_profiles_are_what_the_issue_asks_for():
    assert sorted(shipped_profiles()) == ["builtin", "gta5", "torcs"]
    builtin, gta5, torcs = (load_profile(n) for n in ("builtin", "gta5", "torcs"))
    assert builtin.window_target("linux").title == "charles-stream hood"
    assert builtin.input.backend == "keyboard" and builtin.input.keyboard.accelerate == "Up"
    assert gta5.window_target("win32").title == "Grand Theft Auto V"
    assert gta5.input.backend == "vgamepad" and not gta5.tested
    assert torcs.window_target("linux").match == "contains"
    assert torcs.input.keyboard.steer_left == "Left"


def test_a_profile_file_by_path_loads_with_its_stem_as_name(tmp_path):
    profile = load_profile(str(_write(tmp_path, GOOD)))
    assert profile.name == "mygame"
    assert [step.key for step in profile.unstuck.sequence] == ["r", "Return"]
    assert profile.recorder_keys().accelerate == "w"


def test_an_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(UsageError) as error:
        load_profile("nfs")
    assert "unknown game profile 'nfs'; use one of 'builtin', 'gta5', 'torcs'" in str(error.value)


def test_an_unknown_key_names_the_file_and_the_accepted_keys(tmp_path):
    path = _write(tmp_path, GOOD + "[input.keyboard2]\n")
    with pytest.raises(ConfigError) as error:
        load_profile(str(path))
    assert str(path) in str(error.value)
    assert "unknown key 'input.keyboard2'; accepted keys here: backend, keyboard" in str(
        error.value
    )


def test_a_wrong_type_names_key_and_value(tmp_path):
    path = _write(tmp_path, GOOD.replace('accelerate = "w"', "accelerate = 3"))
    with pytest.raises(ConfigError, match=r"'input.keyboard.accelerate' = 3 has the wrong type"):
        load_profile(str(path))


def test_a_bad_backend_lists_the_choices(tmp_path):
    text = GOOD.replace("[input.keyboard]", '[input]\nbackend = "joystick"\n[input.keyboard]')
    with pytest.raises(ConfigError) as error:
        load_profile(str(_write(tmp_path, text)))
    assert "'input.backend' = 'joystick' is not accepted; use one of 'keyboard'" in str(error.value)


def test_a_bad_keysym_name_says_what_names_look_like(tmp_path):
    path = _write(tmp_path, GOOD.replace('steer_left = "a"', 'steer_left = "LeftArrow"'))
    with pytest.raises(ConfigError) as error:
        load_profile(str(path))
    message = str(error.value)
    assert str(path) in message
    assert "'input.keyboard.steer_left' = 'LeftArrow' is not an X keysym name" in message
    assert "'Left'" in message


def test_a_bad_unstuck_key_is_named_with_its_index(tmp_path):
    path = _write(tmp_path, GOOD.replace('key = "Return"', 'key = "Enter"'))
    with pytest.raises(ConfigError, match=r"'unstuck.sequence\[1\].key' = 'Enter'"):
        load_profile(str(path))


def test_an_empty_title_is_refused(tmp_path):
    path = _write(tmp_path, GOOD.replace('title = "Test Game"', 'title = ""'))
    with pytest.raises(ConfigError) as error:
        load_profile(str(path))
    assert str(path) in str(error.value)
    assert "'window.linux.title' = ''" in str(error.value)
    assert "give the window's title (not empty), or a region" in str(error.value)


def test_a_profile_without_any_window_is_refused(tmp_path):
    path = _write(tmp_path, GOOD.replace('[window.linux]\ntitle = "Test Game"\n', ""))
    with pytest.raises(ConfigError, match="missing key 'window'"):
        load_profile(str(path))


def test_one_key_twice_is_refused(tmp_path):
    path = _write(tmp_path, GOOD.replace('brake = "s"', 'brake = "w"'))
    with pytest.raises(ConfigError, match=r"'input.keyboard' uses one key twice"):
        load_profile(str(path))


def test_a_pad_game_presses_buttons_not_keys(tmp_path):
    text = GOOD.replace("[input.keyboard]", '[input]\nbackend = "vgamepad"\n[input.keyboard]')
    with pytest.raises(ConfigError, match=r"'unstuck.sequence\[0\]'.*give a button"):
        load_profile(str(_write(tmp_path, text)))


def test_a_bad_crop_or_mask_rectangle_is_refused(tmp_path):
    path = _write(tmp_path, GOOD + "[capture]\nmasks = [[0, 0, 10]]\n")
    with pytest.raises(ConfigError, match=r"'capture.masks\[0\]' = \[0, 0, 10\] is not accepted"):
        load_profile(str(path))


def test_broken_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "[window.linux\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(str(path))


def test_a_platform_without_a_window_says_so(tmp_path):
    profile = load_profile(str(_write(tmp_path, GOOD)))
    with pytest.raises(UsageError, match=r"no \[window.windows\]"):
        profile.window_target("win32")


def test_crop_and_masks_are_in_window_pixels(tmp_path):
    text = GOOD + "[capture]\ncrop = [10, 20, 100, 50]\nmasks = [[0, 60, 30, 20]]\n"
    profile = load_profile(str(_write(tmp_path, text)))
    window = FoundWindow(7, "Test Game", 100, 200, 640, 480)
    assert capture_area(profile, window) == {"left": 110, "top": 220, "width": 100, "height": 50}
    frame = np.full((50, 100, 3), 200, np.uint8)
    apply_masks(frame, profile)
    # The mask covers window x 0..30, y 60..80: cropped x 0..20, y 40..60 (clipped at 50).
    assert (frame[40:, :20] == 0).all()
    assert (frame[:40] == 200).all() and (frame[40:, 20:] == 200).all()


def test_a_crop_outside_the_window_is_a_device_error(tmp_path):
    profile = load_profile(str(_write(tmp_path, GOOD + "[capture]\ncrop = [0, 0, 800, 10]\n")))
    with pytest.raises(DeviceError, match=r"'capture.crop' = \[0, 0, 800, 10\] reaches outside"):
        capture_area(profile, FoundWindow(1, "Test Game", 0, 0, 640, 480))


def test_a_profile_sets_capture_and_controller_for_the_driver():
    config = apply_to_config(load_profile("gta5"), Config())
    assert config.capture.backend == "mss"
    assert config.controller.backend == "vgamepad"
    assert config.controller.steering_dead_zone == 0.2
    keyboard = apply_to_config(load_profile("torcs"), Config())
    assert (keyboard.capture.backend, keyboard.controller.backend) == ("mss", "keyboard")


def test_drive_game_flag_applies_the_profile_and_sim_flag_drops_it():
    args = argparse.Namespace(game="torcs", sim=False, capture=None)
    config = _with_flags(Config(), args)
    assert config.driver.game == "torcs" and config.controller.backend == "keyboard"
    with_game = msgspec.structs.replace(
        Config(), driver=msgspec.structs.replace(Config().driver, game="torcs")
    )
    config = _with_flags(with_game, argparse.Namespace(game=None, sim=True, capture=None))
    assert config.driver.game == "" and config.controller.backend == "sim"


def test_drive_with_an_unknown_game_is_bad_input():
    with pytest.raises(UsageError, match="unknown game profile 'nope'"):
        _with_flags(Config(), argparse.Namespace(game="nope", sim=False, capture=None))


def test_a_keyboard_game_unstucks_with_its_key_sequence(tmp_path):
    profile = load_profile(str(_write(tmp_path, GOOD)))
    pressed: list[tuple[str, float]] = []

    class Keys:
        def press(self, key: str, hold_s: float) -> None:
            pressed.append((key, hold_s))

    action = choose_action(Config().unstuck, object(), Keys(), profile)
    assert isinstance(action, KeySequence)
    assert action.description == "press key r (0.20 s), Return (0.10 s)"
    action()
    assert pressed == [("r", 0.2), ("Return", 0.1)]


def test_a_game_without_a_sequence_only_alerts():
    without = msgspec.structs.replace(
        load_profile("torcs"),
        unstuck=msgspec.structs.replace(load_profile("torcs").unstuck, sequence=()),
    )
    keyboard = type("Keys", (), {"press": lambda self, key, hold_s: None})()
    action = choose_action(Config().unstuck, object(), keyboard, without)
    assert isinstance(action, AlertOnly)


def test_a_keyboard_game_with_a_sequence_presses_its_keys():
    pressed = []
    keyboard = type("Keys", (), {"press": lambda self, key, hold_s: pressed.append(key)})()
    action = choose_action(Config().unstuck, object(), keyboard, load_profile("torcs"))
    action()
    assert pressed == ["Down"]


def test_the_keyboard_backend_without_a_display_says_what_to_set(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    config = apply_to_config(load_profile("builtin"), Config())
    with pytest.raises(DeviceError, match="cannot open the X display"):
        open_controller(config.controller, profile=load_profile("builtin"))


def test_games_list_prints_one_line_per_profile(capsys):
    from engine.cli import main

    assert main(["games", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["builtin", "gta5", "torcs"]
    assert "untested" in lines[1]


def test_games_check_of_an_unknown_profile_exits_2():
    from engine.cli import main

    assert main(["games", "check", "nfs"]) == 2
