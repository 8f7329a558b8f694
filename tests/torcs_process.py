"""Debian's real TORCS racing game under its own Xvfb, with its own ~/.torcs, driven into a race.

Example::

    with TorcsProcess(tmp_path) as torcs:       # Xvfb, TORCS, Race > Quick Race > New Race
        frame = torcs.grab()                    # RGB uint8 (240, 320, 3) of the game window
        with KeyboardController(display=torcs.display) as keys:
            keys.send(GamepadState(right_trigger=1.0))   # the car accelerates

The game is a program nobody here wrote and that knows nothing of us: the only
ways in are its window's pixels (mss) and the X server's keyboard (XTest), as
for the streamer's game. HOME points into a temporary folder whose ~/.torcs the
test writes before TORCS starts (TORCS's start script copies its defaults only
where a file is missing or older than the installed one), so a user's own
TORCS settings are never read or touched:
- screen.xml: a small window (320x240: the software renderer on two shared
  cores draws it at 60-85 frames/s, 20-45 when the cores are busy; 640x480
  about 35, 18-20 busy),
- sound.xml: no sound (there is no sound card; ALSA complaints in torcs.log are
  harmless),
- raceman/quickrace.xml: the track and one human-driven car, nobody else (AI
  drivers would cost CPU and get in the way), 50 laps so the race never ends.

TORCS has no flag that starts a race with graphics (`-r` runs a race without
any window), so the fixture goes through the menus like a player: in each of
the three menus the first item has the focus (Race, Quick Race, New Race), and
Return activates it. Each press waits until the screen has changed, so a slow
machine only makes it slower. The race view is recognised by its colours: the
menus are dark blue pictures, the race has sky, grass and a grey track.

The human driver's default controls are the arrow keys: Up accelerates, Down
brakes, Left and Right steer; the gearbox is automatic: Down held at a standstill
shifts into reverse. `gear_glyph()` reads the gear the dashboard shows (a 5x5
red letter below the rev counter at 320x240), so a test can tell a car backing
up from one driving forward without any telemetry.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import mss
import numpy as np
from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest
from Xlib.xobject.drawable import Window

from tests.xvfb import XvfbDisplay

TORCS = "/usr/games/torcs"
TORCS_DATA = Path("/usr/share/games/torcs")
XVFB = "Xvfb"
# Software OpenGL on two busy cores: the first window can take a while, loading a track longer.
WINDOW_TIMEOUT_S = 60.0
MENU_TIMEOUT_S = 30.0
RACE_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
# A menu change or the race view differs from the previous screen by far more than this.
SCREEN_CHANGED = 3.0
# A car standing on the grid: only the clock and the engine's needle move (mean difference ~0.1).
STILL = 0.5
# The dashboard's gear letter at the default 320x240: bright red pixels of a 5x5 box.
GEAR_BOX = (slice(227, 232), slice(132, 137))
REVERSE_GLYPH = ("#..#.", "#..#.", "###..", "#..#.", "#..##")  # R
FIRST_GLYPH = (".##..", "..#..", "..#..", "..#..", ".###.")  # 1, as on the grid

SOUND_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE params SYSTEM "../../../libs/tgf/params.dtd">
<params name="sound" type="param" mode="mw">
  <section name="Sound Settings">
    <attstr name="state" val="disabled"/>
    <attnum name="volume" unit="%" val="0"/>
  </section>
  <section name="Menu Music">
    <attstr name="enable" val="disabled"/>
  </section>
</params>
"""

QUICKRACE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE params SYSTEM "../params.dtd">
<params name="Quick Race" type="param" mode="mw">
  <section name="Header">
    <attstr name="name" val="Quick Race"/>
    <attstr name="description" val="Quick Race"/>
    <attnum name="priority" val="10"/>
    <attstr name="menu image" val="data/img/splash-qr.png"/>
  </section>
  <section name="Tracks">
    <attnum name="maximum number" val="1"/>
    <section name="1">
      <attstr name="name" val="{track}"/>
      <attstr name="category" val="{category}"/>
    </section>
  </section>
  <section name="Races">
    <section name="1">
      <attstr name="name" val="Quick Race"/>
    </section>
  </section>
  <section name="Quick Race">
    <attnum name="distance" val="0"/>
    <attstr name="type" val="race"/>
    <attstr name="starting order" val="drivers list"/>
    <attstr name="restart" val="yes"/>
    <section name="Starting Grid">
      <attnum name="rows" val="1"/>
      <attnum name="distance to start" val="25"/>
      <attnum name="distance between columns" val="20"/>
      <attnum name="offset within a column" val="10"/>
      <attnum name="initial speed" val="0"/>
      <attnum name="initial height" val="0.2"/>
    </section>
    <attnum name="laps" val="50"/>
  </section>
  <section name="Drivers">
    <attnum name="maximum number" val="40"/>
    <attstr name="focused module" val="human"/>
    <attnum name="focused idx" val="1"/>
    <section name="1">
      <attnum name="idx" val="1"/>
      <attstr name="module" val="human"/>
    </section>
  </section>
  <section name="Configuration">
    <section name="1">
      <attstr name="type" val="track select"/>
    </section>
    <section name="2">
      <attstr name="type" val="drivers select"/>
    </section>
    <section name="3">
      <attstr name="type" val="race config"/>
      <attstr name="race" val="Quick Race"/>
      <section name="Options">
        <section name="1">
          <attstr name="type" val="race length"/>
        </section>
      </section>
    </section>
    <attnum name="current configuration" val="4"/>
  </section>
</params>
"""


class TorcsProcess:
    """TORCS in a race with a human-driven car, on its own X display; a context manager."""

    def __init__(
        self,
        root: Path,
        width: int = 320,
        height: int = 240,
        track: str = "g-track-1",
        category: str = "road",
        race: bool = True,
        screen: tuple[int, int] | None = None,
    ) -> None:
        self.root = root
        self._race = race
        self.width, self.height = width, height
        # The X screen: the window's size unless a test wants room around it (the window is
        # still at its top left corner: there is no window manager to place it).
        self.screen = screen or (width, height)
        if self.screen[0] < width or self.screen[1] < height:
            raise ValueError(f"screen {self.screen} is smaller than the window {width}x{height}")
        self._track, self._category = track, category
        self._xvfb: XvfbDisplay | None = None
        self._torcs: subprocess.Popen[bytes] | None = None
        self._x: Display | None = None
        self._screen: mss.MSS | None = None
        self.window: Window | None = None
        self.process_group: int | None = None  # TORCS's own: the start script and torcs-bin
        self.display = ""

    def __enter__(self) -> TorcsProcess:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start Xvfb and TORCS, find its window, and go through the menus into the race.

        With `race=False` it stops at the main menu.
        """
        self._write_config()
        # By default the screen is the window's size: the game fills it. mss grabs from (0, 0).
        self._xvfb = XvfbDisplay(*self.screen)
        self.display = self._xvfb.name
        log = (self.root / "torcs.log").open("ab")
        self._torcs = subprocess.Popen(
            [TORCS],
            env={
                **os.environ,
                "HOME": str(self.root / "home"),
                "DISPLAY": self.display,
                "LIBGL_ALWAYS_SOFTWARE": "1",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: torcs is a script running torcs-bin
        )
        log.close()
        self.process_group = self._torcs.pid
        self._x = Display(self.display)
        self.window = self._wait_for_window()
        self._screen = mss.MSS(display=self.display)
        # The splash picture shows for several seconds first; a Return then would only skip it.
        self._wait_until(self.in_menu, MENU_TIMEOUT_S, "main menu after the splash picture")
        if not self._race:
            return
        for menu_item in ("Race", "Quick Race"):
            self._activate_focused_item(menu_item)
            self._wait_until(self.in_menu, MENU_TIMEOUT_S, f"menu after '{menu_item}'")
        self._activate_focused_item("New Race")
        self._wait_until(self.in_race, RACE_TIMEOUT_S, "race view after 'New Race'")
        # The car drops onto the grid and the start lights count down (Ready, Set, Go) while
        # the camera settles; the race is on when the picture stands still.
        self._wait_until(
            lambda: self.motion(1.0)[1] < STILL,
            RACE_TIMEOUT_S,
            "standing start after the countdown",
        )

    def close(self) -> None:
        """End TORCS (its whole process group) and Xvfb, whatever state they are in."""
        if self._screen is not None:
            self._screen.close()
            self._screen = None
        if self._x is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                self._x.close()
            self._x = None
        if self._torcs is not None:
            _end_group(self._torcs)
            self._torcs = None
            self.process_group = None
        if self._xvfb is not None:
            self._xvfb.close()
            self._xvfb = None

    def grab(self) -> np.ndarray:
        """The game window now, RGB uint8 (height, width, 3)."""
        assert self._screen is not None, "start() first"
        region = {"left": 0, "top": 0, "width": self.width, "height": self.height}
        shot = np.asarray(self._screen.grab(region))
        return shot[:, :, 2::-1].copy()  # BGRA -> RGB

    def in_menu(self) -> bool:
        """True when a menu shows: TORCS's menus are dark pictures tinted blue."""
        red, _, blue = self.grab().reshape(-1, 3).mean(axis=0)
        return blue > 40 and red < 0.3 * blue

    def in_race(self) -> bool:
        """True when the race view shows: sky, grass and a grey track, nothing like a menu."""
        red, _, blue = self.grab().reshape(-1, 3).mean(axis=0)
        return red > 40 and red > 0.6 * blue

    def gear_glyph(self) -> tuple[str, ...]:
        """The dashboard's gear letter as rows of '#' (lit) and '.' (REVERSE_GLYPH is R)."""
        if (self.width, self.height) != (320, 240):
            raise ValueError(
                "the gear letter is read at 320x240 only; this window is "
                f"{self.width}x{self.height}"
            )
        box = self.grab()[GEAR_BOX]
        lit = (box[:, :, 0] > 150) & (box[:, :, 1] < 80) & (box[:, :, 2] < 80)
        return tuple("".join("#" if pixel else "." for pixel in row) for row in lit)

    def in_reverse(self) -> bool:
        """Whether the dashboard shows reverse gear (R)."""
        return self.gear_glyph() == REVERSE_GLYPH

    def motion(self, seconds: float) -> tuple[float, float]:
        """Frames per second that changed, and their mean absolute difference, over `seconds`."""
        previous = self.grab().astype(np.int16)
        changed, differences = 0, []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            time.sleep(0.005)  # grabbing as fast as possible would take the game's CPU
            frame = self.grab().astype(np.int16)
            difference = float(np.abs(frame - previous).mean())
            if difference > 0:
                changed += 1
                differences.append(difference)
            previous = frame
        elapsed = time.monotonic() - start
        return changed / elapsed, float(np.mean(differences)) if differences else 0.0

    def alive(self) -> bool:
        """Whether TORCS is still running."""
        return self._torcs is not None and self._torcs.poll() is None

    def _write_config(self) -> None:
        config = self.root / "home" / ".torcs" / "config"
        (config / "raceman").mkdir(parents=True)
        screen = (TORCS_DATA / "config" / "screen.xml").read_text()
        for axis, size in (("x", self.width), ("y", self.height)):
            screen, count = re.subn(
                rf'<attnum name="{axis}" val="\d+"/>',
                f'<attnum name="{axis}" val="{size}"/>',
                screen,
            )
            if count != 1:
                raise RuntimeError(f"TORCS's screen.xml has no single '{axis}' size to set")
        (config / "screen.xml").write_text(screen)
        (config / "sound.xml").write_text(SOUND_XML)
        (config / "raceman" / "quickrace.xml").write_text(
            QUICKRACE_XML.format(track=self._track, category=self._category)
        )

    def _wait_for_window(self) -> Window:
        def find() -> Window | None:
            assert self._x is not None
            for child in self._x.screen().root.query_tree().children:
                name = child.get_wm_name()
                if isinstance(name, str) and "torcs" in name.lower():
                    return child
            return None

        deadline = time.monotonic() + WINDOW_TIMEOUT_S
        while (window := find()) is None:
            self._check(deadline, "window")
            time.sleep(0.1)
        return window

    def _activate_focused_item(self, menu_item: str) -> None:
        """Press Return on the focused menu item and wait until the screen has changed."""
        assert self._x is not None and self.window is not None
        before = self.grab().astype(np.int16)
        # Keyboard focus on the game; the pointer stays put: moving it over a menu takes the
        # focus away from the item under the old position.
        self.window.set_input_focus(X.RevertToPointerRoot, X.CurrentTime)
        keycode = self._x.keysym_to_keycode(XK.string_to_keysym("Return"))
        xtest.fake_input(self._x, X.KeyPress, keycode)
        self._x.sync()
        time.sleep(0.1)  # TORCS reads the keyboard once a frame
        xtest.fake_input(self._x, X.KeyRelease, keycode)
        self._x.sync()
        self._wait_until(
            lambda: float(np.abs(self.grab().astype(np.int16) - before).mean()) > SCREEN_CHANGED,
            MENU_TIMEOUT_S,
            f"the menu to leave '{menu_item}'",
        )

    def _wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self._check(deadline, what)
            time.sleep(0.1)

    def _check(self, deadline: float, what: str) -> None:
        """Raise when TORCS has exited or `deadline` has passed while waiting for `what`."""
        if not self.alive():
            raise RuntimeError(f"TORCS exited before its {what}; see {self.root / 'torcs.log'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"TORCS: no {what} in time; see {self.root / 'torcs.log'}")


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (the start script and torcs-bin), SIGKILL what stays."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # torcs-bin may outlive the script it ran from
    process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # an orphaned torcs-bin is reaped by init, not by us


def group_alive(group: int) -> bool:
    """Whether any process of the process group is left."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def require_installed() -> None:
    """Fail with what to install when TORCS or Xvfb is missing (`make test` installs both)."""
    missing = [name for name in (TORCS, XVFB) if shutil.which(name) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: apt-get install torcs xvfb")
