"""What `charles-stream node` needs to run on Windows too, checked where this Linux machine can.

The Windows path itself is not run here (docs/several-pcs.md says what is
untested). These pin down the parts that used to be POSIX-only or that
Windows reaches differently: a lower CPU priority without `os.nice`, Ctrl+C
as a node's clean stop (no process sends another SIGTERM on Windows), and
secret file names a Windows file system takes for any hub address.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from engine.core.priority import lower_priority, windows_priority_class
from engine.node.cli import hub_address, node_token
from engine.node.process import node_parser, run_node

# What Windows refuses in a file name (and ':' would open an NTFS stream).
WINDOWS_FORBIDDEN = set('<>:"/\\|?*')


@pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX nice values")
def test_a_lower_priority_adds_to_the_nice_value_of_the_process():
    code = (
        "import os; from engine.core.priority import lower_priority; "
        "before = os.nice(0); lower_priority(3); print(os.nice(0) - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # POSIX caps nice at 19: a suite already run at nice 17 or more sees less than 3.
    assert int(done.stdout.strip()) == min(3, 19 - os.nice(0))


def test_no_increment_leaves_the_priority_as_it_is():
    before = psutil.Process().nice()
    lower_priority(0)
    assert psutil.Process().nice() == before


@pytest.mark.parametrize(
    ("increment", "priority_class"),
    [(1, 0x4000), (10, 0x4000), (14, 0x4000), (15, 0x40), (19, 0x40)],
)
def test_on_windows_a_nice_value_becomes_the_nearest_class_below_normal(increment, priority_class):
    # 0x4000 BELOW_NORMAL_PRIORITY_CLASS, 0x40 IDLE_PRIORITY_CLASS (Win32)
    assert windows_priority_class(increment) == priority_class


def test_ctrl_c_stops_a_node_cleanly_with_exit_0(tmp_path):
    args = node_parser("collector", "test").parse_args(["--data", str(tmp_path)])
    cleaned: list[str] = []

    def body(config) -> int:
        try:
            raise KeyboardInterrupt  # as Ctrl+C raises it in the main thread
        finally:
            cleaned.append("pad neutral, last set sent")

    assert run_node(args, body) == 0
    assert cleaned == ["pad neutral, last set sent"]


@pytest.mark.parametrize("address", ["192.168.1.10:8765", "[fd00::10]:8765", "pc-b.lan:8765"])
def test_the_stored_token_has_a_file_name_windows_takes(tmp_path, address, monkeypatch):
    monkeypatch.setenv("CHARLES_HUB_TOKEN", "a-token")
    host, port = hub_address(address)
    node_token(tmp_path, host, port, None)
    (stored,) = (tmp_path / "secrets").iterdir()
    assert not set(stored.name) & WINDOWS_FORBIDDEN, stored.name
    assert stored.read_text().strip() == "a-token"
