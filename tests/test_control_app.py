"""The running app serves the dock and logs a one-time sign-in link that works once."""

from __future__ import annotations

import logging
import re

from engine.app.app import StreamApp
from tests.control_helpers import client
from tests.test_bot_service import stream_config

ONCE_LINK = re.compile(
    r"control dock \(one-time sign-in link\): (http://\S+/control/login\?once=\S+)"
)


async def test_the_app_logs_a_one_time_link_and_the_dock_controls_its_processes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="charles.app")
    app = StreamApp(stream_config(tmp_path), config_path=None)
    await app.start()
    try:
        links = [m.group(1) for r in caplog.records if (m := ONCE_LINK.search(r.getMessage()))]
        assert len(links) == 1
        assert app.control.processes is app.supervisor
        async with client() as session:
            async with session.get(links[0]) as response:
                assert response.status == 200  # followed to /control, signed in
                assert 'name="csrf-token"' in await response.text()
            async with session.get(links[0].split("/control/")[0] + "/control/state") as response:
                view = await response.json()
        assert view["status"]["version"] == "model_0000_demo_v1"
        assert view["processes_controllable"] is True
    finally:
        await app.stop()
