"""Who may use the control dock: sessions, their CSRF tokens, and one-time sign-in links.

Example::

    sessions = ControlSessions(hub_token)
    once = sessions.once_link()                  # printed by the app: /control/login?once=...
    session = sessions.sign_in_with_once(once)   # the first use works, any later one is refused
    session = sessions.sign_in_with_token(typed) # or the hub's token, typed into the sign-in form
    sessions.find(cookie_value)                  # the Session, or SessionRefused saying why

A session id is random (`secrets`), lives only in this process (a restart of
the app signs everyone out) and is kept by its SHA-256, so the store holds no
usable cookie. Each session has its own CSRF token, which the dock page sends
as a header on every request that changes something; a session expires
SESSION_S after its last use. A one-time link works once, within ONCE_S of
being made. The clock is an argument so tests need not wait.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

# A stream's length and then some: a dock left open all evening stays signed in.
SESSION_S = 12 * 3600.0
# A printed one-time link is for the next few minutes, not for a log file found later.
ONCE_S = 600.0
# Sessions and links kept at most; the least recently used go first.
MAX_SESSIONS = 64
MAX_ONCE_LINKS = 16


class SessionRefused(ValueError):
    """Why a request has no usable session or sign-in, in words for the person at the dock."""


@dataclass
class Session:
    """One signed-in browser: its CSRF token and when it was last used (the clock's seconds)."""

    csrf: str
    used_at: float


class ControlSessions:
    """The dock's server-side session store and one-time links, keyed by hashes."""

    def __init__(self, hub_token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._token = hub_token.encode()
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}
        self._once: dict[bytes, float] = {}  # hash -> when it was made

    def once_link(self) -> str:
        """A new one-time sign-in secret (for `/control/login?once=...`), good for ONCE_S."""
        self._forget_old()
        secret = secrets.token_urlsafe(24)
        self._once[_hash(secret)] = self._clock()
        while len(self._once) > MAX_ONCE_LINKS:
            del self._once[next(iter(self._once))]
        return secret

    def sign_in_with_token(self, typed: str) -> tuple[str, Session]:
        """A new session for the hub's token; SessionRefused if it is not the token."""
        if not typed.strip():
            raise SessionRefused(
                "no token given: paste the hub's token (<data_dir>/secrets/hub_token)"
            )
        if not hmac.compare_digest(typed.strip().encode(), self._token):
            raise SessionRefused("wrong token (the hub's is in <data_dir>/secrets/hub_token)")
        return self._new_session()

    def sign_in_with_once(self, secret: str) -> tuple[str, Session]:
        """A new session for a one-time link, which is used up; SessionRefused saying why not."""
        self._forget_old()
        made = self._once.pop(_hash(secret), None)
        if made is None:
            raise SessionRefused(
                "this one-time link is unknown, already used or older than "
                f"{ONCE_S / 60:g} minutes: sign in with the hub's token, or use the newest link "
                "the app printed"
            )
        return self._new_session()

    def find(self, session_id: str | None) -> Session:
        """The session of a cookie's value, now marked used; SessionRefused saying why not."""
        if not session_id:
            raise SessionRefused("not signed in (no session cookie): sign in at /control")
        key = _hash(session_id)
        session = self._sessions.get(key)
        now = self._clock()
        if session is None or now - session.used_at > SESSION_S:
            self._sessions.pop(key, None)
            raise SessionRefused("the session expired or is unknown: sign in again at /control")
        session.used_at = now
        self._sessions[key] = self._sessions.pop(key)  # most recently used last
        return session

    def sign_out(self, session_id: str | None) -> None:
        """Forget a session (its cookie stops working at once)."""
        if session_id:
            self._sessions.pop(_hash(session_id), None)

    def csrf_problem(self, session: Session, sent: str | None) -> str | None:
        """What is wrong with the CSRF header sent along with `session`; None if it is right."""
        if not sent:
            return "no X-CSRF-Token header: changes come from the dock page, which sends it"
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return "wrong X-CSRF-Token header for this session: reload the dock page"
        return None

    def _new_session(self) -> tuple[str, Session]:
        self._forget_old()
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), used_at=self._clock())
        self._sessions[_hash(session_id)] = session
        while len(self._sessions) > MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        return session_id, session

    def _forget_old(self) -> None:
        now = self._clock()
        for key in [k for k, made in self._once.items() if now - made > ONCE_S]:
            del self._once[key]
        for key in [k for k, s in self._sessions.items() if now - s.used_at > SESSION_S]:
            del self._sessions[key]


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "replace")).digest()
