"""A small server speaking obs-websocket 5 (Hello, Identify with authentication, Identified,
requests and responses), holding enough of OBS's scene model for `obs setup` and the link.

Debian's OBS has no browser source; this stands in for an OBS that has one, so
obsws-python stays the real client of the requests that create browser sources.
Every request is recorded with its data. Messages follow
https://github.com/obsproject/obs-websocket/blob/master/docs/generated/protocol.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

PASSWORD = "fake-obs-password"
KINDS_WITH_BROWSER = ("browser_source", "image_source", "text_ft2_source_v2", "xshm_input")
# obs-websocket codes (RequestStatus) and the close code for a failed authentication.
SUCCESS = 100
UNKNOWN_REQUEST_TYPE = 204
RESOURCE_NOT_FOUND = 600
RESOURCE_ALREADY_EXISTS = 601
INVALID_INPUT_KIND = 605
AUTHENTICATION_FAILED = 4009


class RequestFailed(Exception):
    """A request OBS would refuse, with its status code."""

    def __init__(self, code: int, comment: str) -> None:
        super().__init__(comment)
        self.code = code


@dataclass
class FakeObs:
    """The scene model: scenes with items, inputs with kinds and settings, recorded requests."""

    kinds: tuple[str, ...] = KINDS_WITH_BROWSER
    canvas: tuple[int, int] = (1920, 1080)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    scenes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"Scene": []})
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _next_item_id: int = 1

    def requested(self, request_type: str) -> list[dict[str, Any]]:
        """The data of every request of one type, in order."""
        return [data for name, data in self.requests if name == request_type]

    def item(self, scene: str, source: str) -> dict[str, Any]:
        """The scene item showing `source` in `scene`."""
        return next(item for item in self.scenes[scene] if item["sourceName"] == source)

    def add_input(self, scene: str, name: str, kind: str, settings: dict[str, Any]) -> int:
        """An input added to a scene (as the streamer would add one by hand)."""
        self.inputs[name] = {"kind": kind, "settings": dict(settings)}
        return self._add_item(scene, name)

    # -- requests ------------------------------------------------------------------------

    def handle(self, request_type: str, data: dict[str, Any]) -> dict[str, Any] | None:
        handler: Callable[[dict[str, Any]], dict[str, Any] | None] | None = getattr(
            self, f"_request_{request_type}", None
        )
        if handler is None:
            raise RequestFailed(UNKNOWN_REQUEST_TYPE, f"unknown request {request_type}")
        return handler(data)

    def _request_GetVersion(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "obsVersion": "30.2.0",
            "obsWebSocketVersion": "5.5.0",
            "rpcVersion": 1,
            "platform": "fake",
        }

    def _request_GetInputKindList(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"inputKinds": list(self.kinds)}

    def _request_GetVideoSettings(self, data: dict[str, Any]) -> dict[str, Any]:
        width, height = self.canvas
        return {
            "baseWidth": width,
            "baseHeight": height,
            "outputWidth": width,
            "outputHeight": height,
        }

    def _request_GetSceneList(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"scenes": [{"sceneName": name} for name in self.scenes]}

    def _request_CreateScene(self, data: dict[str, Any]) -> None:
        if data["sceneName"] in self.scenes:
            raise RequestFailed(RESOURCE_ALREADY_EXISTS, "scene exists")
        self.scenes[data["sceneName"]] = []

    def _request_GetInputList(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "inputs": [
                {"inputName": name, "inputKind": spec["kind"]} for name, spec in self.inputs.items()
            ]
        }

    def _request_GetSceneItemList(self, data: dict[str, Any]) -> dict[str, Any]:
        items = self._scene(data["sceneName"])
        return {
            "sceneItems": [
                {
                    "sceneItemId": item["sceneItemId"],
                    "sourceName": item["sourceName"],
                    "sceneItemIndex": index,
                }
                for index, item in enumerate(items)
            ]
        }

    def _request_CreateInput(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["inputKind"] not in self.kinds:
            raise RequestFailed(INVALID_INPUT_KIND, "input kind not supported")
        if data["inputName"] in self.inputs:
            raise RequestFailed(RESOURCE_ALREADY_EXISTS, "input exists")
        self._scene(data["sceneName"])
        item_id = self.add_input(
            data["sceneName"], data["inputName"], data["inputKind"], data.get("inputSettings", {})
        )
        return {"sceneItemId": item_id}

    def _request_RemoveInput(self, data: dict[str, Any]) -> None:
        self._input(data["inputName"])
        del self.inputs[data["inputName"]]
        for items in self.scenes.values():
            items[:] = [item for item in items if item["sourceName"] != data["inputName"]]

    def _request_GetInputSettings(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self._input(data["inputName"])
        return {"inputKind": spec["kind"], "inputSettings": spec["settings"]}

    def _request_SetInputSettings(self, data: dict[str, Any]) -> None:
        spec = self._input(data["inputName"])
        if data.get("overlay", True):
            spec["settings"].update(data["inputSettings"])
        else:
            spec["settings"] = dict(data["inputSettings"])

    def _request_CreateSceneItem(self, data: dict[str, Any]) -> dict[str, Any]:
        self._input(data["sourceName"])
        self._scene(data["sceneName"])
        return {"sceneItemId": self._add_item(data["sceneName"], data["sourceName"])}

    def _request_RemoveSceneItem(self, data: dict[str, Any]) -> None:
        items = self._scene(data["sceneName"])
        item = self._scene_item(items, data["sceneItemId"])
        items.remove(item)

    def _request_SetSceneItemTransform(self, data: dict[str, Any]) -> None:
        item = self._scene_item(self._scene(data["sceneName"]), data["sceneItemId"])
        item["transform"].update(data["sceneItemTransform"])

    def _request_SetSceneItemIndex(self, data: dict[str, Any]) -> None:
        items = self._scene(data["sceneName"])
        item = self._scene_item(items, data["sceneItemId"])
        items.remove(item)
        items.insert(data["sceneItemIndex"], item)

    def _scene(self, name: str) -> list[dict[str, Any]]:
        if name not in self.scenes:
            raise RequestFailed(RESOURCE_NOT_FOUND, f"no scene {name}")
        return self.scenes[name]

    def _input(self, name: str) -> dict[str, Any]:
        if name not in self.inputs:
            raise RequestFailed(RESOURCE_NOT_FOUND, f"No source was found by the name of `{name}`.")
        return self.inputs[name]

    def _scene_item(self, items: list[dict[str, Any]], item_id: int) -> dict[str, Any]:
        for item in items:
            if item["sceneItemId"] == item_id:
                return item
        raise RequestFailed(RESOURCE_NOT_FOUND, f"no scene item {item_id}")

    def _add_item(self, scene: str, source: str) -> int:
        item_id = self._next_item_id
        self._next_item_id += 1
        self.scenes[scene].append({"sceneItemId": item_id, "sourceName": source, "transform": {}})
        return item_id


@contextlib.asynccontextmanager
async def running_fake_obs(obs: FakeObs, password: str = PASSWORD) -> AsyncIterator[FakeObs]:
    """Serve `obs` on 127.0.0.1 until the block ends: on its `port`, or on a free one it sets."""

    async def session(request: web.Request) -> web.WebSocketResponse:
        return await _session(request, obs, password)

    app = web.Application()
    app.router.add_get("/", session)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", obs.port)
    await site.start()
    obs.port = runner.addresses[0][1]
    try:
        yield obs
    finally:
        await runner.cleanup()


async def _session(request: web.Request, obs: FakeObs, password: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    challenge, salt = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    await ws.send_json(
        {
            "op": 0,
            "d": {
                "obsWebSocketVersion": "5.5.0",
                "rpcVersion": 1,
                "authentication": {"challenge": challenge, "salt": salt},
            },
        }
    )
    identify = json.loads((await ws.receive()).data)
    if identify["op"] != 1 or identify["d"].get("authentication") != _answer(
        password, salt, challenge
    ):
        await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
        return ws
    await ws.send_json({"op": 2, "d": {"negotiatedRpcVersion": 1}})
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        payload = json.loads(message.data)
        if payload["op"] == 6:
            await ws.send_json({"op": 7, "d": _respond(obs, payload["d"])})
    return ws


def _respond(obs: FakeObs, request: dict[str, Any]) -> dict[str, Any]:
    name, data = request["requestType"], request.get("requestData") or {}
    obs.requests.append((name, data))
    response: dict[str, Any] = {"requestType": name, "requestId": request["requestId"]}
    try:
        result = obs.handle(name, data)
    except RequestFailed as error:
        response["requestStatus"] = {"result": False, "code": error.code, "comment": str(error)}
        return response
    response["requestStatus"] = {"result": True, "code": SUCCESS}
    if result is not None:
        response["responseData"] = result
    return response


def _answer(password: str, salt: str, challenge: str) -> str:
    # protocol.md, "Creating an authentication string".
    secret = base64.b64encode(hashlib.sha256((password + salt).encode()).digest())
    return base64.b64encode(hashlib.sha256(secret + challenge.encode()).digest()).decode()
