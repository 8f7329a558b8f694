"""The control dock in Debian's chromium: sign in, every control, live updates, no session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.messages import ChatMessage
from engine.core.store import ConnectionChanged, ProcessChanged, ProcessState, Received
from tests.control_helpers import Dock, control_hub
from tests.hub_helpers import TOKEN
from tests.overlay_helpers import launch_chromium, needs_chromium, trainer_status

pytestmark = [pytest.mark.browser, needs_chromium]

# An OBS custom browser dock is about this narrow.
DOCK_SIZE = {"width": 320, "height": 700}
WAIT_MS = 20_000


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in_page(browser: Browser, dock: Dock) -> Page:
    page = await browser.new_page(viewport=DOCK_SIZE)
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{dock.base}/control")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await expect(page.locator("#on-stream")).to_have_text("on stream: model_0000_demo_v1")
    return page


async def fits_the_dock(page: Page) -> None:
    """Narrow as an OBS dock: nothing sticks out sideways."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= DOCK_SIZE["width"]


async def api_status(dock: Dock) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{dock.base}/api/status") as response,
    ):
        return await response.json()


async def until_status(dock: Dock, page: Page, check) -> dict:
    """Wait (on the page's clock) until /api/status satisfies `check`; the status."""
    for _ in range(WAIT_MS // 100):
        status = await api_status(dock)
        if check(status):
            return status
        await page.wait_for_timeout(100)
    raise AssertionError(f"/api/status never got there: {status}")


async def test_signing_in_then_every_control_changes_what_api_status_says(tmp_path):
    async with control_hub(tmp_path, processes=True) as dock, chromium() as browser:
        page = await signed_in_page(browser, dock)
        await expect(page.locator('#processes tr[data-process="driver"]')).to_be_visible()
        await fits_the_dock(page)
        # Switch to a new version of the line.
        await page.select_option("#switch-model", "model_0000_demo")
        await page.check("#switch-new")
        await page.click("#switch-form button")
        await until_status(dock, page, lambda s: s["version"] == "model_0000_demo_v2")
        await expect(page.locator("#on-stream")).to_have_text("on stream: model_0000_demo_v2")
        await expect(page.locator('#models tr[data-version="model_0000_demo_v2"]')).to_be_visible()
        # Back to v1 by name.
        await page.uncheck("#switch-new")
        await page.select_option("#switch-model", "model_0000_demo_v1")
        await page.click("#switch-form button")
        await until_status(dock, page, lambda s: s["version"] == "model_0000_demo_v1")
        # Tag a moment.
        await page.fill("#tag-text", "straight into the pond")
        await page.click("#tag-form button")
        await until_status(
            dock, page, lambda s: {"kind": "moment", "text": "streamer: straight into the pond"}
            in s["alerts"]
        )  # fmt: skip
        # Stop, start and restart a process.
        driver = page.locator('#processes tr[data-process="driver"]')
        await driver.locator('button[data-do="stop"]').click()
        await until_status(dock, page, lambda s: s["processes"]["driver"]["state"] == "stopped")
        await expect(driver).to_have_attribute("data-state", "stopped")
        await driver.locator('button[data-do="start"]').click()
        status = await until_status(
            dock, page, lambda s: s["processes"]["driver"]["state"] == "running"
        )
        pid = status["processes"]["driver"]["pid"]
        await driver.locator('button[data-do="restart"]').click()
        await until_status(
            dock,
            page,
            lambda s: (
                s["processes"]["driver"]["state"] == "running"
                and s["processes"]["driver"]["pid"] not in (None, pid)
            ),
        )
        assert dock.state.processes["collector_0"].restarts == 0
        # Sign out: back to the form, and the old cookie is dead.
        await page.click("#logout")
        await expect(page.locator("#token")).to_be_visible()
        assert await page.locator("#processes").count() == 0


async def test_the_dock_updates_live_without_a_reload(tmp_path):
    async with control_hub(tmp_path) as dock, chromium() as browser:
        page = await signed_in_page(browser, dock)
        reloads = []
        page.on("load", lambda _: reloads.append(1))
        dock.state.apply(Received(trainer_status(1180, 0.05, "model_0000_demo_v1"), "trainer"))
        await expect(page.locator("#model-now")).to_contain_text("batch 1,180")
        await expect(page.locator("#model-now")).to_contain_text("loss 0.05000")
        await expect(page.locator("#loss-legend")).to_contain_text("total")
        dock.state.apply(ConnectionChanged("obs", "connected (OBS 30.2, replay buffer on)"))
        await expect(page.locator("#links")).to_contain_text("connected (OBS 30.2")
        await dock.router.handle(ChatMessage("viewer42", "!vote model_0000_demo"))
        await expect(page.locator("#vote")).to_contain_text("model_0000_demo: 1")
        await expect(page.locator("#chat")).to_contain_text("viewer42 !vote model_0000_demo")
        dock.state.apply(Received(trainer_status(1300, 0.04, "model_0000_demo_v1"), "trainer"))
        await expect(page.locator("#model-now")).to_contain_text("batch 1,300")
        assert reloads == []
        await fits_the_dock(page)


async def test_a_page_without_a_session_sees_nothing_and_can_do_nothing(tmp_path):
    async with control_hub(tmp_path, processes=True) as dock, chromium() as browser:
        page = await browser.new_page(viewport=DOCK_SIZE)
        page.set_default_timeout(WAIT_MS)
        await page.goto(f"{dock.base}/control")
        await expect(page.locator("#token")).to_be_visible()
        text = await page.locator("body").inner_text()
        assert "model_0000_demo" not in text and "driver" not in text
        answers = await page.evaluate(
            """async () => {
                const answers = {};
                for (const [path, body] of [
                    ["/control/switch", {model: "model_0000_demo", new: true}],
                    ["/control/tag", {text: "sneaky"}],
                    ["/control/process", {name: "driver", do: "stop"}],
                    ["/control/logout", {}],
                ]) {
                    const response = await fetch(path, {
                        method: "POST",
                        headers: {"Content-Type": "application/json", "X-CSRF-Token": "guess"},
                        body: JSON.stringify(body),
                    });
                    answers[path] = [response.status, (await response.json()).error];
                }
                const state = await fetch("/control/state");
                answers["/control/state"] = [state.status, (await state.json()).error];
                return answers;
            }"""
        )
        for path, (status, error) in answers.items():
            assert status == 401, path
            assert "not signed in" in error, path
        status = await api_status(dock)
        assert status["version"] == "model_0000_demo_v1"
        assert status["processes"]["driver"]["state"] == "running"
        assert dock.actions.moments.list() == []


async def test_each_process_shows_its_memory_and_a_new_sample_keeps_its_buttons(tmp_path):
    async with control_hub(tmp_path) as dock, chromium() as browser:
        page = await signed_in_page(browser, dock)
        mb = 1 << 20
        dock.state.apply(
            ProcessChanged(ProcessState("trainer", "running", pid=7, rss_bytes=812 * mb))
        )
        trainer = page.locator('#processes tr[data-process="trainer"]')
        await expect(trainer.locator("td.memory")).to_have_text("812 MB")
        await trainer.locator('button[data-do="stop"]').evaluate("b => { b.dataset.seen = '1'; }")
        dock.state.apply(
            ProcessChanged(ProcessState("trainer", "running", pid=7, rss_bytes=1_234 * mb))
        )
        await expect(trainer.locator("td.memory")).to_have_text("1,234 MB")
        # The same button: a sample redraws the figure, not the row under the streamer's cursor.
        await expect(trainer.locator('button[data-do="stop"]')).to_have_attribute("data-seen", "1")
