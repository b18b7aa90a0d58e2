# Tests: tests/test_postgres.py, tests/test_ledger.py
"""
The shared ledger: usage records and proxy keys in PostgreSQL (psycopg 3).

Many proxy instances write into one database; operators' CLI commands read
and write the same one.  Everything here blocks: the server calls it from
its ledger threads only (the writer's one thread, the key cache's own).

Writes are batched: one transaction inserts a batch with multi-row
``INSERT ... ON CONFLICT (request_id) DO NOTHING RETURNING request_id``, and
adds exactly the rows that were new to the daily rollup ``usage_daily``
(day x key x team x model) in the same transaction, so a batch retried
after an ambiguous failure (or replayed from the spool) is counted once in
both tables.  Summaries (``usage --group-by``) read the rollup, a few rows
per day, instead of every record.

Money is ``numeric`` (exact); timestamps are the records' float seconds
(``double precision``) so that they read back equal.  PostgreSQL text
cannot hold NUL, so a NUL in a string field is stored as U+FFFD rather
than failing the whole batch forever.

Schema versions live in ``dd0c_schema``; ``_MIGRATIONS[n]`` takes version
``n`` to ``n + 1``.  Migrating holds a transaction-scoped advisory lock, so
instances starting together migrate one after the other, and the second
finds nothing left to do.

Connections come from a small pool (``pool_size``) that reconnects lazily:
a connection that broke is dropped, and the next use opens a new one, so
the store recovers by itself when the database comes back.  A connection
failure surfaces as L{LedgerUnavailable}.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator, Mapping, Optional, Sequence

import attrs
import psycopg
from psycopg import errors as pg_errors
from zope.interface import implementer

from .conninfo import describe_conninfo
from .groups import GroupTotals, day_of, group_values, merge, order_groups, totals_of
from .interfaces import IKeyStore, IUsageStore, KeyInfo, KeyNameTaken, LedgerSchemaError, LedgerUnavailable
from .postgres_admin import PostgresAdminQueries
from .records import UsageRecord

__all__ = ["SCHEMA_VERSION", "PostgresLedger", "password_from"]

#: (column, SQL type) for each UsageRecord field, in field order.
_USAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "text NOT NULL UNIQUE"),
    ("response_id", "text"),
    ("key_id", "text"),
    ("team", "text"),
    ("provider", "text"),
    ("model_requested", "text"),
    ("model", "text"),
    ("endpoint", "text NOT NULL"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("cache_creation_tokens", "bigint"),
    ("tokens_counted_locally", "text NOT NULL"),
    ("cost_usd", "numeric"),
    ("status", "integer NOT NULL"),
    ("stream", "boolean NOT NULL"),
    ("disconnected", "boolean NOT NULL"),
    ("ttfb_ms", "double precision"),
    ("latency_ms", "double precision NOT NULL"),
    ("error_type", "text"),
    ("created_at", "double precision NOT NULL"),
    ("route_rule", "text"),
    ("complexity", "text"),
    ("cost_requested_usd", "numeric"),
    ("attempts", "text"),
    ("shadow_model", "text"),
    ("cost_shadow_usd", "numeric"),
    ("price_source", "text"),
    ("price_tier", "text"),
)
#: Columns added by migration 1 (issue #15: a client's X-Request-ID).
_OPS_COLUMNS: tuple[tuple[str, str], ...] = (("client_request_id", "text"),)
#: Columns added by migration 2 (the Responses API: reasoning tokens).
_RESPONSES_COLUMNS: tuple[tuple[str, str], ...] = (("reasoning_tokens", "bigint"),)
#: Columns added by migration 3 (issue #16: the features routing measured).
_FEATURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens_estimate", "bigint"),
    ("tools", "boolean"),
    ("images", "boolean"),
    ("json_mode", "boolean"),
    ("long_context", "boolean"),
)
_COLUMN_NAMES = tuple(
    name for name, _ in _USAGE_COLUMNS + _OPS_COLUMNS + _RESPONSES_COLUMNS + _FEATURE_COLUMNS
)
_KEY_COLUMNS = "key_id, name, key_hash, created_at, team, revoked_at, admin, daily_usd, monthly_usd"
_KEY_VALUES = "(" + ", ".join("%s" for _ in _KEY_COLUMNS.split(", ")) + ")"

#: The rollup's money and count columns, as summed.
_ROLLUP_SUMS = (
    "requests", "prompt_tokens", "completion_tokens", "cost_usd",
    "cost_requested_usd", "cost_shadow_usd", "unpriced",
)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE usage (seq bigserial PRIMARY KEY, "
        + ", ".join(f"{name} {kind}" for name, kind in _USAGE_COLUMNS)
        + ")",
        "CREATE INDEX usage_created_at ON usage (created_at)",
        "CREATE INDEX usage_key ON usage (key_id, created_at)",
        "CREATE INDEX usage_team ON usage (team, created_at)",
        "CREATE INDEX usage_model ON usage (model, created_at)",
        "CREATE TABLE keys ("
        "seq bigserial, "
        "key_id text PRIMARY KEY, "
        "name text NOT NULL, "
        "key_hash text NOT NULL UNIQUE, "
        "created_at double precision NOT NULL, "
        "team text, "
        "revoked_at double precision)",
        "CREATE UNIQUE INDEX keys_active_name ON keys (name) WHERE revoked_at IS NULL",
        "CREATE TABLE usage_daily ("
        "day date NOT NULL, key_id text NOT NULL, team text NOT NULL, model text NOT NULL, "
        "requests bigint NOT NULL, prompt_tokens bigint NOT NULL, completion_tokens bigint NOT NULL, "
        "cost_usd numeric NOT NULL, cost_requested_usd numeric NOT NULL, "
        "cost_shadow_usd numeric NOT NULL, unpriced bigint NOT NULL, "
        "PRIMARY KEY (day, key_id, team, model))",
        "CREATE INDEX usage_daily_key ON usage_daily (key_id, day)",
        "CREATE INDEX usage_daily_team ON usage_daily (team, day)",
        "CREATE INDEX usage_daily_model ON usage_daily (model, day)",
    ),
    (
        *(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _OPS_COLUMNS),
        "ALTER TABLE keys ADD COLUMN admin boolean NOT NULL DEFAULT false",
    ),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _RESPONSES_COLUMNS),
    tuple(f"ALTER TABLE usage ADD COLUMN {name} {kind}" for name, kind in _FEATURE_COLUMNS),
    (
        # Issue #16: per-key budgets set from the admin API, and budget alerts.
        "ALTER TABLE keys ADD COLUMN daily_usd numeric",
        "ALTER TABLE keys ADD COLUMN monthly_usd numeric",
        "CREATE TABLE alerts (scope text NOT NULL, period text NOT NULL, period_start double precision NOT NULL, "
        "threshold text NOT NULL, spent_usd numeric NOT NULL, limit_usd numeric, "
        "created_at double precision NOT NULL, status text NOT NULL, attempts integer NOT NULL, "
        "UNIQUE (scope, period, period_start, threshold))",
    ),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(_MIGRATIONS)

#: pg_advisory_xact_lock key for migrations ("dd0c" in ASCII).
_MIGRATION_LOCK = 0x64643063

#: Rows per INSERT statement (29 parameters each, well under the 65535 limit).
_INSERT_CHUNK = 1000

_ROLLUP_UPSERT = (
    "INSERT INTO usage_daily (day, key_id, team, model, " + ", ".join(_ROLLUP_SUMS) + ") "
    "VALUES (%s, %s, %s, %s, " + ", ".join("%s" for _ in _ROLLUP_SUMS) + ") "
    "ON CONFLICT (day, key_id, team, model) DO UPDATE SET "
    + ", ".join(f"{c} = usage_daily.{c} + EXCLUDED.{c}" for c in _ROLLUP_SUMS)
)

_ROLLUP_GROUPS = ("day", "key", "team", "model")


def _clean(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _record_row(record: UsageRecord) -> list[Any]:
    return [_clean(getattr(record, name)) for name in _COLUMN_NAMES]


def _row_record(row: Sequence[Any]) -> UsageRecord:
    return UsageRecord(**dict(zip(_COLUMN_NAMES, row, strict=True)))


def _row_key(row: Sequence[Any]) -> KeyInfo:
    key_id, name, key_hash, created_at, team, revoked_at, admin, daily, monthly = row
    return KeyInfo(
        key_id=key_id, name=name, key_hash=key_hash, created_at=created_at, team=team, revoked_at=revoked_at,
        admin=bool(admin), daily_usd=daily, monthly_usd=monthly,
    )


def _key_row(info: KeyInfo) -> tuple[Any, ...]:
    return (
        info.key_id, info.name, info.key_hash, info.created_at, info.team, info.revoked_at, info.admin,
        info.daily_usd, info.monthly_usd,
    )


def _insert_sql(rows: int) -> str:
    one = "(" + ", ".join("%s" for _ in _COLUMN_NAMES) + ")"
    return (
        f"INSERT INTO usage ({', '.join(_COLUMN_NAMES)}) VALUES "
        + ", ".join(one for _ in range(rows))
        + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )


def _rollup_deltas(records: Sequence[UsageRecord]) -> list[GroupTotals]:
    """What the new records add to each rollup row, in primary-key order."""
    parts = []
    for record in records:
        values = group_values(record, _ROLLUP_GROUPS)
        if values[0] == "-":
            # A timestamp outside the calendar: counted on day 1970-01-01.
            values = ("1970-01-01", *values[1:])
        parts.append(totals_of(record, _ROLLUP_GROUPS, values))
    # One lock order for every writer: no deadlock between instances.
    return sorted(merge(parts), key=lambda t: t.values)


class _Pool:
    """
    At most ``size`` connections, opened on demand and dropped when broken.

    Simpler than psycopg_pool for what the ledger needs: no background
    threads, and a dead database shows as an immediate connection error on
    use (after ``connect_timeout``), which is when the writer wants to know.
    """

    def __init__(self, connect: Any, size: int, wait_timeout: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._wait = wait_timeout
        self._closed = False

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction (committed if the body returns)."""
        if not self._slots.acquire(timeout=self._wait):
            raise LedgerUnavailable("every PostgreSQL connection of the pool stayed busy")
        try:
            conn = self._take()
            try:
                with conn.transaction():
                    yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self._drop(conn)
                raise LedgerUnavailable(f"PostgreSQL: {error}") from None
            except BaseException:
                self._give(conn)
                raise
            self._give(conn)
        finally:
            self._slots.release()

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("the PostgreSQL store is closed")
            if self._idle:
                return self._idle.pop()
        try:
            conn: psycopg.Connection[Any] = self._connect()
        except psycopg.Error as error:
            raise LedgerUnavailable(f"cannot connect to PostgreSQL: {error}") from None
        return conn

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._drop(conn)


@implementer(IUsageStore, IKeyStore)
class PostgresLedger(PostgresAdminQueries):
    """
    L{IUsageStore} and L{IKeyStore} in one PostgreSQL database (blocking).

    Opening connects once (failing with L{LedgerUnavailable} after
    ``connect_timeout``) and migrates the schema, or with
    ``migrate=False`` only checks that it is current.
    """

    _select_usage = f"SELECT {', '.join(_COLUMN_NAMES)} FROM usage"
    _row_record = staticmethod(_row_record)

    def __init__(
        self,
        conninfo: str,
        *,
        password: Optional[str] = None,
        connect_timeout: float = 10.0,
        pool_size: int = 4,
        migrate: bool = True,
    ) -> None:
        self.conninfo = conninfo
        self.where = describe_conninfo(conninfo)
        params: dict[str, Any] = {
            "autocommit": True,
            # libpq's own minimum is 2 s.
            "connect_timeout": max(2, round(connect_timeout)),
            "application_name": "dd0c-route",
            # A peer that stops acknowledging fails our writes instead of
            # hanging a ledger thread forever.
            "tcp_user_timeout": int(connect_timeout * 1000),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }
        if password is not None:
            params["password"] = password
        self._params = params
        self._pool = _Pool(self._connect, pool_size, wait_timeout=connect_timeout * 3)
        #: True after the last operation reached the database, False after
        #: it could not (shown as ``ledger.store`` in ``/healthz``).
        self.available = True
        try:
            if migrate:
                self.migrate()
            else:
                self.check_schema()
        except BaseException:
            self._pool.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, **self._params)

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.transaction() as conn:
                yield conn
        except LedgerUnavailable:
            self.available = False
            raise
        self.available = True

    # -- lifecycle and schema ----------------------------------------------

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._pool.close()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute("SELECT to_regclass('dd0c_schema') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT version FROM dd0c_schema").fetchone()
        return 0 if row is None else int(row[0])

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise LedgerSchemaError(
                f"the PostgreSQL ledger {self.where} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this dd0c-route understands: upgrade dd0c-route"
            )

    @property
    def schema_version(self) -> int:
        """The database's schema version (0: empty)."""
        with self._transaction() as conn:
            return self._version(conn)

    def check_schema(self) -> None:
        """LedgerSchemaError unless the schema is exactly this code's."""
        version = self.schema_version
        self._refuse_newer(version)
        if version < SCHEMA_VERSION:
            raise LedgerSchemaError(
                f"the PostgreSQL ledger {self.where} has schema version {version}, older than the "
                f"{SCHEMA_VERSION} this dd0c-route needs, and ledger.auto_migrate is false: "
                "run `dd0c-route migrate`"
            )

    def migrate(self) -> int:
        """
        Bring the schema to L{SCHEMA_VERSION} under the advisory lock;
        returns the version found before.  Refuses a newer schema.
        """
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS dd0c_schema (version integer NOT NULL)")
            found = self._version(conn)
            self._refuse_newer(found)
            if conn.execute("SELECT count(*) FROM dd0c_schema").fetchone() == (0,):
                conn.execute("INSERT INTO dd0c_schema (version) VALUES (0)")
            for version in range(found, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)  # type: ignore[call-overload]
            conn.execute("UPDATE dd0c_schema SET version = %s", (SCHEMA_VERSION,))
        return found

    # -- IUsageStore ---------------------------------------------------------

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        """
        Insert the records and add the new ones to the rollup, in one
        transaction; known request ids are skipped in both.
        """
        if not records:
            return
        with self._transaction() as conn:
            new: set[str] = set()
            with conn.cursor() as cursor:
                for start in range(0, len(records), _INSERT_CHUNK):
                    chunk = records[start:start + _INSERT_CHUNK]
                    params = [value for record in chunk for value in _record_row(record)]
                    cursor.execute(_insert_sql(len(chunk)), params)  # type: ignore[call-overload]
                    new.update(row[0] for row in cursor.fetchall())
                fresh: list[UsageRecord] = []
                for record in records:
                    request_id = _clean(record.request_id)
                    if request_id in new:
                        new.discard(request_id)
                        fresh.append(record)
                deltas = _rollup_deltas(fresh)
                if deltas:
                    cursor.executemany(
                        _ROLLUP_UPSERT,  # type: ignore[arg-type]
                        [
                            (*(_clean(v) for v in d.values), *(getattr(d, c) for c in _ROLLUP_SUMS))
                            for d in deltas
                        ],
                    )

    def read_records(self, since: Optional[float] = None) -> list[UsageRecord]:
        """Stored records (``created_at >= since`` if given), in write order."""
        select = f"SELECT {', '.join(_COLUMN_NAMES)} FROM usage"
        with self._transaction() as conn:
            if since is None:
                rows = conn.execute(select + " ORDER BY seq").fetchall()  # type: ignore[call-overload]
            else:
                rows = conn.execute(select + " WHERE created_at >= %s ORDER BY seq", (since,)).fetchall()  # type: ignore[call-overload]
        return [_row_record(row) for row in rows]

    def group_totals(
        self, since: Optional[float], group_by: tuple[str, ...], limit: Optional[int] = None
    ) -> list[GroupTotals]:
        """
        Totals per group from the daily rollup; when ``since`` falls inside
        a day, that day's part comes from the records themselves.
        """
        rollup_cols = {"day": "to_char(day, 'YYYY-MM-DD')", "key": "key_id", "team": "team", "model": "model"}
        select = ", ".join(rollup_cols[g] for g in group_by)
        sums = ", ".join(f"sum({c})" for c in _ROLLUP_SUMS)
        grouping = ", ".join(str(i + 1) for i in range(len(group_by)))
        query = f"SELECT {select}, {sums} FROM usage_daily"
        params: list[Any] = []
        partial_day: Optional[str] = None
        if since is not None:
            first = day_of(since)
            start = datetime.fromisoformat(first).replace(tzinfo=UTC) if first != "-" else None
            if start is not None and start.timestamp() != since:
                partial_day = first
                start = start + timedelta(days=1)
            if start is not None:
                query += " WHERE day >= %s"
                params.append(start.date())
        query += f" GROUP BY {grouping}"
        parts: list[GroupTotals] = []
        with self._transaction() as conn:
            for row in conn.execute(query, params).fetchall():  # type: ignore[call-overload]
                parts.append(self._totals(group_by, row))
            if partial_day is not None:
                parts.extend(self._partial_day(conn, since or 0.0, partial_day, group_by))
        return order_groups(merge(parts), group_by, limit)

    @staticmethod
    def _totals(group_by: tuple[str, ...], row: Sequence[Any]) -> GroupTotals:
        n = len(group_by)
        values = tuple(v if v else "-" for v in row[:n])
        sums = dict(zip(_ROLLUP_SUMS, row[n:], strict=True))
        return GroupTotals(
            group_by=group_by,
            values=values,
            requests=int(sums["requests"]),
            prompt_tokens=int(sums["prompt_tokens"]),
            completion_tokens=int(sums["completion_tokens"]),
            cost_usd=Decimal(sums["cost_usd"]),
            cost_requested_usd=Decimal(sums["cost_requested_usd"]),
            cost_shadow_usd=Decimal(sums["cost_shadow_usd"]),
            unpriced=int(sums["unpriced"]),
        )

    def _partial_day(
        self, conn: psycopg.Connection[Any], since: float, day: str, group_by: tuple[str, ...]
    ) -> list[GroupTotals]:
        columns = {
            "day": "%(day)s",
            "key": "coalesce(nullif(key_id, ''), '')",
            "team": "coalesce(nullif(team, ''), '')",
            "model": "coalesce(nullif(model, ''), nullif(model_requested, ''), '')",
        }
        select = ", ".join(columns[g] for g in group_by)
        grouping = ", ".join(str(i + 1) for i in range(len(group_by)))
        end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
        query = (
            f"SELECT {select}, count(*), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0), "
            "coalesce(sum(cost_requested_usd), 0), coalesce(sum(cost_shadow_usd), 0), "
            "count(*) FILTER (WHERE cost_usd IS NULL) "
            "FROM usage WHERE created_at >= %(since)s AND created_at < %(end)s "
            f"GROUP BY {grouping}"
        )
        rows = conn.execute(query, {"day": day, "since": since, "end": end.timestamp()}).fetchall()  # type: ignore[call-overload]
        return [self._totals(group_by, row) for row in rows]

    # -- IKeyStore -----------------------------------------------------------

    def add_key(self, info: KeyInfo) -> None:
        """Store a new key; L{KeyNameTaken} if an active key has its name."""
        try:
            with self._transaction() as conn:
                if info.revoked_at is None:
                    taken = conn.execute(
                        "SELECT 1 FROM keys WHERE name = %s AND revoked_at IS NULL", (info.name,)
                    ).fetchone()
                    if taken is not None:
                        raise KeyNameTaken(f"an active key is already named {info.name!r}")
                conn.execute(
                    f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES {_KEY_VALUES}",
                    _key_row(info),
                )
        except pg_errors.UniqueViolation as error:
            if error.diag.constraint_name == "keys_active_name":
                # Another instance took the name between our check and insert.
                raise KeyNameTaken(f"an active key is already named {info.name!r}") from None
            raise ValueError("a key with this id or hash already exists") from None

    def import_keys(self, infos: Sequence[KeyInfo]) -> int:
        """
        Copy keys as they are (revoked ones included); keys already here
        (by id) are skipped.  Returns how many were new.
        """
        added = 0
        with self._transaction() as conn:
            for info in infos:
                cursor = conn.execute(
                    f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES {_KEY_VALUES} "
                    "ON CONFLICT (key_id) DO NOTHING",
                    _key_row(info),
                )
                added += cursor.rowcount
        return added

    def find_by_hash(self, key_hash: str) -> Optional[KeyInfo]:
        """The key with this hash, revoked or not."""
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_hash = %s", (key_hash,)).fetchone()
        return None if row is None else _row_key(row)

    def list_keys(self) -> list[KeyInfo]:
        """All keys, oldest first (one query: the key cache reloads with it)."""
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created_at, seq").fetchall()
        return [_row_key(row) for row in rows]

    def revoke(self, key_id_or_name: str, when: float) -> Optional[KeyInfo]:
        """Revoke by id, else by name (see L{IKeyStore.revoke})."""
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = %s FOR UPDATE", (key_id_or_name,)
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE name = %s "
                    "ORDER BY revoked_at IS NULL DESC, created_at DESC, seq DESC LIMIT 1 FOR UPDATE",
                    (key_id_or_name,),
                ).fetchone()
            if row is None:
                return None
            info = _row_key(row)
            if info.revoked_at is not None:
                return info
            conn.execute("UPDATE keys SET revoked_at = %s WHERE key_id = %s", (when, info.key_id))
        return attrs.evolve(info, revoked_at=when)


def password_from(environ: Mapping[str, str], name: Optional[str]) -> Optional[str]:
    """The password from the variable ``ledger.password_env`` names, if set."""
    if not name:
        return None
    return environ.get(name) or None
