# Tests: tests/test_usage_rollup.py
"""
The usage rollup (:mod:`.rollup`) on SQLite: exact money, the writer's
upsert, the migration's backfill, and the summary read segment by segment.

SQLite has no exact decimal type and money is stored as the ``Decimal``'s
text, so :func:`register_exact` gives each connection two Python functions:
``dec_add(a, b)`` (the upsert adds to a row) and the aggregate ``dec_sum``
(the summary adds rows up), both in :data:`.rollup.EXACT` arithmetic --
never a float.  They exist only on dd0c-route's own connections; nothing
in the schema (no trigger, view or default) calls them, so any other SQLite
client can still read and write the file.

Everything here runs inside the caller's lock and transaction.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any, Optional, Sequence

from .rollup import EXACT, SOURCE_COLUMNS, WINDOW, fold_hourly, fold_rows
from .rollup_plan import SummaryBuilder, plan
from .rollup_sql import SQLITE_TABLE, segment_select, upsert_sql
from .usage_query import Summary

__all__ = ["BACKFILL", "add_to_rollup", "backfill", "register_exact", "summarize"]

_UPSERT = upsert_sql("sqlite")
_SOURCE = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM usage WHERE created_at >= ? AND created_at < ?"
#: Records read (and folded) at a time by the backfill.
_CHUNK = 20_000


def _dec_add(a: str, b: str) -> str:
    return str(EXACT.add(Decimal(a), Decimal(b)))


class _DecSum:
    def __init__(self) -> None:
        self.total: Optional[Decimal] = None

    def step(self, value: Optional[str]) -> None:
        if value is not None:
            number = Decimal(value)
            self.total = number if self.total is None else EXACT.add(self.total, number)

    def finalize(self) -> Optional[str]:
        return None if self.total is None else str(self.total)


def register_exact(conn: sqlite3.Connection) -> None:
    """Give ``conn`` ``dec_add`` and ``dec_sum`` (exact decimal text arithmetic)."""
    conn.create_function("dec_add", 2, _dec_add, deterministic=True)
    conn.create_aggregate("dec_sum", 1, _DecSum)  # type: ignore[arg-type]


def _bind(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(str(v) if v.__class__ is Decimal else v for v in row) for row in rows]


def add_to_rollup(conn: sqlite3.Connection, sources: Sequence[Sequence[Any]]) -> None:
    """Add records (rows of :data:`.rollup.SOURCE_COLUMNS`) that were new to every grain."""
    rows = fold_rows(sources)
    if rows:
        conn.executemany(_UPSERT, _bind(rows))


def backfill(conn: sqlite3.Connection) -> None:
    """
    The migration step: make the table, then fold every stored record into
    it, :data:`_CHUNK` records at a time (the upsert adds a chunk to what
    earlier chunks left, so memory stays one chunk's).
    """
    conn.execute(SQLITE_TABLE)
    cursor = conn.execute(_SOURCE, WINDOW)
    while chunk := cursor.fetchmany(_CHUNK):
        add_to_rollup(conn, chunk)


#: The migration step that makes and fills ``usage_rollup``.
BACKFILL = (backfill,)


def summarize(conn: sqlite3.Connection, start: float, end: float, group_by: tuple[str, ...]) -> Summary:
    """The summary of ``[start, end)`` from the rollup, the edges from the records."""
    built = SummaryBuilder(group_by)
    for segment in plan(start, end, group_by):
        if segment.grain is None:
            rows = conn.execute(_SOURCE, (segment.lo, segment.hi)).fetchall()
            for key, cells in fold_hourly(rows).items():
                built.add_hourly(key, cells)
        else:
            sql = segment_select("sqlite", segment.grain, group_by)
            for row in conn.execute(sql, (segment.grain, segment.lo, segment.hi)):
                built.add_segment_row(row)
    return built.summary()
