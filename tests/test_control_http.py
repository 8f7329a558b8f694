"""The control dock over HTTP: who may see it, who may change things, and clear refusals."""

from __future__ import annotations

import pytest

from engine.app.control import COOKIE, CSRF_HEADER
from engine.app.control_sessions import ONCE_S, SESSION_S
from tests.control_helpers import client, control_hub, sign_in, until
from tests.hub_helpers import TOKEN


async def test_without_a_session_control_shows_only_the_sign_in_form(tmp_path):
    async with control_hub(tmp_path) as dock, client() as session:
        async with session.get(f"{dock.base}/control") as response:
            page = await response.text()
            policy = response.headers["Content-Security-Policy"]
        assert response.status == 200
        assert 'name="token"' in page
        assert "csrf-token" not in page and "Processes" not in page
        assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
        async with session.get(f"{dock.base}/control/state") as response:
            assert response.status == 401
            assert "not signed in (no session cookie)" in (await response.json())["error"]


async def test_signing_in_with_the_token_sets_a_strict_http_only_session_cookie(tmp_path):
    async with control_hub(tmp_path) as dock, client() as session:
        async with session.post(
            f"{dock.base}/control/login", data={"token": TOKEN}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/control"
            cookie = response.headers["Set-Cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/control" in cookie
        assert TOKEN not in cookie
        csrf = await sign_in(session, dock)
        assert len(csrf) >= 32
        async with session.get(f"{dock.base}/control/state") as response:
            view = await response.json()
        assert view["status"]["version"] == "model_0000_demo_v1"
        assert view["models"][0]["versions"] == [{"name": "model_0000_demo_v1", "batches": 0}]


@pytest.mark.parametrize(
    ("form", "status", "words"),
    [
        ({"token": "not-the-token"}, 401, "wrong token"),
        ({"token": "   "}, 401, "no token given"),
        ({"other": "x"}, 400, "no token given"),
    ],
)
async def test_a_bad_sign_in_is_refused_by_name_and_sets_no_cookie(tmp_path, form, status, words):
    async with (
        control_hub(tmp_path) as dock,
        client() as session,
        session.post(f"{dock.base}/control/login", data=form) as response,
    ):
        assert response.status == status
        assert words in await response.text()
        assert "Set-Cookie" not in response.headers


async def test_a_change_needs_the_session_and_its_csrf_token_and_says_what_is_missing(tmp_path):
    async with control_hub(tmp_path) as dock, client() as session:
        csrf = await sign_in(session, dock)
        url = f"{dock.base}/control/tag"
        refusals = [
            ({}, 403, "no X-CSRF-Token header"),
            ({CSRF_HEADER: "x" * 43}, 403, "wrong X-CSRF-Token header"),
            ({CSRF_HEADER: csrf, "Origin": "http://evil.example"}, 403, "Origin 'http://evil"),
        ]
        for headers, status, words in refusals:
            async with session.post(url, json={"text": "no"}, headers=headers) as response:
                assert response.status == status
                assert words in (await response.json())["error"]
        async with (
            client() as stranger,
            stranger.post(url, json={"text": "no"}, headers={CSRF_HEADER: csrf}) as response,
        ):
            assert response.status == 401
            assert "no session cookie" in (await response.json())["error"]
        assert dock.actions.moments.list() == []
        async with session.post(
            url, json={"text": "into the pond"}, headers={CSRF_HEADER: csrf}
        ) as response:
            assert response.status == 200
            assert (await response.json())["note"] == "into the pond"
        assert [m.user for m in dock.actions.moments.list()] == ["streamer"]


async def test_a_one_time_link_works_once_and_not_after_it_expired(tmp_path):
    async with control_hub(tmp_path) as dock:
        link = dock.dock.once_url(dock.base)
        async with client() as session:
            async with session.get(link, allow_redirects=False) as response:
                assert response.status == 303
                assert COOKIE in response.headers["Set-Cookie"]
            async with session.get(f"{dock.base}/control/state") as response:
                assert response.status == 200
        async with client() as session, session.get(link) as response:
            assert response.status == 401
            assert "unknown, already used or older than 10 minutes" in await response.text()
        late = dock.dock.once_url(dock.base)
        dock.clock.now += ONCE_S + 1
        async with client() as session, session.get(late) as response:
            assert response.status == 401
            assert "Set-Cookie" not in response.headers


async def test_a_session_expires_and_signing_out_ends_it(tmp_path):
    async with control_hub(tmp_path) as dock:
        async with client() as session:
            await sign_in(session, dock)
            dock.clock.now += SESSION_S + 1
            async with session.get(f"{dock.base}/control/state") as response:
                assert response.status == 401
                assert "expired" in (await response.json())["error"]
        async with client() as session:
            csrf = await sign_in(session, dock)
            cookie = next(c.value for c in session.cookie_jar if c.key == COOKIE)
            async with session.post(
                f"{dock.base}/control/logout", headers={CSRF_HEADER: csrf}
            ) as response:
                assert response.status == 200
        async with (
            client() as session,
            session.get(f"{dock.base}/control/state", cookies={COOKIE: cookie}) as response,
        ):
            assert response.status == 401


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("switch", b"\xff\xfe not json", "the body is not JSON"),
        ("switch", b"[1, 2]", "the body is a JSON list"),
        ("switch", b'{"model": "x", "extra": 1}', "unknown field 'extra'"),
        ("switch", b'{"model": "no such/line"}', "field 'model'"),
        ("switch", b'{"model": "no_such_line"}', "no_such_line"),
        ("switch", b'{"model": "model_0000_demo", "new": "yes"}', "field 'new'"),
        ("tag", b'{"text": "\\u0000\\u202e"}', "field 'text'"),
        ("tag", b'{"text": "' + b"x" * 5000 + b'"}', "at most 4,096"),
        ("process", b'{"name": "driver", "do": "explode"}', "field 'do'"),
        ("process", b'{"do": "stop"}', "field 'name'"),
        ("process", b'{"name": "driver", "do": "stop"}', "no processes are supervised"),
    ],
)
async def test_bad_bodies_are_refused_by_name_never_a_500(tmp_path, path, body, words):
    async with control_hub(tmp_path) as dock, client() as session:
        csrf = await sign_in(session, dock)
        async with session.post(
            f"{dock.base}/control/{path}",
            data=body,
            headers={CSRF_HEADER: csrf, "Content-Type": "application/json"},
        ) as response:
            assert response.status in (400, 503), await response.text()
            assert words in (await response.json())["error"]
        assert dock.state.version == "model_0000_demo_v1"


async def test_process_controls_change_what_api_status_says(tmp_path):
    async with control_hub(tmp_path, processes=True) as dock, client() as session:
        csrf = await sign_in(session, dock)

        async def do(doing: str, name: str = "driver") -> dict:
            async with session.post(
                f"{dock.base}/control/process",
                json={"name": name, "do": doing},
                headers={CSRF_HEADER: csrf},
            ) as response:
                return {"status": response.status, **await response.json()}

        async def status_of(name: str) -> dict:
            async with session.get(f"{dock.base}/api/status") as response:
                return (await response.json())["processes"][name]

        assert (await do("stop"))["state"] == "stopped"
        assert (await status_of("driver"))["state"] == "stopped"
        assert (await status_of("collector_0"))["state"] == "running"
        assert (await do("start"))["status"] == 200
        await until(lambda: dock.state.processes["driver"].state == "running")
        pid = (await status_of("driver"))["pid"]
        assert (await do("restart"))["status"] == 200
        await until(lambda: dock.state.processes["driver"].pid not in (None, pid))
        assert (await status_of("driver"))["state"] == "running"
        unknown = await do("stop", name="trainer")
        assert unknown["status"] == 400
        assert "no process named 'trainer'; supervised: collector_0, driver" in unknown["error"]
