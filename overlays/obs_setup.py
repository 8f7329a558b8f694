"""`charles-stream obs setup`: the stream's scene in OBS, created or brought up to date.

Example::

    session = ObsSession.connect(config.obs, obs_password(data_dir))
    report = setup_scene(session, config)
    report.complete          # False when OBS lacks browser sources (Debian's build has no CEF)

The scene (`[obs] scene`) gets one source per tile of `overlays/layout.py`,
placed where the layout puts it, scaled to OBS's canvas: browser sources for
the overlay pages and, when a real game is configured (`[capture] backend` is
not "sim"), a game/window capture source as the main tile instead of the
built-in game's chase view. Every source it owns is named "Charles <tile>";
running it again updates their settings and positions instead of adding
copies, and removes only its own sources that the layout no longer has (the
streamer's own sources stay). An OBS without the `browser_source` kind gets
what can be made without it (the capture source, and the model's name as a
text source the app keeps up to date) and a report saying what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.config import Config
from engine.core.errors import ConfigError
from overlays.layout import CANVAS_HEIGHT, CANVAS_WIDTH, TILES, Tile, tile_url
from overlays.obs import MODEL_LABEL, ObsSession

SOURCE_PREFIX = "Charles "
BROWSER_KIND = "browser_source"
# The first of these OBS has: Windows, then Linux (X11, PipeWire), then macOS; screen capture last.
CAPTURE_KINDS = (
    "game_capture",
    "window_capture",
    "xcomposite_input",
    "pipewire-window-capture-source",
    "screen_capture",
    "xshm_input",
    "pipewire-desktop-capture-source",
    "monitor_capture",
)
TEXT_KINDS = ("text_gdiplus_v3", "text_gdiplus_v2", "text_ft2_source_v2")
BROWSER_FPS = 30
# OBS alignment flags (obs.h): 0 = centre, LEFT 1, RIGHT 2, TOP 4, BOTTOM 8.
TOP_LEFT = 5
BOTTOM_RIGHT = 10
CENTRE = 0
NO_BROWSER_SOURCE = (
    "this OBS has no browser source (input kind 'browser_source'; builds without CEF, such as "
    "Debian's obs-studio package, lack it), so these tiles were not added: {tiles}. Use OBS "
    "from obsproject.com or Flathub, then run `charles-stream obs setup` again."
)


@dataclass(frozen=True)
class PlannedSource:
    """A source the scene should have: name, input kind, settings, and the tile it fills."""

    name: str
    kind: str
    settings: dict[str, Any]
    tile: Tile
    bounds: str = "OBS_BOUNDS_STRETCH"
    alignment: int = CENTRE
    # Settings given only when the source is created: the app keeps the label's text current.
    initial: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetupReport:
    """What `setup_scene` did, and what it could not do."""

    scene: str
    obs_version: str = ""
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every tile has its source."""
        return not self.problems


def overlay_base_url(config: Config) -> str:
    """How OBS reaches the overlay pages: [obs] overlay_url, else the hub's own address."""
    if config.obs.overlay_url:
        return config.obs.overlay_url.rstrip("/")
    if config.hub.port == 0:
        raise ConfigError(
            "[hub] port = 0 (any free port) gives OBS no fixed address for the overlay pages; "
            "set [hub] port (e.g. 8765) or [obs] overlay_url"
        )
    host = config.hub.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.hub.port}"


def setup_scene(session: ObsSession, config: Config, label_text: str = "") -> SetupReport:
    """Create or update the scene's sources at the layout's positions; see the module doc."""
    scene = config.obs.scene
    report = SetupReport(scene=scene)
    report.obs_version = session.request("GetVersion").get("obsVersion", "?")
    kinds = set(session.request("GetInputKindList", {"unversioned": False})["inputKinds"])
    plan = plan_sources(config, overlay_base_url(config), kinds, label_text, report)
    video = session.request("GetVideoSettings")
    scale = (video["baseWidth"] / CANVAS_WIDTH, video["baseHeight"] / CANVAS_HEIGHT)

    scenes = {entry["sceneName"] for entry in session.request("GetSceneList")["scenes"]}
    if scene not in scenes:
        session.request("CreateScene", {"sceneName": scene})
    inputs = {
        entry["inputName"]: entry["inputKind"]
        for entry in session.request("GetInputList")["inputs"]
    }
    items = _scene_items(session, scene)
    for source in plan:
        item_id = _apply_source(session, scene, source, inputs, items, report)
        session.request(
            "SetSceneItemTransform",
            {
                "sceneName": scene,
                "sceneItemId": item_id,
                "sceneItemTransform": _transform(source, scale),
            },
        )
        items[source.name] = item_id
    planned = {source.name for source in plan}
    for name, item_id in list(items.items()):
        if name.startswith(SOURCE_PREFIX) and name not in planned:
            session.request("RemoveSceneItem", {"sceneName": scene, "sceneItemId": item_id})
            report.removed.append(name)
    # Bottom to top as the layout lists them; the streamer's own sources stay above.
    for index, source in enumerate(plan):
        session.request(
            "SetSceneItemIndex",
            {"sceneName": scene, "sceneItemId": items[source.name], "sceneItemIndex": index},
        )
    return report


def plan_sources(
    config: Config, base_url: str, kinds: set[str], label_text: str, report: SetupReport
) -> list[PlannedSource]:
    """The sources this OBS can have, bottom to top; what it cannot have goes into `report`."""
    plan: list[PlannedSource] = []
    without_browser: list[str] = []
    real_game = config.capture.backend != "sim"
    for tile in TILES.values():
        if tile.name == "camera" and real_game:
            capture = next((kind for kind in CAPTURE_KINDS if kind in kinds), None)
            if capture is None:
                report.problems.append(
                    f"this OBS has none of the capture kinds {', '.join(CAPTURE_KINDS)}: add the "
                    "game's window to the scene by hand, at the main tile"
                )
            else:
                # The window is the streamer's to pick in the source's properties.
                plan.append(
                    PlannedSource(
                        f"{SOURCE_PREFIX}game capture", capture, {}, tile, "OBS_BOUNDS_SCALE_INNER"
                    )
                )
            continue
        if BROWSER_KIND in kinds:
            plan.append(
                PlannedSource(
                    f"{SOURCE_PREFIX}{tile.name}",
                    BROWSER_KIND,
                    {
                        "url": tile_url(base_url, tile),
                        "width": tile.width,
                        "height": tile.height,
                        "fps_custom": True,
                        "fps": BROWSER_FPS,
                        # Keep the page running while hidden, so its loss chart keeps history.
                        "shutdown": False,
                    },
                    tile,
                    alignment=TOP_LEFT,
                )
            )
        else:
            without_browser.append(tile.name)
    if without_browser:
        report.problems.append(NO_BROWSER_SOURCE.format(tiles=", ".join(without_browser)))
        text_kind = next((kind for kind in TEXT_KINDS if kind in kinds), None)
        if text_kind is not None:
            plan.append(
                PlannedSource(
                    MODEL_LABEL,
                    text_kind,
                    {
                        "font": {"face": "Sans Serif", "size": 48, "style": "Bold", "flags": 1},
                        "outline": True,
                    },
                    TILES["model"],
                    "OBS_BOUNDS_SCALE_INNER",
                    BOTTOM_RIGHT,
                    initial={"text": label_text or "charles-stream"},
                )
            )
    return plan


def _apply_source(
    session: ObsSession,
    scene: str,
    source: PlannedSource,
    inputs: dict[str, str],
    items: dict[str, int],
    report: SetupReport,
) -> int:
    """Make the input exist with this kind and settings, in the scene; its scene item id."""
    kind = inputs.get(source.name)
    if kind is not None and kind != source.kind:
        # An input's kind cannot change (e.g. a browser tile became a game capture).
        session.request("RemoveInput", {"inputName": source.name})
        items.pop(source.name, None)
        kind = None
    if kind is None:
        created = session.request(
            "CreateInput",
            {
                "sceneName": scene,
                "inputName": source.name,
                "inputKind": source.kind,
                "inputSettings": {**source.settings, **source.initial},
                "sceneItemEnabled": True,
            },
        )
        inputs[source.name] = source.kind
        report.created.append(source.name)
        return created["sceneItemId"]
    session.request(
        "SetInputSettings",
        {"inputName": source.name, "inputSettings": source.settings, "overlay": True},
    )
    report.updated.append(source.name)
    if source.name in items:
        return items[source.name]
    added = session.request("CreateSceneItem", {"sceneName": scene, "sourceName": source.name})
    return added["sceneItemId"]


def _scene_items(session: ObsSession, scene: str) -> dict[str, int]:
    listed = session.request("GetSceneItemList", {"sceneName": scene})["sceneItems"]
    return {item["sourceName"]: item["sceneItemId"] for item in listed}


def _transform(source: PlannedSource, scale: tuple[float, float]) -> dict[str, Any]:
    tile = source.tile
    return {
        "positionX": tile.x * scale[0],
        "positionY": tile.y * scale[1],
        "alignment": TOP_LEFT,
        "boundsType": source.bounds,
        "boundsWidth": tile.width * scale[0],
        "boundsHeight": tile.height * scale[1],
        "boundsAlignment": source.alignment,
        "rotation": 0.0,
    }
