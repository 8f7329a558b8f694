"""Programs some tests need from Debian packages, and a skip that names the missing one.

Example::

    @needs_dot
    def test_plot_draws_the_architecture_to_a_png(tmp_path): ...

`make test` installs every package the tests use before any test runs
(`.ci/system-packages`), so under it these never skip. A bare `pytest` on a
machine without one skips the tests that need it with a reason saying what to
install (`pytest -ra` lists the reasons), instead of failing somewhere inside.
"""

from __future__ import annotations

import shutil

import pytest


def needs_program(program: str, package: str, what: str) -> pytest.MarkDecorator:
    """Skip unless `program` is on PATH; the reason names the Debian `package` that has it."""
    return pytest.mark.skipif(
        shutil.which(program) is None,
        reason=f"{what} (`{program}`) is not installed: `make test` installs it, "
        f"or sudo apt-get install {package}",
    )


# Keras plot_model draws the architecture through Graphviz's `dot`.
needs_dot = needs_program("dot", "graphviz", "Graphviz")
