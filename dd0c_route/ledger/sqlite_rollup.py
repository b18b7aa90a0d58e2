# Tests: tests/test_usage_rollup.py, tests/test_rollup_fold.py
"""
The usage rollup (:mod:`.rollup`) on SQLite: exact money, the lazy bulk
fold behind a watermark, the migration's backfill, and the summary read
segment by segment.

Folded lazily, not on the write path: ``write_records`` only inserts (one
``executemany``), and :func:`fold_pending` later adds every record past the
watermark -- the highest ``usage.seq`` already folded, in the one-row table
``usage_rollup_mark`` -- to the rollup and moves the watermark, in one write
transaction.  In bulk that costs a fraction of the per-batch upsert it
replaced (records of one hour and key share their rollup rows: each row
upserted costs about three records' folding), and none of it is paid on a
proxied request's path.  The summary folds first; writers fold once
:data:`FOLD_RECORDS` are pending (:class:`FoldSchedule`).

Why a watermark is exact: ``seq`` is ``INTEGER PRIMARY KEY AUTOINCREMENT``,
so a new row's ``seq`` is larger than any ``seq`` the table ever held, and
SQLite write transactions are serialised across connections and processes
(one writer at a time holds the WAL write lock).  A fold runs under that
lock (``BEGIN IMMEDIATE``): every row it can see is committed, no other
write is under way, and every row committed after it gets a larger ``seq``
than the largest it folded.  So "folded" is exactly "``seq`` <= watermark",
and two processes' folds never count a record twice or skip one: the second
finds the watermark the first committed.  A fold that fails rolls back
whole, rollup rows and watermark together.

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

import attrs

from .rollup import EXACT, KEY_COLUMNS, MONEY_CELLS, SOURCE_COLUMNS, WINDOW, fold_hourly, fold_rows
from .rollup_plan import SummaryBuilder, plan
from .rollup_sql import SQLITE_TABLE, segment_select, upsert_sql
from .usage_query import Summary

__all__ = [
    "BACKFILL",
    "FOLD_CHECK",
    "FOLD_RECORDS",
    "MARK",
    "FoldSchedule",
    "add_to_rollup",
    "backfill",
    "fold_pending",
    "pending",
    "register_exact",
    "summarize",
]

_UPSERT = upsert_sql("sqlite")
_SOURCE = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM usage WHERE created_at >= ? AND created_at < ?"
#: The summary's edges: the records the rollup it reads has folded, no newer.
_EDGE = _SOURCE + " AND seq <= ?"
_PENDING = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM usage WHERE seq > ? AND seq <= ?"
_MARK = "SELECT seq FROM usage_rollup_mark"
#: Records read (and folded) at a time by the backfill and the fold.
_CHUNK = 20_000

#: A writer folds once this many records (of every process) are pending:
#: about what a summary may find to fold (~50 ms of work; 10 000 were
#: 100-150 ms, too much of the summary's 200 ms: docs/performance.md).
FOLD_RECORDS = 5_000
#: A writer looks at the pending count after this many records of its own.
FOLD_CHECK = 500


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


_MONEY_AT = tuple(len(KEY_COLUMNS) + i for i in MONEY_CELLS)


def _bind(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows of :func:`.rollup.fold_rows` as SQLite takes them: money (always Decimal there) as its text."""
    out = []
    for row in rows:
        bound = list(row)
        for i in _MONEY_AT:
            bound[i] = str(bound[i])
        out.append(bound)
    return out


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

#: The migration step after it: the watermark, at every stored record.  At
#: that version the rollup holds every record: the backfill folded all of
#: them, and the only code that could write since added each record to the
#: rollup in its own transaction.
MARK = (
    "CREATE TABLE usage_rollup_mark (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
    "INSERT INTO usage_rollup_mark (id, seq) SELECT 1, coalesce(max(seq), 0) FROM usage",
)


def fold_pending(conn: sqlite3.Connection) -> int:
    """
    Add the records past the watermark to the rollup, :data:`_CHUNK` at a
    time, and move the watermark to the last; returns how many.  Run it in
    a write transaction (``BEGIN IMMEDIATE``): see the module docstring.
    """
    (mark,) = conn.execute(_MARK).fetchone()
    (top,) = conn.execute("SELECT max(seq) FROM usage").fetchone()
    if top is None or top <= mark:
        return 0
    cursor = conn.execute(_PENDING, (mark, top))
    folded = 0
    while chunk := cursor.fetchmany(_CHUNK):
        add_to_rollup(conn, chunk)
        folded += len(chunk)
    conn.execute("UPDATE usage_rollup_mark SET seq = ?", (top,))
    return folded


def pending(conn: sqlite3.Connection) -> int:
    """
    How many records are past the watermark: counted, since ``seq`` has gaps
    (an ignored ``INSERT OR IGNORE`` still takes a number).  A rowid range,
    so about 10 ns a pending record.
    """
    (count,) = conn.execute("SELECT count(*) FROM usage WHERE seq > (SELECT seq FROM usage_rollup_mark)").fetchone()
    return int(count)


@attrs.define
class FoldSchedule:
    """
    When a writer folds: once :attr:`records` are pending, counted across
    every process sharing the file (so a summary's fold stays small however
    many workers write), looked at after every :attr:`check_every` records
    this ledger wrote (so a batch costs nothing more).  A summary folds ``<=
    records + check_every`` per writing process.  No timer: a fold's cost is
    mostly per rollup row it touches, so folding seldom and in bulk is
    cheapest per record; the summary folds what is pending anyway.
    """

    records: int = FOLD_RECORDS
    check_every: int = FOLD_CHECK
    _written: int = attrs.field(init=False, default=0)

    def wrote(self, count: int) -> bool:
        """Note ``count`` new records; True when the pending count is due a look."""
        self._written += count
        if self._written < self.check_every:
            return False
        self._written = 0
        return True
def summarize(conn: sqlite3.Connection, start: float, end: float, group_by: tuple[str, ...]) -> Summary:
    """
    The summary of ``[start, end)`` from the rollup, the edges from the
    records the rollup has folded (``seq`` <= watermark): run it in one read
    transaction, so rollup, watermark and records are one snapshot.
    """
    built = SummaryBuilder(group_by)
    (mark,) = conn.execute(_MARK).fetchone()
    for segment in plan(start, end, group_by):
        if segment.grain is None:
            rows = conn.execute(_EDGE, (segment.lo, segment.hi, mark)).fetchall()
            for key, cells in fold_hourly(rows).items():
                built.add_hourly(key, cells)
        else:
            sql = segment_select("sqlite", segment.grain, group_by)
            for row in conn.execute(sql, (segment.grain, segment.lo, segment.hi)):
                built.add_segment_row(row)
    return built.summary()
