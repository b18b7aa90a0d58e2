# Tests: tests/test_dashboard_browser.py, tests/test_admin_api.py
"""
Dashboard sessions: an admin key presented once at the login form buys a
session cookie, in memory, that expires and can be revoked.

The cookie is ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no
other site's page sends it).  It authorizes reads only: every mutating call
must also carry the session's CSRF token in ``X-CSRF-Token``, which the
page got from ``/admin/session`` (a same-origin read another site cannot
make), so the cookie alone never changes anything.  Sessions live in this
process: a restart (or another worker) asks for the key again.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Optional

import attrs
from twisted.internet.interfaces import IReactorTime

__all__ = ["COOKIE", "Session", "SessionTable"]

COOKIE = b"dd0c_admin_session"


@attrs.frozen
class Session:
    session_id: str
    csrf_token: str
    key_id: str
    expires: float

    def csrf_ok(self, presented: Optional[str]) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)


class SessionTable:
    """Sessions by id; expired ones are dropped when met (and on each new login)."""

    def __init__(self, clock: IReactorTime, ttl: float = 8 * 3600, max_sessions: int = 1000) -> None:
        self._clock = clock
        self.ttl = ttl
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self, key_id: str) -> Session:
        now = self._clock.seconds()
        for sid, old in list(self._sessions.items()):
            if old.expires <= now:
                del self._sessions[sid]
        while len(self._sessions) >= self._max:
            del self._sessions[next(iter(self._sessions))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), key_id, now + self.ttl)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: Optional[str]) -> Optional[Session]:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock.seconds():
            del self._sessions[session_id]
            return None
        return session

    def revoke(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def revoke_key(self, key_id: str) -> None:
        """End every session opened with this admin key (it was revoked)."""
        for sid, session in list(self._sessions.items()):
            if session.key_id == key_id:
                del self._sessions[sid]
