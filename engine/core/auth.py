"""The hub token check every endpoint that changes something shares.

Example::

    problem = token_problem(request.headers.get("Authorization"), token.encode())
    if problem is not None:
        return web.Response(status=401, text=problem)

Node sockets, `/api/switch`, `/api/tag` and `/api/chat` all check the same
way, in constant time, and answer with the same words.
"""

from __future__ import annotations

import hmac


def token_problem(header: str | None, token: bytes) -> str | None:
    """What is wrong with an Authorization header against the hub token; None if it is right."""
    if header is None:
        return "no Authorization header: send 'Authorization: Bearer <hub token>'"
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return f"Authorization scheme {scheme[:20]!r} is not accepted: use 'Bearer <hub token>'"
    if not hmac.compare_digest(credentials.strip().encode(), token):
        return "wrong token (the hub's is in <data_dir>/secrets/hub_token)"
    return None
