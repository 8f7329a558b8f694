"""Keep a days-long stream's RSS flat: large blocks on their own pages, freed memory given back.

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

Large blocks get their own pages (`map_large_blocks`, on entering). glibc
serves a block of 128 KiB or more with its own `mmap`, but raises that limit to
the size of every such block freed (up to 32 MiB): after TensorFlow's first
steps a batch's arrays and activations (MBs each) are cut from the arenas
instead, and the holes they leave grow the arenas by fragments. A trainer fed
as fast as it trains (bench/trainer_memory.py) grew its arenas by 8 MB in 9,000
batches and its RSS moved in steps of up to 20 MB as freed pages were given
back and touched again; with blocks of 1 MiB or more mapped on their own its
arenas stayed flat, held about half the free space, and it trained as fast.

TensorFlow's tensors come from malloc too (`tensors_from_malloc`, on
entering) where malloc backs large blocks with huge pages. TensorFlow's oneDNN
build otherwise keeps every tensor of 4 KiB or more in a pool of its own that
never gives pages back and doubles when it runs short: regions of 2, 4, ... 32
MiB in a trainer's first minutes, then a 64 MiB one after about 1,300 batches
(44 minutes into soak D), whose pages became resident one by one for the rest
of the run (+6 MB/h at the end). From malloc, a tensor of 1 MiB or more has
pages of its own, given back when it is freed. Fresh 4 KiB pages for every
tensor cost a trainer fed as fast as it trains 11% of its batches/s; fresh 2
MiB ones cost it 2-9% (bench/trainer_memory.py; a stream's trainer waits for
data and trained as many batches), so the app starts its TensorFlow nodes with
glibc's huge pages for such blocks (`with_huge_pages`) and only processes that
have them leave TensorFlow's pool (`large_blocks_on_huge_pages`).

Only glibc has `malloc_trim` and `mallopt`; elsewhere (Windows, macOS, musl) they do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger("charles.memory")


def _glibc(name: str, argtypes: list[type], restype: type) -> Callable[..., int] | None:
    """The C library's function `name`, or None where there is none (not glibc, not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = getattr(libc, name)
    except (OSError, AttributeError):  # musl, or no C library found by that name
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function


_MALLOC_TRIM = _glibc("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
_MALLOPT = _glibc("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
# mallopt's parameter number for the mmap threshold (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
# Blocks of this size or more get their own pages: a 128x72 batch of float32 frames is 3.5 MB.
LARGE_BLOCK_BYTES = 1 << 20
# The environment variable glibc reads the same threshold from: an operator's own choice stays.
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
# TensorFlow (oneDNN builds) reads this at its first allocation: "1" takes tensors from malloc.
ONEDNN_SYSTEM_ALLOCATOR_ENV = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"
# glibc reads its tunables from this variable at start: "glibc.malloc.hugetlb=1" has malloc
# ask for transparent huge pages (madvise) for the blocks it maps and its heap.
TUNABLES_ENV = "GLIBC_TUNABLES"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
# The kernel's transparent huge pages mode: "[always] madvise never", the one in use bracketed.
THP_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def map_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """From now on, serve every block of `threshold` bytes or more with its own pages.

    Freeing such a block returns its pages at once, and the limit no longer
    rises with the blocks freed (see the module docstring). False where this
    cannot be done, or where `MALLOC_MMAP_THRESHOLD_` already set the limit.
    """
    if _MALLOPT is None or MMAP_THRESHOLD_ENV in os.environ:
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, threshold))


def with_huge_pages(environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` for a child process whose malloc backs large blocks with huge pages.

    glibc reads the tunable only when a process starts, so the parent sets it.
    An operator's own `glibc.malloc.hugetlb` stays; other tunables are kept.
    """
    tunables = [t for t in environment.get(TUNABLES_ENV, "").split(":") if t]
    if not any(t.startswith(HUGE_PAGES_TUNABLE + "=") for t in tunables):
        tunables.append(f"{HUGE_PAGES_TUNABLE}=1")
    return {**environment, TUNABLES_ENV: ":".join(tunables)}


def large_blocks_on_huge_pages(thp_mode_file: Path = THP_MODE_FILE) -> bool:
    """Whether this process's malloc backs the blocks it maps with huge pages.

    Yes where the kernel gives them to every mapping (mode "always"), or to
    those that ask (mode "madvise") when glibc was started asking
    (`with_huge_pages`); no where the mode is "never" or there is no such file.
    """
    try:
        mode = thp_mode_file.read_text(encoding="ascii")
    except OSError:
        return False
    if "[always]" in mode:
        return True
    asked = {
        tunable.split("=", 1)[1]
        for tunable in os.environ.get(TUNABLES_ENV, "").split(":")
        if tunable.startswith(HUGE_PAGES_TUNABLE + "=")
    }
    return "[madvise]" in mode and bool(asked & {"1", "2"})


def tensors_from_malloc() -> None:
    """Have TensorFlow take its tensors from malloc instead of a pool it never shrinks.

    TensorFlow reads the setting once, at its first allocation, so this must run
    before anything executes in TensorFlow (importing it is fine). An operator's
    own `TF_ONEDNN_USE_SYSTEM_ALLOCATOR` stays; builds without oneDNN ignore it.
    """
    os.environ.setdefault(ONEDNN_SYSTEM_ALLOCATOR_ENV, "1")


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system now; False where that cannot be done."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


@contextlib.contextmanager
def released_memory(interval_s: float) -> Iterator[None]:
    """Large blocks on their own pages from entering on, TensorFlow's tensors among them
    where those pages are huge; within, `release_free_memory` every `interval_s` on a
    daemon thread (0: never).

    Enter it before TensorFlow runs anything (see `tensors_from_malloc`).
    """
    map_large_blocks()
    if large_blocks_on_huge_pages():
        tensors_from_malloc()
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
