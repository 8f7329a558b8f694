"""A private X server for tests that open real windows or press real keys.

Example::

    with XvfbDisplay(1920, 1080) as xvfb:
        subprocess.run([..., "sim", "--realtime"], env={**os.environ, "DISPLAY": xvfb.name})

Xvfb picks a free display number itself (`-displayfd`) and reports it once it
accepts clients, so parallel runs never share one and nothing waits on a guess.
The `display` fixture in `tests/conftest.py` gives a test module one of these.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

XVFB = "Xvfb"
STOP_TIMEOUT_S = 10.0


class XvfbDisplay:
    """A private Xvfb on a free display number (Xvfb picks it and reports it when ready).

    Started with -noreset: by default an X server resets when its last client
    leaves, and a reset lets go of every key, which would hide a key left held.
    """

    def __init__(self, width: int = 640, height: int = 480) -> None:
        read_end, write_end = os.pipe()
        self._process = subprocess.Popen(
            [
                XVFB,
                "-displayfd",
                str(write_end),
                "-screen",
                "0",
                f"{width}x{height}x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as display_number:
            number = display_number.readline().strip()
        if not number:
            self.close()
            raise RuntimeError("Xvfb did not start (it reported no display number)")
        self.name = f":{number}"

    def close(self) -> None:
        """Stop the server (every client of it loses its connection)."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> XvfbDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def built_in_game_on_xvfb(config: Path, start_timeout_s: float = 120.0) -> Iterator[str]:
    """A 1280x720 Xvfb with `charles-stream sim --realtime` in its windows (keys drive it).

    Yields the display name once the hood window is there; stops the game and the server.
    """
    from engine.core.errors import DeviceError
    from engine.games.profile import load_profile
    from engine.games.window import find_window

    repo = Path(__file__).resolve().parent.parent
    with XvfbDisplay(1280, 720) as xvfb:
        game = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "sim", "--realtime", "--config", str(config)],
            cwd=repo,
            env={**os.environ, "DISPLAY": xvfb.name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = load_profile("builtin").window_target()
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    find_window(target, xvfb.name)
                    break
                except DeviceError:
                    assert game.poll() is None, "the game exited before its window showed"
                    assert time.monotonic() < deadline, "the game's window did not show"
                    time.sleep(0.2)
            yield xvfb.name
        finally:
            game.terminate()
            game.wait(timeout=10)
