"""The folder tree's layering holds: no package imports one above it (pyproject's contract)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_no_import_goes_against_the_layering():
    # import-linter reads [tool.importlinter] in pyproject.toml; every import statement counts,
    # also those inside functions.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
