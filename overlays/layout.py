"""The reference stream's one screen, as tiles on a 1920x1080 canvas.

Example::

    tile = TILES["hood"]                          # Tile(name="hood", x=1280, y=0, ...)
    tile_url("http://127.0.0.1:8765", tile)       # ".../overlay/hood?width=640&height=360"

The 3rd-person (chase) camera is the main tile, with the model's name and
creation date in its lower-right corner; the hood camera (what the model
sees) and the Convcam are beside it; the Player Console, the Trainer Console
and the loss chart are below; alerts float over the top of the main tile. The
full page (`/overlay/`) and `charles-stream obs setup` both place tiles from
this table, so the browser layout and the OBS scene cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

CANVAS_WIDTH = 1920
CANVAS_HEIGHT = 1080


@dataclass(frozen=True)
class Tile:
    """One tile of the layout: its page name, where it sits and what it shows."""

    name: str
    x: int
    y: int
    width: int
    height: int
    title: str

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form, for the full-layout page."""
        return {
            "name": self.name,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "title": self.title,
        }


# Bottom to top: later tiles are drawn over earlier ones (the model label and alerts lie on
# the main camera tile).
TILES: dict[str, Tile] = {
    tile.name: tile
    for tile in (
        Tile("camera", 0, 0, 1280, 720, "3rd-person camera"),
        Tile("hood", 1280, 0, 640, 360, "Hood camera (what the model sees)"),
        Tile("convcam", 1280, 360, 640, 360, "Convcam"),
        Tile("player", 0, 720, 560, 360, "Player Console"),
        Tile("trainer", 560, 720, 600, 360, "Trainer Console"),
        Tile("loss", 1160, 720, 760, 360, "Loss"),
        Tile("model", 840, 620, 430, 90, "Model"),
        Tile("alerts", 240, 24, 800, 200, "Alerts"),
    )
}


def tile_url(base_url: str, tile: Tile) -> str:
    """The page of one tile, sized to the tile: what an OBS browser source opens."""
    query = urlencode({"width": tile.width, "height": tile.height})
    return f"{base_url.rstrip('/')}/overlay/{tile.name}?{query}"


def layout_json() -> list[dict[str, Any]]:
    """Every tile, bottom to top, for the full-layout page."""
    return [tile.as_dict() for tile in TILES.values()]
