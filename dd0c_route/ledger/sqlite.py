# Tests: tests/test_ledger.py, tests/test_usage_rollup.py, tests/test_rollup_fold.py
"""
The durable ledger: usage records and proxy keys in one SQLite file.

Threading: one connection opened with ``check_same_thread=False`` and every
use of it serialised by a lock.  In the server only the ledger thread (and,
for key lookups, whichever worker the key cache is given) touches it, so the
lock is almost never contended; a connection per thread would buy concurrent
readers we do not need at the cost of connections we could not close from
the reactor thread.  The CLI is a separate process: WAL mode lets it read
while the server writes, and ``busy_timeout`` makes either side wait for the
other's short write transactions instead of failing.

Money is stored as the ``Decimal``'s exact text, never as a REAL, so sums
are done in Python with ``Decimal`` (in SQL through the functions
:mod:`.sqlite_rollup` registers); booleans are INTEGER 0/1.  The summary's
rollup (``usage_rollup``, :mod:`.rollup`) is not written with the records:
writing a batch is one ``executemany``, and the records are folded into the
rollup in bulk later (:func:`.sqlite_rollup.fold_pending`), by the summary
before it reads and by the writer, in its own thread, once
:data:`.sqlite_rollup.FOLD_RECORDS` are pending.

Schema versions live in ``PRAGMA user_version``; ``_MIGRATIONS[n]`` takes a
database from version ``n`` to ``n + 1``, each in its own transaction.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from decimal import Decimal
from itertools import chain
from types import TracebackType
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IKeyStore, ISessionStore, IUsageStore, KeyInfo, KeyNameTaken, LedgerSchemaError
from .records import UsageRecord
from .sqlite_admin import SQLiteAdminQueries
from .sqlite_rollup import BACKFILL, MARK, FoldSchedule, pending, register_exact

__all__ = ["SCHEMA_VERSION", "LedgerSchemaError", "SQLiteLedger"]


#: (column, SQL type) for each UsageRecord field, in field order.  Adding a
#: field to UsageRecord needs a migration here; a test checks they agree.
_USAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "TEXT NOT NULL UNIQUE"),
    ("response_id", "TEXT"),
    ("key_id", "TEXT"),
    ("team", "TEXT"),
    ("provider", "TEXT"),
    ("model_requested", "TEXT"),
    ("model", "TEXT"),
    ("endpoint", "TEXT NOT NULL"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cached_tokens", "INTEGER"),
    ("cache_creation_tokens", "INTEGER"),
    ("tokens_counted_locally", "TEXT NOT NULL"),
    ("cost_usd", "TEXT"),
    ("status", "INTEGER NOT NULL"),
    ("stream", "INTEGER NOT NULL"),
    ("disconnected", "INTEGER NOT NULL"),
    ("ttfb_ms", "REAL"),
    ("latency_ms", "REAL NOT NULL"),
    ("error_type", "TEXT"),
    ("created_at", "REAL NOT NULL"),
    ("route_rule", "TEXT"),
    ("complexity", "TEXT"),
    ("cost_requested_usd", "TEXT"),
)

#: Columns added by migration 1 (routing: fallbacks and shadow mode).
_ROUTING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attempts", "TEXT"),
    ("shadow_model", "TEXT"),
    ("cost_shadow_usd", "TEXT"),
)

#: Columns added by migration 2 (where a price came from).
_PRICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("price_source", "TEXT"),
    ("price_tier", "TEXT"),
)

#: Columns added by migration 3 (issue #15: a client's X-Request-ID).
_OPS_COLUMNS: tuple[tuple[str, str], ...] = (("client_request_id", "TEXT"),)

#: Columns added by migration 4 (the Responses API: reasoning tokens).
_RESPONSES_COLUMNS: tuple[tuple[str, str], ...] = (("reasoning_tokens", "INTEGER"),)

#: Columns added by migration 5 (issue #16: the features routing measured,
#: for what-if replays).
_FEATURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens_estimate", "INTEGER"),
    ("tools", "INTEGER"),
    ("images", "INTEGER"),
    ("json_mode", "INTEGER"),
    ("long_context", "INTEGER"),
)

_DECIMAL_COLUMNS = frozenset({"cost_usd", "cost_requested_usd", "cost_shadow_usd"})
_BOOL_COLUMNS = frozenset({"stream", "disconnected"})
#: Booleans that may be unknown (NULL).
_OPTIONAL_BOOL_COLUMNS = frozenset({"tools", "images", "json_mode", "long_context"})

#: A step is SQL text, or a function of the connection (a backfill).
_Step = str | Callable[[sqlite3.Connection], None]

_MIGRATIONS: tuple[tuple[_Step, ...], ...] = (
    (
        "CREATE TABLE usage (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        + ", ".join(f"{name} {kind}" for name, kind in _USAGE_COLUMNS)
        + ")",
        "CREATE INDEX usage_created_at ON usage (created_at)",
        "CREATE TABLE keys ("
        "key_id TEXT PRIMARY KEY, "
        "name TEXT NOT NULL, "
        "key_hash TEXT NOT NULL UNIQUE, "
        "created_at REAL NOT NULL, "
        "team TEXT, "
        "revoked_at REAL)",
        "CREATE UNIQUE INDEX keys_active_name ON keys (name) WHERE revoked_at IS NULL",
    ),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _ROUTING_COLUMNS),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _PRICE_COLUMNS),
    (
        *(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _OPS_COLUMNS),
        "ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0",
    ),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _RESPONSES_COLUMNS),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _FEATURE_COLUMNS),
    (
        # Issue #16: per-key budgets set from the admin API, and budget alerts.
        "ALTER TABLE keys ADD COLUMN daily_usd TEXT",
        "ALTER TABLE keys ADD COLUMN monthly_usd TEXT",
        "CREATE TABLE alerts (scope TEXT NOT NULL, period TEXT NOT NULL, period_start REAL NOT NULL, "
        "threshold TEXT NOT NULL, spent_usd TEXT NOT NULL, limit_usd TEXT, created_at REAL NOT NULL, "
        "status TEXT NOT NULL, attempts INTEGER NOT NULL, "
        "UNIQUE (scope, period, period_start, threshold))",
    ),
    # Issue #16: the summary's rollup, made and filled from the stored records.
    BACKFILL,
    (
        # Issue #16: per-key rate limits, and dashboard sessions shared by
        # every worker and instance (only a SHA-256 of the session id).
        "ALTER TABLE keys ADD COLUMN requests_per_minute INTEGER",
        "ALTER TABLE keys ADD COLUMN tokens_per_minute INTEGER",
        "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, created_at REAL NOT NULL, "
        "expires_at REAL NOT NULL)",
        "CREATE INDEX sessions_expires ON sessions (expires_at)",
    ),
    # Issue #18: the rollup folded lazily past a watermark, off the write path.
    MARK,
)

_USAGE_COLUMNS = (
    _USAGE_COLUMNS + _ROUTING_COLUMNS + _PRICE_COLUMNS + _OPS_COLUMNS + _RESPONSES_COLUMNS + _FEATURE_COLUMNS
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(_MIGRATIONS)

_SELECT_USAGE = "SELECT {} FROM usage".format(", ".join(name for name, _ in _USAGE_COLUMNS))
_KEY_COLUMNS = (
    "key_id, name, key_hash, created_at, team, revoked_at, admin, daily_usd, monthly_usd, "
    "requests_per_minute, tokens_per_minute"
)


_USAGE_NAMES = tuple(name for name, _ in _USAGE_COLUMNS)
_FIELDS_OF_ROW = operator.attrgetter(*_USAGE_NAMES)
_DECIMAL_AT = tuple(i for i, name in enumerate(_USAGE_NAMES) if name in _DECIMAL_COLUMNS)
_BOOL_AT = tuple(i for i, name in enumerate(_USAGE_NAMES) if name in _BOOL_COLUMNS)
_OPTIONAL_BOOL_AT = tuple(i for i, name in enumerate(_USAGE_NAMES) if name in _OPTIONAL_BOOL_COLUMNS)


def _record_row(record: UsageRecord) -> list[Any]:
    """The record's column values, in ``_USAGE_COLUMNS`` order: money as text, booleans as 0/1."""
    row = list(_FIELDS_OF_ROW(record))
    for i in _DECIMAL_AT:
        if row[i] is not None:
            row[i] = str(row[i])
    for i in _BOOL_AT:
        row[i] = int(row[i])
    for i in _OPTIONAL_BOOL_AT:
        if row[i] is not None:
            row[i] = int(row[i])
    return row


#: Rows per INSERT statement: a batch is sent as statements of these sizes
#: (largest first), so at most this many distinct statements are ever
#: prepared (the connection caches them).
_CHUNKS = (64, 16, 4, 1)


def _insert_usage(rows: int) -> str:
    """``INSERT OR IGNORE`` of ``rows`` rows in one statement (each row is inserted or skipped on its own)."""
    one = "(" + ", ".join("?" for _ in _USAGE_COLUMNS) + ")"
    return "INSERT OR IGNORE INTO usage ({}) VALUES {}".format(", ".join(_USAGE_NAMES), ", ".join([one] * rows))


_INSERTS = {rows: _insert_usage(rows) for rows in _CHUNKS}


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[list[Any]]) -> int:
    """
    Insert ``rows`` in order, as few multi-row statements: one
    ``executemany`` step per row cost ~9 us more per record (the statement
    runs, and updates ``sqlite_sequence``, once per row; issue #18).  The
    number of rows inserted (known request ids are skipped).
    """
    start = written = 0
    for size in _CHUNKS:
        while len(rows) - start >= size:
            written += conn.execute(_INSERTS[size], list(chain.from_iterable(rows[start:start + size]))).rowcount
            start += size
    return written


def _row_record(row: Sequence[Any]) -> UsageRecord:
    values: dict[str, Any] = {}
    for (name, _), value in zip(_USAGE_COLUMNS, row, strict=True):
        if name in _DECIMAL_COLUMNS and value is not None:
            value = Decimal(value)
        elif name in _BOOL_COLUMNS or (name in _OPTIONAL_BOOL_COLUMNS and value is not None):
            value = bool(value)
        values[name] = value
    return UsageRecord(**values)


def _row_key(row: Sequence[Any]) -> KeyInfo:
    key_id, name, key_hash, created_at, team, revoked_at, admin, daily, monthly, rpm, tpm = row
    return KeyInfo(
        key_id=key_id,
        name=name,
        key_hash=key_hash,
        created_at=created_at,
        team=team,
        revoked_at=revoked_at,
        admin=bool(admin),
        daily_usd=None if daily is None else Decimal(daily),
        monthly_usd=None if monthly is None else Decimal(monthly),
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
    )


def _money(value: Optional[Decimal]) -> Optional[str]:
    return None if value is None else str(value)


@implementer(IUsageStore, IKeyStore, ISessionStore)
class SQLiteLedger(SQLiteAdminQueries):
    """
    :class:`IUsageStore` and :class:`IKeyStore` over one SQLite file (blocking).

    Opening creates or migrates the schema.  Use it from a worker thread in
    the server; the CLI uses it directly.  ``path`` may be ``":memory:"``.
    ``fold_schedule`` says when :meth:`write_records` folds the rollup.
    """

    _log = Logger()
    _select_usage = _SELECT_USAGE
    _row_record = staticmethod(_row_record)

    def __init__(
        self, path: str, *, busy_timeout_ms: int = 5000, fold_schedule: Optional[FoldSchedule] = None
    ) -> None:
        self.path = path
        self._schedule = FoldSchedule() if fold_schedule is None else fold_schedule
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            register_exact(self._conn)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteLedger:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version``."""
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        while True:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerSchemaError(
                    f"ledger {self.path!r} has schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this dd0c-route understands: upgrade dd0c-route"
                )
            if version == SCHEMA_VERSION:
                return

            def step(conn: sqlite3.Connection, version: int = version) -> None:
                # Another process may have migrated meanwhile: re-check
                # under the write lock that BEGIN IMMEDIATE takes.
                if conn.execute("PRAGMA user_version").fetchone()[0] != version:
                    return
                for statement in _MIGRATIONS[version]:
                    if isinstance(statement, str):
                        conn.execute(statement)
                    else:
                        statement(conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")

            self._transaction(step)

    def _transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` in one write transaction (caller holds no lock)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _write(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            return self._transaction(body)

    # -- IUsageStore -----------------------------------------------------

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        """
        Insert the records in one transaction; known request ids are
        skipped.  Then, when the schedule says so, fold the rollup (in this
        thread, its own transaction): a failed fold is logged, not raised --
        the records are stored, and the next fold takes them.
        """
        rows = [_record_row(record) for record in records]
        if not rows:
            return
        schedule = self._schedule

        def insert(conn: sqlite3.Connection) -> bool:
            written = _insert_rows(conn, rows)
            return schedule.wrote(written) and pending(conn) >= schedule.records

        due: bool = self._write(insert)
        if due:
            try:
                self.fold_rollup()
            except Exception:
                self._log.failure("Folding usage records into the summary's rollup failed; the next fold retries")

    def read_records(self, since: Optional[float] = None) -> list[UsageRecord]:
        """Stored records (``created_at >= since`` if given), in write order."""
        with self._lock:
            if since is None:
                cursor = self._conn.execute(_SELECT_USAGE + " ORDER BY seq")
            else:
                cursor = self._conn.execute(
                    _SELECT_USAGE + " WHERE created_at >= ? ORDER BY seq", (since,)
                )
            rows = cursor.fetchall()
        return [_row_record(row) for row in rows]

    # -- IKeyStore -------------------------------------------------------

    def add_key(self, info: KeyInfo) -> None:
        """Store a new key; :class:`KeyNameTaken` if an active key has its name."""

        def insert(conn: sqlite3.Connection) -> None:
            taken = conn.execute(
                "SELECT 1 FROM keys WHERE name = ? AND revoked_at IS NULL", (info.name,)
            ).fetchone()
            if taken is not None and info.revoked_at is None:
                raise KeyNameTaken(f"an active key is already named {info.name!r}")
            try:
                conn.execute(
                    f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.key_id, info.name, info.key_hash, info.created_at, info.team, info.revoked_at,
                        int(info.admin), _money(info.daily_usd), _money(info.monthly_usd),
                        info.requests_per_minute, info.tokens_per_minute,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ValueError("a key with this id or hash already exists") from None

        self._write(insert)

    def find_by_hash(self, key_hash: str) -> Optional[KeyInfo]:
        """The key with this hash, revoked or not."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
        return None if row is None else _row_key(row)

    def list_keys(self) -> list[KeyInfo]:
        """All keys, oldest first (one query: the key cache reloads with it)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created_at, rowid"
            ).fetchall()
        return [_row_key(row) for row in rows]

    def revoke(self, key_id_or_name: str, when: float) -> Optional[KeyInfo]:
        """Revoke by id, else by name (see :meth:`IKeyStore.revoke`)."""

        def update(conn: sqlite3.Connection) -> Optional[KeyInfo]:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id_or_name,)
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE name = ? "
                    "ORDER BY revoked_at IS NULL DESC, created_at DESC, rowid DESC LIMIT 1",
                    (key_id_or_name,),
                ).fetchone()
            if row is None:
                return None
            info = _row_key(row)
            if info.revoked_at is not None:
                return info
            conn.execute("UPDATE keys SET revoked_at = ? WHERE key_id = ?", (when, info.key_id))
            return attrs.evolve(info, revoked_at=when)

        result: Optional[KeyInfo] = self._write(update)
        return result
