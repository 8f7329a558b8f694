"""The headers every HTTP response of the hub carries: pages, the API, errors and 404s alike.

Example::

    app = web.Application()
    app.on_response_prepare.append(add_security_headers)   # the hub does this for its app

The overlay pages render chat text as text; the Content-Security-Policy is the
defence behind that (no inline script, no foreign origin). A JSON reply or an
error page opened in a browser is a page too, so the hub adds the same headers
to every response it prepares, whatever route (or none) produced it. A handler
that sets one of these headers itself keeps its own value.
"""

from __future__ import annotations

from aiohttp import web

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook: give `response` every security header it lacks."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
