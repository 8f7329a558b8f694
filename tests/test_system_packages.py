"""`.ci/system-packages`, the first step of `make demo` and `make test`, on a PATH missing `dot`.

Nothing is uninstalled: each test runs the script with PATH set to a folder of
links to this machine's /usr/bin without `dot` (Graphviz), and with stand-ins
for `id` (who we are), `sudo` and `apt-get` that only write down how they were
called. New files are created exclusively (never through one of the links), so
a stand-in can never overwrite the real program.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "system-packages"
# The real programs the stand-ins replace, and the one that is "not installed".
REPLACED = {"id", "sudo", "apt-get", "python3", "dot"}

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/usr/bin/env").exists(),
    reason="the script is for Debian-like systems",
)


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A PATH folder: /usr/bin as links, minus `dot`, with python3 = this interpreter."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for entry in os.scandir("/usr/bin"):
        if entry.name not in REPLACED:
            (folder / entry.name).symlink_to(entry.path)
    (folder / "python3").symlink_to(sys.executable)
    return folder


def stand_in(folder: Path, name: str, body: str) -> None:
    """A shell script `name` in `folder`; "x" refuses to write through an existing link."""
    with (folder / name).open("x", encoding="utf-8") as script:
        script.write(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)


def run_script(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *arguments],
        env={"PATH": str(folder), "HOME": str(folder.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_user_without_sudo_is_stopped_with_one_line_naming_the_package(fake_path):
    stand_in(fake_path, "id", "echo 1000")

    done = run_script(fake_path, "test")

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("make test needs system packages that are not installed:")
    assert "graphviz" in line and "sudo apt-get install" in line


def test_root_installs_what_is_missing_with_apt_get(fake_path):
    log = fake_path.parent / "apt.log"
    stand_in(fake_path, "id", "echo 0")
    # "Installing" graphviz puts `dot` back on the PATH, as the real package would.
    stand_in(
        fake_path,
        "apt-get",
        f'echo "$DEBIAN_FRONTEND apt-get $*" >> {log}\n'
        f'case "$*" in *install*graphviz*) ln -s /usr/bin/dot {fake_path}/dot;; esac',
    )

    missing = run_script(fake_path, "missing", "test").stdout.split()

    done = run_script(fake_path, "test")

    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls == [
        "noninteractive apt-get update -q",
        f"noninteractive apt-get install -y -q --no-install-recommends {' '.join(missing)}",
    ]
    assert "graphviz" in missing
    assert "installing system packages: " in done.stderr
    if missing == ["graphviz"]:  # a machine with all the others: done after the install
        assert done.returncode == 0, done.stderr
    assert "graphviz" not in run_script(fake_path, "missing", "test").stdout.split()


def test_passwordless_sudo_runs_apt_get_through_sudo(fake_path):
    log = fake_path.parent / "apt.log"
    stand_in(fake_path, "id", "echo 1000")
    stand_in(fake_path, "sudo", f'echo "sudo $*" >> {log}\n[ "$1" = -n ] && shift\nexec "$@"')
    stand_in(fake_path, "apt-get", f'echo "apt-get $*" >> {log}')

    run_script(fake_path, "test")

    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0] == "sudo -n true"
    assert calls[1] == "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -q"


def test_the_demo_needs_no_graphviz(fake_path):
    stand_in(fake_path, "id", "echo 1000")

    done = run_script(fake_path, "list", "demo")

    assert "graphviz" not in done.stdout.split()
    assert "graphviz" in run_script(fake_path, "list", "test").stdout.split()


def test_an_unknown_set_is_refused_with_the_usage():
    done = subprocess.run(
        [str(SCRIPT), "everything"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "usage:" in done.stderr and "demo|test" in done.stderr
