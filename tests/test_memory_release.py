"""engine/core/memory.py: freed heap memory goes back to the system, on a timer, off by 0."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core import memory
from engine.core.memory import release_free_memory, released_memory

# In a fresh interpreter: in the test run's own (2 GB, its heap full of holes) the blocks could
# land in free space it already holds, and nothing new would be resident to give back.
FREED_BELOW_A_LIVE_BLOCK = """
import ctypes, psutil
from engine.core.memory import release_free_memory
rss = lambda: psutil.Process().memory_info().rss / 2**20
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
before = rss()
blocks = [libc.malloc(4000) for _ in range(100 * 2**20 // 4000)]
for block in blocks:
    ctypes.memset(block, 1, 4000)
for block in blocks[:-1]:  # what glibc keeps: the heap cannot shrink past the live block
    libc.free(block)
kept = rss()
released = release_free_memory()
print(before, kept, rss(), released)
"""


def _in_a_fresh_interpreter(
    script: str, *args: str, environment: dict[str, str] | None = None
) -> list[str]:
    """What `script` printed, run by a new Python in the repository (words, split)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,  # TensorFlow's import on a busy machine
        cwd=Path(__file__).resolve().parents[1],
        env=environment,
    )
    return done.stdout.split()


def test_freed_heap_memory_goes_back_to_the_system():
    # This project's machines and CI run Debian (glibc): the release must be real here.
    assert memory._MALLOC_TRIM is not None
    before, kept, after, released = _in_a_fresh_interpreter(FREED_BELOW_A_LIVE_BLOCK)
    assert float(kept) - float(before) > 80  # freed, yet still resident: what RSS piles up
    assert released == "True"
    assert float(kept) - float(after) > 80


# In a fresh interpreter: glibc's threshold is process-wide and cannot be set back.
# A freed 8 MiB block raises glibc's default threshold to 8 MiB; a 2 MiB block is then cut
# from the heap, unless `map_large_blocks` fixed the threshold first.
# glibc's own account of its heap (mallinfo2), for the fresh interpreters below.
MALLINFO = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
"""
LARGE_BLOCK_AFTER_A_FREED_ONE = (
    MALLINFO
    + """
from engine.core.memory import map_large_blocks
mapped = map_large_blocks() if sys.argv[1] == "map" else None
libc.free(libc.malloc(8 * 2**20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 * 2**20)
print(mapped, libc.mallinfo2().hblks - before)
"""
)


def _large_block(mode: str, **environment: str) -> list[str]:
    """(what map_large_blocks returned, blocks mapped on their own by a 2 MiB malloc)."""
    return _in_a_fresh_interpreter(
        LARGE_BLOCK_AFTER_A_FREED_ONE, mode, environment={**os.environ, **environment}
    )


def test_large_blocks_get_their_own_pages_however_large_the_blocks_freed_before():
    assert memory._MALLOPT is not None  # Debian's glibc, here and in CI
    assert _large_block("default") == ["None", "0"]  # glibc's threshold rose past 2 MiB
    assert _large_block("map") == ["True", "1"]  # mapped on its own: its pages go back at free


def test_a_threshold_the_operator_set_in_the_environment_is_left_alone():
    # glibc reads MALLOC_MMAP_THRESHOLD_ itself (a fixed 4 MiB here): the 2 MiB block stays
    # in the heap and map_large_blocks does not override the operator's choice.
    assert _large_block("map", MALLOC_MMAP_THRESHOLD_=str(4 * 2**20)) == ["False", "0"]


def test_entering_released_memory_maps_large_blocks_even_when_never_releasing(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_MALLOPT", lambda option, value: calls.append((option, value)))
    monkeypatch.delenv(memory.MMAP_THRESHOLD_ENV, raising=False)
    with released_memory(0.0):
        assert calls == [(memory._M_MMAP_THRESHOLD, memory.LARGE_BLOCK_BYTES)]


def test_released_memory_takes_tensors_from_malloc_only_where_blocks_get_huge_pages(
    monkeypatch,
):
    monkeypatch.delenv(memory.ONEDNN_SYSTEM_ALLOCATOR_ENV, raising=False)
    monkeypatch.setattr(memory, "large_blocks_on_huge_pages", lambda: False)
    with released_memory(0.0):  # 4 KiB pages: fresh ones for every tensor cost 11% of a trainer
        assert memory.ONEDNN_SYSTEM_ALLOCATOR_ENV not in os.environ
    monkeypatch.setattr(memory, "large_blocks_on_huge_pages", lambda: True)
    with released_memory(0.0):
        assert os.environ[memory.ONEDNN_SYSTEM_ALLOCATOR_ENV] == "1"
    monkeypatch.setenv(memory.ONEDNN_SYSTEM_ALLOCATOR_ENV, "0")  # an operator's choice stays
    with released_memory(0.0):
        assert os.environ[memory.ONEDNN_SYSTEM_ALLOCATOR_ENV] == "0"


def test_a_child_gets_huge_pages_for_its_large_blocks_and_other_tunables_stay():
    assert memory.with_huge_pages({"A": "1"}) == {
        "A": "1",
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
    }
    mixed = memory.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert mixed["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    operators = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert memory.with_huge_pages(operators) == operators


@pytest.mark.parametrize(
    ("mode", "tunables", "huge"),
    [
        ("[always] madvise never", "", True),
        ("always [madvise] never", "glibc.malloc.hugetlb=1", True),
        ("always [madvise] never", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2", True),
        ("always [madvise] never", "", False),
        ("always [madvise] never", "glibc.malloc.hugetlb=0", False),
        ("always madvise [never]", "glibc.malloc.hugetlb=1", False),
        (None, "glibc.malloc.hugetlb=1", False),  # no such file: not Linux, or no THP
    ],
)
def test_huge_pages_need_the_kernels_mode_and_glibcs_tunable(
    tmp_path, monkeypatch, mode, tunables, huge
):
    mode_file = tmp_path / "enabled"
    if mode is not None:
        mode_file.write_text(mode + "\n", encoding="ascii")
    monkeypatch.setenv("GLIBC_TUNABLES", tunables)
    assert memory.large_blocks_on_huge_pages(mode_file) is huge


# In a fresh interpreter: TensorFlow reads its allocator setting once, at its first tensor.
# A 40 MB tensor, then freed: from malloc its pages (mapped on their own) go back at once,
# while oneDNN's own pool grows by a 64 MiB region for it and keeps that.
FREED_TENSOR = (
    MALLINFO
    + """
from engine.core.memory import map_large_blocks, tensors_from_malloc
map_large_blocks()
if sys.argv[1] == "malloc":
    tensors_from_malloc()
import tensorflow as tf
before = libc.mallinfo2().hblkhd
tensor = tf.random.uniform((10 * 2**20,))
del tensor
print((libc.mallinfo2().hblkhd - before) / 2**20)
"""
)


def _kept_after_a_freed_tensor_mb(mode: str) -> float:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop(memory.ONEDNN_SYSTEM_ALLOCATOR_ENV, None)
    return float(_in_a_fresh_interpreter(FREED_TENSOR, mode, environment=environment)[-1])


@pytest.mark.tf
def test_a_freed_tensor_from_malloc_gives_its_pages_back():
    assert abs(_kept_after_a_freed_tensor_mb("malloc")) < 1.0
    assert _kept_after_a_freed_tensor_mb("pool") >= 40


# In a fresh interpreter: 3,000 loss points (a streamed trainer writes ~1,000 an hour) after
# 300 to warm up. Through `tf.summary` every point's Python numbers become eager tensors, and
# TensorFlow keeps some 550 bytes of each conversion for good (soak F's trainer: ~2 MB/h).
LOSS_POINTS = (
    MALLINFO
    + """
import tempfile
import tensorflow as tf
from models.tensorboard_log import LossLog
curves = LossLog(tempfile.mkdtemp())
writer = tf.summary.create_file_writer(tempfile.mkdtemp())
def point(batch):
    losses = {"total": 0.5 + batch * 1e-7, "steering": 0.25 + batch * 1e-7}
    if sys.argv[1] == "tf.summary":
        with writer.as_default(step=batch):
            for name, value in losses.items():
                tf.summary.scalar("loss/" + name, value)
    else:
        curves.write(batch, losses, 100.0 + batch * 1e-3)
for batch in range(300):
    point(batch)
before = libc.mallinfo2().uordblks
for batch in range(300, 3300):
    point(batch)
curves.flush()
writer.flush()
print((libc.mallinfo2().uordblks - before) / 2**20)
"""
)


def _kept_after_loss_points_mb(mode: str) -> float:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return float(_in_a_fresh_interpreter(LOSS_POINTS, mode, environment=environment)[-1])


@pytest.mark.tf
def test_loss_points_keep_no_memory_where_tf_summary_kept_some_for_each():
    assert _kept_after_loss_points_mb("LossLog") < 0.5
    assert _kept_after_loss_points_mb("tf.summary") > 3.0


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


def _recording(monkeypatch, module: str) -> tuple[list[float], threading.Event]:
    """Stand in for `released_memory` in a command's module: the interval it was given, and
    whether the command's work ended inside the block."""
    intervals: list[float] = []
    ended_inside = threading.Event()

    @contextlib.contextmanager
    def released(interval_s: float) -> Iterator[None]:
        intervals.append(interval_s)
        yield
        ended_inside.set()

    monkeypatch.setattr(f"{module}.released_memory", released)
    return intervals, ended_inside


@pytest.mark.tf
def test_a_standalone_train_releases_memory_at_the_configured_interval(tmp_path, monkeypatch):
    from engine.cli import main
    from tests.test_trainer import VERSION
    from tests.test_trainer_cli import prepared

    config_path, _ = prepared(tmp_path)
    with config_path.open("a", encoding="utf-8") as config:
        config.write("\n[supervisor]\nrelease_memory_s = 7.5\n")
    intervals, ended_inside = _recording(monkeypatch, "engine.trainer.cli")
    assert main(["train", "--model", VERSION, "--batches", "2", "--config", str(config_path)]) == 0
    assert intervals == [7.5] and ended_inside.is_set()


@pytest.mark.tf
def test_a_standalone_drive_releases_memory_at_the_configured_interval(tmp_path, monkeypatch):
    from engine.cli import main
    from tests.driver_helpers import create_version, save_constant_checkpoint

    version = create_version(tmp_path)
    save_constant_checkpoint(tmp_path, version, batch=1, steering=0.0, throttle_brake=0.5)
    config = tmp_path / "config.toml"
    config.write_text("[supervisor]\nrelease_memory_s = 7.5\n", encoding="utf-8")
    intervals, ended_inside = _recording(monkeypatch, "engine.driver.cli")
    args = ["drive", "--model", version, "--sim", "--seconds", "0.5", "--json"]
    assert main([*args, "--data", str(tmp_path), "--config", str(config)]) == 0
    assert intervals == [7.5] and ended_inside.is_set()
