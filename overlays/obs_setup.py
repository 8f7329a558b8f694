"""`charles-stream obs setup`: the stream's scene in OBS, created or brought up to date.

Example::

    session = ObsSession.connect(config.obs, obs_password(data_dir))
    report = setup_scene(session, config)
    report.complete          # False when OBS lacks browser sources (Debian's build has no CEF)

The scene (`[obs] scene`) gets one source per tile of `overlays/layout.py`,
placed where the layout puts it, scaled to OBS's canvas: browser sources for
the overlay pages and, when a real game is configured (`[driver] game` names a
game profile, or `[capture] backend` is not "sim"), a game/window capture
source as the main tile instead of the built-in game's chase view. With a game
profile the source is pointed at the profile's window, looked up on the X
server (DISPLAY) as the driver finds it: a window capture (`xcomposite_input`)
gets the window's id, title and class, a screen capture (`xshm_input`, all that
OBS offers without a window manager) that X server cropped to the window, and
Windows' window/game capture its title. A game that is not running yet gets
the source without a target and a report saying to start it and run again.
Every source it owns is named "Charles <tile>";
running it again updates their settings and positions instead of adding
copies, and removes only its own sources that the layout no longer has (the
streamer's own sources stay). An OBS without the `browser_source` kind gets
what can be made without it (the capture source, and the model's name as a
text source the app keeps up to date) and a report saying what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from engine.core.config import Config
from engine.core.errors import ConfigError, DeviceError
from engine.core.tls import local_base_url, needs_tls
from engine.games.profile import GameProfile, load_profile, platform_family
from overlays.layout import CANVAS_HEIGHT, CANVAS_WIDTH, TILES, Tile, tile_url
from overlays.obs import MODEL_LABEL, ObsSession

log = logging.getLogger("charles.obs")

SOURCE_PREFIX = "Charles "
GAME_CAPTURE = f"{SOURCE_PREFIX}game capture"
# xcomposite_input's `capture_window`: "<id>\r\n<title>\r\n<WM_CLASS instance>" (OBS matches
# the id, else title and class exactly, so it finds the window again after the game restarts).
XCOMPOSITE_SEPARATOR = "\r\n"
# Windows' window_capture / game_capture: match the window by its title (window-helpers.h).
WINDOW_PRIORITY_TITLE = 1
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


@dataclass(frozen=True)
class GameWindow:
    """A game profile's window as a capture source needs it; id 0 when it is not open now."""

    profile: str
    title: str
    window_id: int = 0
    wm_class: str = ""
    left: int = 0
    top: int = 0
    width: int = 0
    height: int = 0
    screen_width: int = 0
    screen_height: int = 0
    display: str = ""

    @property
    def found(self) -> bool:
        """Whether the window was open when looked up."""
        return self.width > 0


def overlay_base_url(config: Config) -> str:
    """How OBS reaches the overlay pages: [obs] overlay_url, else the hub's own address."""
    if config.obs.overlay_url:
        return config.obs.overlay_url.rstrip("/")
    # Plain HTTP on this machine even when the hub serves TLS to other machines (local_port).
    key = "local_port" if needs_tls(config.hub.host) else "port"
    if getattr(config.hub, key) == 0:
        raise ConfigError(
            f"[hub] {key} = 0 (any free port) gives OBS no fixed address for the overlay pages; "
            f"set [hub] {key} (e.g. {8766 if key == 'local_port' else 8765}) or [obs] overlay_url"
        )
    return local_base_url(config.hub.host, config.hub.port, config.hub.local_port)


def setup_scene(session: ObsSession, config: Config, label_text: str = "") -> SetupReport:
    """Create or update the scene's sources at the layout's positions; see the module doc."""
    scene = config.obs.scene
    report = SetupReport(scene=scene)
    report.obs_version = session.request("GetVersion").get("obsVersion", "?")
    kinds = set(session.request("GetInputKindList", {"unversioned": False})["inputKinds"])
    window = game_window(config, report)
    plan = plan_sources(config, overlay_base_url(config), kinds, label_text, report, window)
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
    config: Config,
    base_url: str,
    kinds: set[str],
    label_text: str,
    report: SetupReport,
    window: GameWindow | None = None,
) -> list[PlannedSource]:
    """The sources this OBS can have, bottom to top; what it cannot have goes into `report`.

    `window` is the game profile's window (`game_window`): the capture source targets it.
    """
    plan: list[PlannedSource] = []
    without_browser: list[str] = []
    real_game = config.capture.backend != "sim" or window is not None
    for tile in TILES.values():
        if tile.name == "camera" and real_game:
            capture = next((kind for kind in CAPTURE_KINDS if kind in kinds), None)
            if capture is None:
                report.problems.append(
                    f"this OBS has none of the capture kinds {', '.join(CAPTURE_KINDS)}: add the "
                    "game's window to the scene by hand, at the main tile"
                )
            else:
                # Without a game profile the window is the streamer's to pick in OBS.
                settings = capture_settings(capture, window, report) if window else {}
                plan.append(
                    PlannedSource(GAME_CAPTURE, capture, settings, tile, "OBS_BOUNDS_SCALE_INNER")
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


def game_window(
    config: Config, report: SetupReport, display: str | None = None
) -> GameWindow | None:
    """The `[driver] game` profile's window, looked up now; None without a real game's profile.

    A bad profile name or file is refused (UsageError, ConfigError) before OBS is changed.
    A window that is not open gives a GameWindow that is not `found` and a problem in
    `report`: the source is made, and running setup again once the game runs targets it.
    """
    if not config.driver.game:
        return None
    profile = load_profile(config.driver.game)
    if profile.input.backend == "sim":
        return None  # the built-in game inside the driver: the overlay's chase view shows it
    target = profile.window_target()
    if platform_family() != "linux":
        return GameWindow(profile.name, target.title)  # OBS on Windows finds it by title
    if target.region:
        return _region_window(profile, display)
    from engine.games.window import find_window

    try:
        found = find_window(target, display)
    except DeviceError as error:
        report.problems.append(
            f"the capture source does not show game {profile.name!r} yet: {error}. Run "
            "`charles-stream obs setup` again once the game's window is open"
        )
        return GameWindow(profile.name, target.title)
    wm_class, screen, name = _window_details(found.id, display)
    log.info("game %r: window %#x %r on %s", profile.name, found.id, found.title, name)
    return GameWindow(
        profile.name,
        found.title,
        found.id,
        wm_class,
        found.left,
        found.top,
        found.width,
        found.height,
        screen[0],
        screen[1],
        name,
    )


def capture_settings(kind: str, window: GameWindow, report: SetupReport) -> dict[str, Any]:
    """The capture source's settings that show `window`, for this OBS's capture kind."""
    if kind in ("game_capture", "window_capture"):
        # UNTESTED HERE (Windows): "title:class:exe" with ':' escaped, matched by title.
        matched = f"{window.title.replace(':', '#3A')}::"
        settings: dict[str, Any] = {"window": matched, "priority": WINDOW_PRIORITY_TITLE}
        return {**settings, "capture_mode": "window"} if kind == "game_capture" else settings
    if not window.found:
        return {}
    if kind == "xcomposite_input" and window.window_id:
        parts = (str(window.window_id), window.title, window.wm_class)
        return {"capture_window": XCOMPOSITE_SEPARATOR.join(parts)}
    if kind == "xshm_input":
        # The whole X screen, cropped to the window: right and bottom are margins, not sizes.
        return {
            "screen": 0,
            "advanced": bool(window.display),
            "server": window.display,
            "cut_left": window.left,
            "cut_top": window.top,
            "cut_right": max(0, window.screen_width - window.left - window.width),
            "cut_bot": max(0, window.screen_height - window.top - window.height),
        }
    # A PipeWire source (the portal asks the streamer), or a window capture and a profile
    # that gives a screen region instead of a window.
    shown = f"window {window.title!r}" if window.title else "region"
    report.problems.append(
        f"OBS's {kind} cannot be pointed at game {window.profile!r}'s {shown} by settings: "
        f"pick it in the source {GAME_CAPTURE!r}"
    )
    return {}


def _region_window(profile: GameProfile, display: str | None) -> GameWindow:
    """A profile that gives a fixed screen region instead of a title."""
    left, top, width, height = profile.window_target().region
    _, screen, name = _window_details(None, display)
    return GameWindow(profile.name, "", 0, "", left, top, width, height, *screen, name)


def _window_details(window_id: int | None, display: str | None) -> tuple[str, tuple[int, int], str]:
    """A window's WM_CLASS instance, the X screen's size and the display's name."""
    from Xlib.display import Display
    from Xlib.error import BadWindow, DisplayError

    try:
        connection = Display(display)
    except (DisplayError, OSError) as error:
        raise DeviceError(f"cannot open the X display {display or '(DISPLAY)'}: {error}") from None
    try:
        screen = connection.screen()
        wm_class = ""
        if window_id is not None:
            try:
                found = connection.create_resource_object("window", window_id).get_wm_class()
            except BadWindow:
                found = None  # closed since it was found: OBS matches by title and class
            wm_class = found[0] if found else ""
        size = (screen.width_in_pixels, screen.height_in_pixels)
        return wm_class, size, connection.get_display_name()
    finally:
        connection.close()


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
