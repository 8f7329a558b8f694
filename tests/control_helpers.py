"""A real hub with the control dock, real actions, chat router and supervised stand-in children."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.commands import Router
from engine.app.actions import StreamActions
from engine.app.control import COOKIE, ControlDock
from engine.app.control_sessions import ControlSessions
from engine.app.hub import Hub
from engine.app.supervisor import Supervisor
from engine.core.config import ChatConfig, HubConfig
from engine.core.store import AppState
from overlays.feed import OverlayFeed
from tests.driver_helpers import create_version
from tests.hub_helpers import TOKEN
from tests.test_supervisor import ENV, FAST, WAIT_S, Reports, child

# The stand-in children the dock starts and stops (tests/children/child.py).
PROCESSES = ("collector_0", "driver")


class Clock:
    """A clock the test moves: sessions and one-time links expire without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dock:
    """Everything a control test touches."""

    hub: Hub
    dock: ControlDock
    actions: StreamActions
    state: AppState
    router: Router
    supervisor: Supervisor | None
    clock: Clock

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.hub.port}"


@contextlib.asynccontextmanager
async def control_hub(tmp_path: Path, *, processes: bool = False) -> AsyncIterator[Dock]:
    """A started hub on 127.0.0.1 with the dock, streaming model_0000_demo_v1; stopped after."""
    create_version(tmp_path)
    state = AppState()
    hub = Hub(HubConfig(host="127.0.0.1", port=0), TOKEN, state)
    actions = StreamActions(tmp_path, state, hub)
    hub.set_action_handler(actions)
    router = Router(ChatConfig(), actions)
    clock = Clock()
    feed = OverlayFeed(state, loss_points=100)
    dock = ControlDock(
        TOKEN, actions, loss=feed.loss, chat=router, sessions=ControlSessions(TOKEN, clock=clock)
    )
    dock.add_routes(hub.app)
    await hub.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(hub.stop)
        await actions.switch("model_0000_demo_v1", user="app")
        supervisor = None
        if processes:
            reports = await stack.enter_async_context(Reports())
            supervisor = Supervisor(
                [child(name, reports) for name in PROCESSES],
                FAST,
                ENV,
                state,
                log_dir=tmp_path / "logs",
            )
            await supervisor.start()
            stack.push_async_callback(supervisor.stop)
            dock.processes = supervisor
            await until(lambda: all(state.processes[n].state == "running" for n in PROCESSES))
        yield Dock(hub, dock, actions, state, router, supervisor, clock)


def client() -> aiohttp.ClientSession:
    """A client that keeps the dock's cookie (aiohttp drops cookies of IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(session: aiohttp.ClientSession, dock: Dock) -> str:
    """Sign in with the hub token; the session's CSRF token (from the dock page)."""
    async with session.post(f"{dock.base}/control/login", data={"token": TOKEN}) as response:
        assert response.status == 200, await response.text()
        page = await response.text()
    assert any(cookie.key == COOKIE for cookie in session.cookie_jar)
    marker = 'name="csrf-token" content="'
    return page.split(marker, 1)[1].split('"', 1)[0]


async def until(predicate: Callable[[], bool]) -> None:
    """Await a condition on the app's state (it changes as events are applied)."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.02)
