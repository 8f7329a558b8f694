"""A process's lower CPU priority, on Linux and macOS (nice) and on Windows (priority class).

Example::

    lower_priority(10)      # the trainer: a driver on the same cores goes first

`os.nice` exists only on POSIX: a trainer node on a Windows GPU box
(`charles-stream node trainer` with the shipped `[trainer] nice = 10`) died on
it with AttributeError before training. Windows has priority classes instead
of nice values; a nice value maps to the nearest class below normal.
"""

from __future__ import annotations

import os

import psutil


def lower_priority(increment: int) -> None:
    """Lower this process's CPU priority by a nice `increment` (0: leave it)."""
    if increment <= 0:
        return
    if hasattr(os, "nice"):
        os.nice(increment)
        return
    psutil.Process().nice(windows_priority_class(increment))


def windows_priority_class(increment: int) -> int:
    """The Windows priority class nearest a nice `increment` of 1-19: below normal, or idle."""
    # psutil names the classes only on Windows; their values are the Win32 constants.
    below_normal = getattr(psutil, "BELOW_NORMAL_PRIORITY_CLASS", 0x4000)
    idle = getattr(psutil, "IDLE_PRIORITY_CLASS", 0x40)
    return idle if increment >= 15 else below_normal
