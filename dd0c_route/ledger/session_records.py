# Tests: tests/test_sessions.py
"""
A dashboard session as the ledger keeps it, and the SQL both stores run.

Sessions live in the ledger so that every worker and every instance on the
same database knows a login made on any of them.  The table holds a
SHA-256 of the session id, never the id: someone who can read the database
(a backup, a replica) cannot present a row as a cookie.  The CSRF token is
derived from the raw id (:mod:`dd0c_route.admin.sessions`), so it is not
stored either.

A session is live while it has not expired and the admin key that opened
it is still an active admin key: the lookup joins ``keys``, so revoking the
key ends its sessions wherever it is revoked (the admin API, the CLI,
another instance) without a second write.  Logging out deletes the row;
each login deletes rows that have expired.
"""

from __future__ import annotations

import attrs

__all__ = ["SessionRecord", "session_sql"]


@attrs.frozen(kw_only=True)
class SessionRecord:
    """One stored session: ``id_hash`` is the SHA-256 (hex) of the cookie's value."""

    id_hash: str
    key_id: str
    created_at: float
    expires_at: float


def session_sql(p: str) -> dict[str, str]:
    """The statements with ``p`` as the placeholder (``?`` for SQLite, ``%s`` for psycopg)."""
    return {
        "purge": f"DELETE FROM sessions WHERE expires_at <= {p}",
        "add": f"INSERT INTO sessions (id_hash, key_id, created_at, expires_at) VALUES ({p}, {p}, {p}, {p})",
        # ``k.admin`` is an INTEGER 0/1 in SQLite and a boolean in PostgreSQL:
        # truthy in both.
        "find": (
            "SELECT s.id_hash, s.key_id, s.created_at, s.expires_at FROM sessions s "
            f"JOIN keys k ON k.key_id = s.key_id WHERE s.id_hash = {p} AND s.expires_at > {p} "
            "AND k.revoked_at IS NULL AND k.admin"
        ),
        "end": f"DELETE FROM sessions WHERE id_hash = {p}",
    }
