"""Hand freed heap memory back to the system now and then, so a days-long stream's RSS stays flat.

Example::

    with released_memory(config.supervisor.release_memory_s):   # a node, for its whole life
        run_the_work_loop()

Why: glibc's malloc keeps memory a process has freed in its arenas for reuse
instead of returning it, and TensorFlow, OpenVINO and NumPy free and allocate
hundreds of MB in varying sizes (a checkpoint reload builds and drops a whole
compiled model). Under a soak (issue 19) the driver's RSS rose by a few MB at
each reload and never came back, although nothing was leaked: `malloc_trim(0)`
on the running process returned 24 MB at once, and a driver calling it every
minute stayed flat where one without it grew (BENCHMARKS.md, endurance).
`malloc_trim` walks every arena and returns their free pages (`madvise`), a
few ms for a driver's 1 GB, on a thread of its own so no work loop waits.

Only glibc has `malloc_trim`; elsewhere (Windows, macOS, musl) this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("charles.memory")


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, or no C library found by that name
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _glibc_malloc_trim()


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system now; False where that cannot be done."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


@contextlib.contextmanager
def released_memory(interval_s: float) -> Iterator[None]:
    """Within: `release_free_memory` every `interval_s` on a daemon thread (0: never)."""
    if interval_s <= 0 or _MALLOC_TRIM is None:
        yield
        return
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(interval_s):
            started = time.perf_counter()
            release_free_memory()
            took_ms = 1000 * (time.perf_counter() - started)
            log.debug("free heap memory released in %.1f ms", took_ms)

    thread = threading.Thread(target=release, name="release-memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
