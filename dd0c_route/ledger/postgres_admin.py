# Tests: tests/test_admin_api.py, tests/test_alerts.py, tests/test_usage_rollup.py, tests/test_sessions.py
"""
The admin API's reads and writes on the PostgreSQL ledger (a mixin of
:class:`~dd0c_route.ledger.postgres.PostgresLedger`).  The summary reads
the rollup (``numeric`` sums) for whole hours and days and aggregates the
records of the partial hours at the edges in SQL (:mod:`.rollup_plan`).
Blocking.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Callable, Optional, Sequence

import psycopg

from .alert_records import AlertRecord
from .interfaces import KeyInfo
from .records import UsageRecord
from .rollup_plan import SummaryBuilder, plan
from .rollup_sql import pg_raw_select, segment_select
from .session_records import SessionRecord, session_sql
from .usage_query import RecordFilter, Summary, filter_sql

__all__ = ["PostgresAdminQueries"]

_ALERT_COLUMNS = "scope, period, period_start, threshold, spent_usd, limit_usd, created_at, status, attempts"
_SESSIONS = session_sql("%s")


class PostgresAdminQueries:
    """Summary, request log, key attributes, alert claims and dashboard sessions in SQL."""

    _transaction: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _select_usage: str
    _row_record: Callable[[Sequence[Any]], UsageRecord]

    def usage_summary(self, start: float, end: float, group_by: tuple[str, ...]) -> Summary:
        """Totals per group of the records in [start, end), from the rollup (see :mod:`.rollup_plan`)."""
        built = SummaryBuilder(group_by)
        with self._transaction() as conn:
            for segment in plan(start, end, group_by):
                if segment.grain is None:
                    for row in conn.execute(pg_raw_select(), (segment.lo, segment.hi)):  # type: ignore[call-overload]
                        built.add_hourly(row[:6], list(row[6:]))
                else:
                    sql = segment_select("postgres", segment.grain, group_by)
                    for row in conn.execute(sql, (segment.grain, segment.lo, segment.hi)):  # type: ignore[call-overload]
                        built.add_segment_row(row)
        return built.summary()

    def query_records(self, where: RecordFilter) -> list[UsageRecord]:
        """The records ``where`` selects, newest first."""
        clause, params = filter_sql(where, "%s")
        sql = self._select_usage + clause + " ORDER BY created_at DESC, seq DESC"
        if where.limit is not None:
            sql += " LIMIT %s OFFSET %s"
            params += [where.limit, where.offset]
        with self._transaction() as conn:
            rows = conn.execute(sql, params).fetchall()  # type: ignore[call-overload]
        return [self._row_record(row) for row in rows]

    def spend_between(
        self, start: float, end: float, key_ids: Optional[Sequence[str]] = None, team: Optional[str] = None
    ) -> Decimal:
        """What the records in [start, end) cost (only those of ``key_ids`` / ``team`` if given)."""
        sql = "SELECT coalesce(sum(cost_usd), 0) FROM usage WHERE created_at >= %s AND created_at < %s"
        params: list[Any] = [start, end]
        if key_ids is not None:
            sql += " AND key_id = ANY(%s)"
            params.append(list(key_ids))
        if team is not None:
            sql += " AND team = %s"
            params.append(team)
        with self._transaction() as conn:
            row = conn.execute(sql, params).fetchone()  # type: ignore[call-overload]
        assert row is not None
        return Decimal(row[0])

    def update_key(self, info: KeyInfo) -> None:
        """Store a key's team, budgets and limits."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE keys SET team = %s, daily_usd = %s, monthly_usd = %s, requests_per_minute = %s, "
                "tokens_per_minute = %s WHERE key_id = %s",
                (
                    info.team, info.daily_usd, info.monthly_usd, info.requests_per_minute, info.tokens_per_minute,
                    info.key_id,
                ),
            )

    def claim_alert(self, alert: AlertRecord) -> bool:
        """Insert the alert's row unless one exists: True when this call owns the crossing."""
        with self._transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (scope, period, period_start, threshold) DO NOTHING",
                (
                    alert.scope, alert.period, alert.period_start, alert.threshold, alert.spent_usd,
                    alert.limit_usd, alert.created_at, alert.status, alert.attempts,
                ),
            )
            return cursor.rowcount == 1

    def mark_alert(self, alert: AlertRecord) -> None:
        """Record how the alert's delivery went."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE alerts SET status = %s, attempts = %s "
                "WHERE scope = %s AND period = %s AND period_start = %s AND threshold = %s",
                (alert.status, alert.attempts, alert.scope, alert.period, alert.period_start, alert.threshold),
            )

    def list_alerts(self, limit: int = 100) -> list[AlertRecord]:
        """The newest alerts first."""
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY created_at DESC LIMIT %s", (limit,)  # type: ignore[call-overload]
            ).fetchall()
        return [
            AlertRecord(
                scope=r[0], period=r[1], period_start=r[2], threshold=r[3], spent_usd=r[4], limit_usd=r[5],
                created_at=r[6], status=r[7], attempts=r[8],
            )
            for r in rows
        ]

    # -- ISessionStore -----------------------------------------------------

    def add_session(self, record: SessionRecord) -> None:
        """Store a new session, and drop the ones that expired before it began."""
        with self._transaction() as conn:
            conn.execute(_SESSIONS["purge"], (record.created_at,))  # type: ignore[call-overload]
            conn.execute(  # type: ignore[call-overload]
                _SESSIONS["add"], (record.id_hash, record.key_id, record.created_at, record.expires_at)
            )

    def find_session(self, id_hash: str, now: float) -> Optional[SessionRecord]:
        """The live session with this hash (unexpired, its key an active admin key), or None."""
        with self._transaction() as conn:
            row = conn.execute(_SESSIONS["find"], (id_hash, now)).fetchone()  # type: ignore[call-overload]
        return None if row is None else SessionRecord(id_hash=row[0], key_id=row[1], created_at=row[2], expires_at=row[3])

    def end_session(self, id_hash: str) -> None:
        """Forget the session (a logout)."""
        with self._transaction() as conn:
            conn.execute(_SESSIONS["end"], (id_hash,))  # type: ignore[call-overload]
