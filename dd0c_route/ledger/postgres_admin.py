# Tests: tests/test_admin_api.py, tests/test_alerts.py, tests/test_sessions.py
"""
The admin API's reads and writes on the PostgreSQL ledger (a mixin of
:class:`~dd0c_route.ledger.postgres.PostgresLedger`).  The summary is one
SQL aggregate over the range (``numeric`` sums, ``percentile_disc``); see
:mod:`dd0c_route.ledger.usage_query` for why not the rollup.  Blocking.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Callable, Optional, Sequence

import psycopg

from .alert_records import AlertRecord
from .interfaces import KeyInfo
from .records import UsageRecord
from .session_records import SessionRecord, session_sql
from .usage_query import RecordFilter, Summary, SummaryRow, filter_sql, order_rows

__all__ = ["PostgresAdminQueries"]

_ALERT_COLUMNS = "scope, period, period_start, threshold, spent_usd, limit_usd, created_at, status, attempts"
_SESSIONS = session_sql("%s")

_UTC = "(to_timestamp(created_at) AT TIME ZONE 'UTC')"
_GROUP_SQL = {
    "day": f"to_char({_UTC}, 'YYYY-MM-DD')",
    "hour": f"to_char({_UTC}, 'YYYY-MM-DD\"T\"HH24\":00Z\"')",
    "model": "coalesce(nullif(model, ''), nullif(model_requested, ''), '-')",
    "provider": "coalesce(nullif(provider, ''), '-')",
    "key": "coalesce(nullif(key_id, ''), '-')",
    "team": "coalesce(nullif(team, ''), '-')",
    "route": "coalesce(nullif(route_rule, ''), '-')",
}
_AGGREGATES = (
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
    "coalesce(sum(cost_usd), 0), coalesce(sum(cost_requested_usd), 0), "
    "coalesce(sum(cost_requested_usd - cost_usd), 0), "
    "coalesce(sum(cost_usd - cost_shadow_usd) FILTER (WHERE shadow_model IS NOT NULL), 0), "
    "count(*) FILTER (WHERE status >= 400 AND NOT disconnected), count(*) FILTER (WHERE disconnected), "
    "percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms), "
    "percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms)"
)


def _summary_row(values: tuple[str, ...], sums: Sequence[Any]) -> SummaryRow:
    n, prompt, completion, cost, requested, saved, shadow, errors, gone, p50, p95 = sums
    return SummaryRow(
        values, int(n), int(prompt), int(completion), Decimal(cost), Decimal(requested), Decimal(saved),
        Decimal(shadow), int(errors), int(gone), p50, p95,
    )


class PostgresAdminQueries:
    """Summary, request log, key attributes, alert claims and dashboard sessions in SQL."""

    _transaction: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _select_usage: str
    _row_record: Callable[[Sequence[Any]], UsageRecord]

    def usage_summary(self, start: float, end: float, group_by: tuple[str, ...]) -> Summary:
        """Totals per group of the records in [start, end), and the totals (two aggregates)."""
        select = ", ".join(_GROUP_SQL[g] for g in group_by)
        grouping = ", ".join(str(i + 1) for i in range(len(group_by)))
        where = " FROM usage WHERE created_at >= %s AND created_at < %s"
        n = len(group_by)
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {select}, {_AGGREGATES}{where} GROUP BY {grouping}", (start, end)  # type: ignore[call-overload]
            ).fetchall()
            total = conn.execute(f"SELECT {_AGGREGATES}{where}", (start, end)).fetchone()  # type: ignore[call-overload]
        assert total is not None  # an aggregate without GROUP BY is one row
        groups = order_rows((_summary_row(tuple(r[:n]), r[n:]) for r in rows), group_by)
        return Summary(group_by, tuple(groups), _summary_row((), total))

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
