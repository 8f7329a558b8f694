"""The [overlay] settings the pages read: passed to every page, refused out of range."""

from __future__ import annotations

import json
import re

import pytest

from engine.core.config import ConfigError, OverlayConfig, load_config
from engine.core.store import AppState
from overlays.server import OverlayServer


def test_every_page_carries_the_alert_settings():
    config = OverlayConfig(alert_s=12.0, alert_coalesce_s=45.0, alert_share=0.2)
    server = OverlayServer(config, AppState())
    for page in (server._page_index, *server._page_tiles.values()):
        block = re.search(r'id="overlay-config">(.*?)</script>', page).group(1)
        assert json.loads(block) == {"alert_s": 12.0, "alert_coalesce_s": 45.0, "alert_share": 0.2}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "alert_share = 0.9",
            r"'overlay.alert_share' = 0.9 is out of range; accepted: 0.05 to 0.5",
        ),
        ("alert_coalesce_s = -1", r"'overlay.alert_coalesce_s' = -1 is out of range"),
        ("alert_s = 0", r"'overlay.alert_s' = 0 is out of range; accepted: 1.0 to 120.0"),
    ],
)
def test_alert_settings_out_of_range_are_refused_naming_the_range(tmp_path, line, expected):
    path = tmp_path / "config.toml"
    path.write_text(f"[overlay]\n{line}\n")
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
