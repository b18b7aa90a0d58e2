# Tests: tests/test_sessions.py, tests/test_sessions_live.py, tests/test_dashboard_browser.py
"""
Dashboard sessions: an admin key presented once at the login form buys a
session cookie that expires and can be revoked, known to every worker and
instance on the same ledger.

The cookie is ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no
other site's page sends it).  It authorizes reads only: every mutating call
must also carry the session's CSRF token in ``X-CSRF-Token``, which the
page got from ``/admin/session`` (a same-origin read another site cannot
make), so the cookie alone never changes anything.  The token is an HMAC of
the session id, so it needs no storage and is worthless without the cookie.

Sessions are rows in the ledger (:mod:`dd0c_route.ledger.session_records`:
only a SHA-256 of the id is stored), read and written off the reactor
through the ledger's thread.  A lookup is cached here for ``cache_ttl``
seconds (2 s), live answers and refusals alike, so a dashboard's burst of
reads costs one query.  That cache is the bound on revocation elsewhere: a
logout, or the admin key revoked (the lookup joins ``keys``), ends the
session at once in the process that handled it and within ``cache_ttl``
everywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ..ledger.session_records import SessionRecord

__all__ = ["COOKIE", "Session", "SessionTable", "csrf_token", "session_hash"]

COOKIE = b"dd0c_admin_session"

#: ``secrets.token_urlsafe(32)``: 43 URL-safe characters.  Anything else is
#: refused without a lookup.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def session_hash(session_id: str) -> str:
    """What the ledger stores for a session id (SHA-256, hex)."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: an HMAC of its id (never stored, never the stored hash)."""
    return hmac.new(session_id.encode("ascii"), b"dd0c-route csrf", hashlib.sha256).hexdigest()


@attrs.frozen
class Session:
    session_id: str = attrs.field(repr=False)
    key_id: str
    expires: float

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.session_id)

    def csrf_ok(self, presented: Optional[str]) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token)


class SessionTable:
    """
    Sessions in the ledger (``store`` provides ``ISessionStore``; ``run``
    calls it off the reactor), with a small cache in front; see the module
    docstring.
    """

    def __init__(
        self, store: Any, run: Callable[..., Deferred[Any]], clock: IReactorTime, *,
        ttl: float = 8 * 3600, cache_ttl: float = 2.0, max_cached: int = 1000,
    ) -> None:
        self._store = store
        self._run = run
        self._clock = clock
        self.ttl = ttl
        self.cache_ttl = cache_ttl
        self._max = max_cached
        #: hash -> (session or None, when it was read)
        self._cache: OrderedDict[str, tuple[Optional[Session], float]] = OrderedDict()
        self._reading: dict[str, list[Deferred[Optional[Session]]]] = {}

    def create(self, key_id: str) -> Deferred[Session]:
        """A new session for this admin key, stored before the Deferred fires."""
        now = self._clock.seconds()
        session_id = secrets.token_urlsafe(32)
        session = Session(session_id, key_id, now + self.ttl)
        record = SessionRecord(id_hash=session_hash(session_id), key_id=key_id, created_at=now, expires_at=session.expires)

        def stored(_: Any) -> Session:
            self._remember(record.id_hash, session, now)
            return session

        return self._run(self._store.add_session, record).addCallback(stored)

    def get(self, session_id: Optional[str]) -> Deferred[Optional[Session]]:
        """The live session of this cookie value, or None; fails only when the store does."""
        if not session_id or not _SESSION_ID.fullmatch(session_id):
            return succeed(None)
        id_hash = session_hash(session_id)
        now = self._clock.seconds()
        cached = self._cache.get(id_hash)
        if cached is not None and now - cached[1] < self.cache_ttl:
            session = cached[0]
            return succeed(session if session is not None and session.expires > now else None)
        waiting = self._reading.get(id_hash)
        if waiting is not None:
            d: Deferred[Optional[Session]] = Deferred()
            waiting.append(d)
            return d
        self._reading[id_hash] = []

        def found(record: Optional[SessionRecord]) -> Optional[Session]:
            session = None if record is None else Session(session_id, record.key_id, record.expires_at)
            self._remember(id_hash, session, now)
            for waiter in self._reading.pop(id_hash):
                waiter.callback(session)
            return session

        def failed(failure: Failure) -> Failure:
            for waiter in self._reading.pop(id_hash):
                waiter.errback(failure)
            return failure

        return self._run(self._store.find_session, id_hash, now).addCallbacks(found, failed)

    def _remember(self, id_hash: str, session: Optional[Session], stamp: float) -> None:
        self._cache[id_hash] = (session, stamp)
        self._cache.move_to_end(id_hash)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    def end(self, session: Session) -> Deferred[None]:
        """Log out: forgotten here at once, deleted from the ledger for everyone else."""
        id_hash = session_hash(session.session_id)
        self._remember(id_hash, None, self._clock.seconds())
        return self._run(self._store.end_session, id_hash)

    def forget_key(self, key_id: str) -> None:
        """The admin key was revoked here: its sessions end in this process now (elsewhere by the join)."""
        now = self._clock.seconds()
        for id_hash, (session, _) in list(self._cache.items()):
            if session is not None and session.key_id == key_id:
                self._cache[id_hash] = (None, now)
