"""engine/core/memory.py: freed heap memory goes back to the system, on a timer, off by 0."""

from __future__ import annotations

import ctypes
import threading

import psutil
import pytest

from engine.core import memory
from engine.core.memory import release_free_memory, released_memory

MIB = 2**20


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MIB


def heap_freed_below_a_live_block(megabytes: int = 100) -> None:
    """What glibc keeps: blocks freed below one still in use (the heap cannot shrink past it)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4000) for _ in range(megabytes * MIB // 4000)]
    for block in blocks:
        ctypes.memset(block, 1, 4000)
    for block in blocks[:-1]:
        libc.free(block)


def test_freed_heap_memory_goes_back_to_the_system():
    # This project's machines and CI run Debian (glibc): the release must be real here.
    assert memory._MALLOC_TRIM is not None
    before = rss_mb()
    heap_freed_below_a_live_block(100)
    kept = rss_mb()
    assert kept - before > 80  # freed, yet still resident: what a stream's RSS piles up
    assert release_free_memory() is True
    assert kept - rss_mb() > 80


def test_released_memory_releases_on_its_thread_until_the_block_ends(monkeypatch):
    calls = threading.Semaphore(0)
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.release() or 1)
    with released_memory(0.01):
        assert calls.acquire(timeout=60) and calls.acquire(timeout=60)  # it repeats
        assert any(t.name == "release-memory" for t in threading.enumerate())
    for thread in threading.enumerate():
        if thread.name == "release-memory":
            thread.join(timeout=60)
    assert not any(t.name == "release-memory" for t in threading.enumerate())


def test_zero_means_never_and_no_thread(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: pytest.fail("released at 0 s"))
    with released_memory(0.0):
        assert not any(t.name == "release-memory" for t in threading.enumerate())


def test_where_the_c_library_has_no_malloc_trim_nothing_is_released(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    assert release_free_memory() is False
    with released_memory(0.01):
        assert not any(t.name == "release-memory" for t in threading.enumerate())


def test_a_release_interval_out_of_range_is_refused(tmp_path):
    from engine.core.config import load_config
    from engine.core.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text("[supervisor]\nrelease_memory_s = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "release_memory_s" in str(error.value) and "-1" in str(error.value)
