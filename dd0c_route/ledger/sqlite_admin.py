# Tests: tests/test_admin_api.py, tests/test_alerts.py, tests/test_usage_rollup.py, tests/test_rollup_fold.py, tests/test_sessions.py
"""
The admin API's reads and writes on the SQLite ledger (a mixin of
:class:`~dd0c_route.ledger.sqlite.SQLiteLedger`, kept apart so the store's
core stays the record and key path).  Blocking: call off the reactor.
Definitions of every figure: :mod:`dd0c_route.ledger.usage_query`.
"""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from typing import Any, Callable, Optional, Sequence

from .alert_records import AlertRecord
from .interfaces import KeyInfo
from .records import UsageRecord
from .session_records import SessionRecord, session_sql
from .sqlite_rollup import fold_pending, summarize
from .usage_query import RecordFilter, Summary, filter_sql

__all__ = ["SQLiteAdminQueries"]

_ALERT_COLUMNS = "scope, period, period_start, threshold, spent_usd, limit_usd, created_at, status, attempts"
_SESSIONS = session_sql("?")


def _money(value: Optional[Decimal]) -> Optional[str]:
    return None if value is None else str(value)


class SQLiteAdminQueries:
    """Summary (and the rollup's fold), request log, key attributes, alert claims and dashboard sessions over SQL."""

    _lock: threading.Lock
    _conn: sqlite3.Connection
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _select_usage: str
    _row_record: Callable[[Sequence[Any]], UsageRecord]

    def fold_rollup(self) -> int:
        """Fold every record not yet in the rollup (see :func:`.sqlite_rollup.fold_pending`); how many."""
        folded: int = self._write(fold_pending)
        return folded

    def usage_summary(self, start: float, end: float, group_by: tuple[str, ...]) -> Summary:
        """
        Totals per group of the records in [start, end), from the rollup (see
        :mod:`.rollup_plan`): first every committed record is folded in (one
        short write transaction), then the summary is read in one read
        transaction -- a snapshot, so other writers are not held up by it.
        """
        self.fold_rollup()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                return summarize(conn, start, end, group_by)
            finally:
                conn.execute("COMMIT")

    def query_records(self, where: RecordFilter) -> list[UsageRecord]:
        """The records ``where`` selects, newest first."""
        clause, params = filter_sql(where, "?")
        sql = self._select_usage + clause + " ORDER BY created_at DESC, seq DESC"
        if where.limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [where.limit, where.offset]
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [self._row_record(row) for row in rows]

    def spend_between(
        self, start: float, end: float, key_ids: Optional[Sequence[str]] = None, team: Optional[str] = None
    ) -> Decimal:
        """What the records in [start, end) cost (only those of ``key_ids`` / ``team`` if given)."""
        sql = "SELECT cost_usd FROM usage WHERE created_at >= ? AND created_at < ? AND cost_usd IS NOT NULL"
        params: list[Any] = [start, end]
        if key_ids is not None:
            sql += f" AND key_id IN ({', '.join('?' for _ in key_ids) or 'NULL'})"
            params += list(key_ids)
        if team is not None:
            sql += " AND team = ?"
            params.append(team)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return sum((Decimal(row[0]) for row in rows), Decimal(0))

    def update_key(self, info: KeyInfo) -> None:
        """Store a key's team, budgets and limits (the admin API's "set team / budget / limits")."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE keys SET team = ?, daily_usd = ?, monthly_usd = ?, requests_per_minute = ?, "
                "tokens_per_minute = ? WHERE key_id = ?",
                (
                    info.team, _money(info.daily_usd), _money(info.monthly_usd), info.requests_per_minute,
                    info.tokens_per_minute, info.key_id,
                ),
            )
        )

    def claim_alert(self, alert: AlertRecord) -> bool:
        """Insert the alert's row unless one exists: True when this call owns the crossing."""

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO alerts ({_ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.scope, alert.period, alert.period_start, alert.threshold, str(alert.spent_usd),
                    _money(alert.limit_usd), alert.created_at, alert.status, alert.attempts,
                ),
            )
            return cursor.rowcount == 1

        claimed: bool = self._write(insert)
        return claimed

    def mark_alert(self, alert: AlertRecord) -> None:
        """Record how the alert's delivery went (status, attempts)."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE alerts SET status = ?, attempts = ? "
                "WHERE scope = ? AND period = ? AND period_start = ? AND threshold = ?",
                (alert.status, alert.attempts, alert.scope, alert.period, alert.period_start, alert.threshold),
            )
        )

    def list_alerts(self, limit: int = 100) -> list[AlertRecord]:
        """The newest alerts first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            AlertRecord(
                scope=r[0], period=r[1], period_start=r[2], threshold=r[3], spent_usd=Decimal(r[4]),
                limit_usd=None if r[5] is None else Decimal(r[5]), created_at=r[6], status=r[7], attempts=r[8],
            )
            for r in rows
        ]

    # -- ISessionStore -----------------------------------------------------

    def add_session(self, record: SessionRecord) -> None:
        """Store a new session, and drop the ones that expired before it began."""

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(_SESSIONS["purge"], (record.created_at,))
            conn.execute(_SESSIONS["add"], (record.id_hash, record.key_id, record.created_at, record.expires_at))

        self._write(insert)

    def find_session(self, id_hash: str, now: float) -> Optional[SessionRecord]:
        """The live session with this hash (unexpired, its key an active admin key), or None."""
        with self._lock:
            row = self._conn.execute(_SESSIONS["find"], (id_hash, now)).fetchone()
        return None if row is None else SessionRecord(id_hash=row[0], key_id=row[1], created_at=row[2], expires_at=row[3])

    def end_session(self, id_hash: str) -> None:
        """Forget the session (a logout)."""
        self._write(lambda conn: conn.execute(_SESSIONS["end"], (id_hash,)))
