"""Test tiers and the fixtures many test files share.

Tiers are pytest markers, declared per file with `pytestmark` (or per test):

- `tf`: loads TensorFlow, in the test's process or in a child it starts;
- `x11`: starts an X server (Xvfb) and real windows (the built-in game, TORCS);
- `browser`: Debian's chromium through Playwright;
- `obs`: a real OBS Studio under Xvfb;
- `slow`: a whole stream or many processes, tens of seconds each.

A test with none of them is `unit` (added here): in-process, no TensorFlow, no
X server, no browser. In the unit tier a file whose `pytestmark` names a heavy
tier is not even imported (importing it may load TensorFlow). `make test-unit`
(`pytest -m unit -n 2`) runs that tier in well under a minute on two cores; a
test that starts loading TensorFlow or windows must say its tier, or that
minute is gone. `make test` runs every tier.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.xvfb import XvfbDisplay

HEAVY_TIERS = ("tf", "x11", "browser", "obs", "slow")
UNIT = "unit"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private 1920x1080 Xvfb for one test module (its DISPLAY name, e.g. ":12")."""
    with XvfbDisplay(1920, 1080) as xvfb:
        yield xvfb.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test without a heavy tier `unit`."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in HEAVY_TIERS):
            item.add_marker(UNIT)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In the unit tier, skip importing files marked with a heavy tier as a whole."""
    if config.getoption("markexpr", "") != UNIT or collection_path.suffix != ".py":
        return None
    return True if file_tiers(collection_path) & set(HEAVY_TIERS) else None


def file_tiers(path: Path) -> set[str]:
    """The `pytest.mark.<name>` names in a test file's module-level `pytestmark`."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets
        ):
            for part in ast.walk(node.value):
                if (
                    isinstance(part, ast.Attribute)
                    and isinstance(part.value, ast.Attribute)
                    and part.value.attr == "mark"
                ):
                    names.add(part.attr)
    return names


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    """Debian's chromium through Playwright, one per module (the overlay and look tests)."""
    from playwright.async_api import async_playwright  # only where a page is rendered

    from tests.overlay_helpers import launch_chromium

    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser):
    """A fresh 1920x1080 page with a 10 s default timeout."""
    # The CSP forbids eval, which Playwright's string predicates use (the CSP has its own tests).
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1920, "height": 1080})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()
