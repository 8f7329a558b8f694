"""The streamer's control dock: `/control`, a page for an OBS custom browser dock or a phone.

Example::

    dock = ControlDock(hub_token, actions, state, loss=overlays.feed.loss, chat=chat.router)
    dock.add_routes(hub.app)                     # before hub.start()
    dock.processes = supervisor                  # once the supervisor exists
    log.info("control dock: %s", dock.once_url(base))   # a one-time sign-in link

Routes (everything but the sign-in needs a session cookie; changes also the
session's CSRF token in an `X-CSRF-Token` header, and a same-origin
`Origin` when the browser sends one):

- `GET /control`: the dock, or only the sign-in form without a session.
- `POST /control/login` (form field `token`: the hub's token) and
  `GET /control/login?once=SECRET` (a link the app prints, single use,
  ONCE_S): a session cookie (HttpOnly, SameSite=Strict, random, kept
  server-side in `engine/app/control_sessions.py`), then back to /control.
- `POST /control/logout`: the session ends.
- `GET /control/state`: what the dock shows, as JSON (`/api/status`' view
  plus model versions, the vote, the chat log, the loss curve); the page
  polls it every second.
- `POST /control/switch` `{"model", "new"}`, `/control/tag` `{"text"}`
  (parsed as `/api/switch` and `/api/tag` are), `/control/process`
  `{"name", "do": "start"|"stop"|"restart"}`.
- `GET /control/static/<file>`: the page's JS and CSS (and the overlays' chart).

Every refusal names what is missing or wrong (401 without a session, 403
without the CSRF header or from another origin, 400 for a bad body); none
is a 500. The overlay pages stay token-free and read-only: nothing here
changes them.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from aiohttp import web

from bot.commands import Router
from engine.app.control_sessions import SESSION_S, ControlSessions, Session, SessionRefused
from engine.app.hub import parse_action
from engine.core.actions import Actions
from engine.core.errors import CharlesError, UsageError
from engine.core.schema import parse_json_object
from engine.core.store import encode_json, status_view
from engine.core.web import SECURITY_HEADERS
from models.registry import Registry
from overlays.feed import LossHistory

log = logging.getLogger("charles.control")

COOKIE = "charles_control"
CSRF_HEADER = "X-CSRF-Token"
STATIC_DIR = Path(__file__).parents[2] / "overlays" / "static"
# The dock's own files and the overlays' loss chart, which it reuses.
STATIC_FILES = {
    "control.js": "text/javascript",
    "control.css": "text/css",
    "chart.js": "text/javascript",
}
# The overlays' policy, with the sign-in form allowed to post here and no page framing the dock.
PAGE_POLICY = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "form-action 'none'", "form-action 'self'; frame-ancestors 'none'"
)
PROCESS_DOINGS = ("start", "stop", "restart")
# The dock's chart shows the newest points of the streamed version's curve.
LOSS_POINTS_SHOWN = 500
# Model versions are read from charles.db at most this often (and after a switch).
MODELS_MAX_AGE_S = 5.0
MAX_BODY_BYTES = 4096
DOCK_USER = "streamer"

ProcessDoing = Literal["start", "stop", "restart"]


class ProcessControl(Protocol):
    """What the dock may do to the supervised processes (the app's `Supervisor`)."""

    async def start_process(self, name: str) -> Any:
        """Start a stopped process."""

    async def stop_process(self, name: str) -> Any:
        """Stop a process until started again."""

    async def restart_process(self, name: str) -> Any:
        """Stop and start a process."""


class ControlDock:
    """The dock's routes, sessions and state view."""

    def __init__(
        self,
        hub_token: str,
        actions: Actions,
        *,
        loss: LossHistory,
        chat: Router | None = None,
        sessions: ControlSessions | None = None,
    ) -> None:
        self.actions = actions
        self.state = actions.state
        self.loss = loss
        self.chat = chat
        self.sessions = sessions or ControlSessions(hub_token)
        self.processes: ProcessControl | None = None  # set once the app's supervisor exists
        self._models: list[dict[str, Any]] = []
        self._models_at = -MODELS_MAX_AGE_S

    def add_routes(self, app: web.Application) -> None:
        """Add /control and its API to the hub's app (before it starts)."""
        app.router.add_get("/control", self._page)
        app.router.add_post("/control/login", self._login)
        app.router.add_get("/control/login", self._login_once)
        app.router.add_post("/control/logout", self._logout)
        app.router.add_get("/control/state", self._state)
        app.router.add_post("/control/switch", self._switch)
        app.router.add_post("/control/tag", self._tag)
        app.router.add_post("/control/process", self._process)
        app.router.add_get("/control/static/{name}", self._static)

    def once_url(self, base: str) -> str:
        """A new one-time sign-in link under `base` ("http://127.0.0.1:8765")."""
        return f"{base}/control/login?once={self.sessions.once_link()}"

    # -- pages and sign-in ---------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        try:
            session = self.sessions.find(request.cookies.get(COOKIE))
        except SessionRefused:
            return _sign_in_page("")
        return _page_response(_dock_page(session.csrf))

    async def _login(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError) as error:
            return _sign_in_page(f"the sign-in form could not be read: {error}", status=400)
        typed = form.get("token")
        if not isinstance(typed, str):
            return _sign_in_page("no token given: paste the hub's token", status=400)
        try:
            session_id, _ = self.sessions.sign_in_with_token(typed[:1000])
        except SessionRefused as error:
            log.warning("refused a dock sign-in from %s: %s", request.remote, error)
            return _sign_in_page(str(error), status=401)
        log.info("control dock: signed in from %s (token)", request.remote)
        return _signed_in(session_id)

    async def _login_once(self, request: web.Request) -> web.Response:
        secret = request.query.get("once", "")
        if not secret:
            return _sign_in_page("")
        try:
            session_id, _ = self.sessions.sign_in_with_once(secret[:200])
        except SessionRefused as error:
            log.warning("refused a dock sign-in from %s: %s", request.remote, error)
            return _sign_in_page(str(error), status=401)
        log.info("control dock: signed in from %s (one-time link)", request.remote)
        return _signed_in(session_id)

    async def _logout(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        self.sessions.sign_out(request.cookies.get(COOKIE))
        response = web.json_response({"signed_out": True})
        response.del_cookie(COOKIE, path="/control")
        return response

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = STATIC_FILES.get(name)
        if kind is None:  # an allow-list: no path ever reaches the file system
            accepted = ", ".join(STATIC_FILES)
            return web.Response(status=404, text=f"no dock file {name[:40]!r}; files: {accepted}\n")
        return web.Response(
            body=(STATIC_DIR / name).read_bytes(), content_type=kind, charset="utf-8"
        )

    # -- the dock's API ------------------------------------------------------------------

    async def _state(self, request: web.Request) -> web.Response:
        try:
            self.sessions.find(request.cookies.get(COOKIE))
        except SessionRefused as error:
            return _error(401, str(error))
        view = {
            "status": status_view(self.state.snapshot()),
            "models": await self._model_versions(),
            "vote": self._vote(),
            "chat": list(self.chat.log) if self.chat is not None else [],
            "loss": {
                "version": self.loss.version,
                "generation": self.loss.generation,
                "points": self.loss.as_json()["points"][-LOSS_POINTS_SHOWN:],
            },
            "processes_controllable": self.processes is not None,
        }
        return web.Response(text=encode_json(view), content_type="application/json")

    async def _switch(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            action = parse_action("switch", await _body(request))
            reply = await self.actions.switch(action.model, new=action.new, user=DOCK_USER)
        except (ValueError, UsageError) as error:
            return _error(400, str(error))
        except CharlesError as error:
            log.error("dock switch failed: %s", error)
            return _error(503, str(error))
        self._models_at = -MODELS_MAX_AGE_S  # "new" made a version: show it at once
        return web.json_response(reply)

    async def _tag(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            action = parse_action("tag", await _body(request))
            reply = await self.actions.tag(action.text, user=DOCK_USER)
        except (ValueError, UsageError) as error:
            return _error(400, str(error))
        except CharlesError as error:
            log.error("dock tag failed: %s", error)
            return _error(503, str(error))
        return web.json_response(reply)

    async def _process(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            name, doing = _process_request(await _body(request))
        except ValueError as error:
            return _error(400, str(error))
        if self.processes is None:
            return _error(503, "no processes are supervised now (the app is starting or stopping)")
        try:
            if doing == "start":
                await self.processes.start_process(name)
            elif doing == "stop":
                await self.processes.stop_process(name)
            else:
                await self.processes.restart_process(name)
        except ValueError as error:
            return _error(400, str(error))
        log.info("control dock: %s %s", doing, name)
        process = self.state.processes.get(name)
        return web.json_response({"name": name, "state": process.state if process else None})

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a change without a session, a CSRF token or from another origin."""
        try:
            session: Session = self.sessions.find(request.cookies.get(COOKIE))
        except SessionRefused as error:
            log.warning("refused %s %s: %s", request.method, request.path, error)
            return _error(401, str(error))
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            problem = (
                f"Origin {origin[:80]!r} is not this dock's ({request.scheme}://{request.host})"
            )
            log.warning("refused %s %s: %s", request.method, request.path, problem)
            return _error(403, problem)
        problem = self.sessions.csrf_problem(session, request.headers.get(CSRF_HEADER))
        if problem is not None:
            log.warning("refused %s %s: %s", request.method, request.path, problem)
            return _error(403, problem)
        return None

    def _vote(self) -> dict[str, Any]:
        if self.chat is None:
            return {"open": False, "closes_in_s": None, "counts": [], "threshold": None}
        return {
            "open": self.chat.votes.is_open,
            "closes_in_s": self.chat.vote_closes_in(),
            "counts": [list(pair) for pair in self.chat.votes.tally()],
            "threshold": self.chat.votes.threshold,
        }

    async def _model_versions(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if now - self._models_at > MODELS_MAX_AGE_S:
            self._models = await asyncio.to_thread(self._read_models)
            self._models_at = now
        return self._models

    def _read_models(self) -> list[dict[str, Any]]:
        from models.spec import available_lines

        with Registry(self.actions.data_dir) as registry:
            versions = registry.versions()
        lines: dict[str, list[dict[str, Any]]] = {line: [] for line in available_lines()}
        for version in versions:
            lines.setdefault(version.line, []).append(
                {"name": version.name, "batches": version.batches_trained}
            )
        return [{"line": line, "versions": rows} for line, rows in lines.items()]


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ValueError(
            f"the body is {request.content_length:,} bytes; at most {MAX_BODY_BYTES:,}"
        )
    body = await request.read()
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"the body is {len(body):,} bytes; at most {MAX_BODY_BYTES:,}")
    return body


def _process_request(body: bytes) -> tuple[str, ProcessDoing]:
    """(name, what to do) of a /control/process body; ValueError naming the field."""
    data = parse_json_object(body, where="the body", error=ValueError)
    unknown = sorted(set(data) - {"name", "do"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; accepted: name, do")
    name, doing = data.get("name"), data.get("do")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ValueError(
            f"field 'name' = {json.dumps(name)[:60]} is not accepted; accepted: a process name "
            "as /api/status lists them"
        )
    if doing not in PROCESS_DOINGS:
        raise ValueError(
            f"field 'do' = {json.dumps(doing)[:60]} is not accepted; accepted: "
            + ", ".join(PROCESS_DOINGS)
        )
    return name, doing


def _signed_in(session_id: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/control"})
    response.set_cookie(
        COOKIE,
        session_id,
        path="/control",
        max_age=int(SESSION_S),
        httponly=True,
        samesite="Strict",
    )
    return response


def _sign_in_page(problem: str, *, status: int = 200) -> web.Response:
    shown = f'<p class="refusal" role="alert">{html.escape(problem)}</p>' if problem else ""
    page = (STATIC_DIR / "control_login.html").read_text(encoding="utf-8")
    return _page_response(page.replace("{{REFUSAL}}", shown), status=status)


def _dock_page(csrf: str) -> str:
    page = (STATIC_DIR / "control.html").read_text(encoding="utf-8")
    return page.replace("{{CSRF}}", html.escape(csrf))


def _page_response(body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"},
    )


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)
