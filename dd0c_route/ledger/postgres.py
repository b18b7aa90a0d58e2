# Tests: tests/test_postgres.py, tests/test_ledger.py, tests/test_usage_rollup.py
"""
The shared ledger: usage records and proxy keys in PostgreSQL (psycopg 3).

Many proxy instances write into one database; operators' CLI commands read
and write the same one.  Everything here blocks: the server calls it from
its ledger threads only (the writer's one thread, the key cache's own).

Writes are batched: one transaction inserts a batch with multi-row
``INSERT ... ON CONFLICT (request_id) DO NOTHING RETURNING request_id``, and
adds exactly the rows that were new to the daily rollup ``usage_daily``
(day x key x team x model) and to the admin summary's ``usage_rollup``
(:mod:`.rollup`) in the same transaction, so a batch retried after an
ambiguous failure (or replayed from the spool) is counted once in every
table.  Summaries (``usage --group-by``) read ``usage_daily``, a few rows
per day, instead of every record.

Money is ``numeric`` (exact); timestamps are the records' float seconds
(``double precision``) so that they read back equal.  PostgreSQL text
cannot hold NUL, so a NUL in a string field is stored as U+FFFD rather
than failing the whole batch forever.

Schema versions live in ``dd0c_schema``; ``MIGRATIONS[n]`` (in
:mod:`.postgres_schema`) takes version ``n`` to ``n + 1``.  Migrating holds a transaction-scoped advisory lock, so
instances starting together migrate one after the other, and the second
finds nothing left to do.

Connections come from a small pool (``pool_size``, :mod:`.postgres_pool`)
that reconnects lazily: a connection that broke is dropped, and the next use
opens a new one, so the store recovers by itself when the database comes back.  A connection
failure surfaces as L{LedgerUnavailable}.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator, Mapping, Optional, Sequence

import attrs
import psycopg
from psycopg import errors as pg_errors
from zope.interface import implementer

from .conninfo import describe_conninfo
from .groups import GroupTotals, day_of, merge, order_groups
from .interfaces import (
    IKeyStore,
    ISessionStore,
    IUsageStore,
    KeyInfo,
    KeyNameTaken,
    LedgerSchemaError,
    LedgerUnavailable,
)
from .postgres_admin import PostgresAdminQueries
from .postgres_pool import Pool
from .postgres_rows import clean, key_row, record_row, rollup_deltas, row_key, row_record
from .postgres_schema import (
    COLUMN_NAMES,
    INSERT_CHUNK,
    KEY_COLUMNS,
    KEY_VALUES,
    MIGRATION_LOCK,
    MIGRATIONS,
    ROLLUP_SUMS,
    ROLLUP_UPSERT,
    SCHEMA_VERSION,
    insert_sql,
)
from .records import UsageRecord
from .rollup import fold_rows, record_source
from .rollup_sql import upsert_sql

__all__ = ["SCHEMA_VERSION", "PostgresLedger", "password_from"]

_ROLLUP_UPSERT = upsert_sql("postgres")


@implementer(IUsageStore, IKeyStore, ISessionStore)
class PostgresLedger(PostgresAdminQueries):
    """
    L{IUsageStore} and L{IKeyStore} in one PostgreSQL database (blocking).

    Opening connects once (failing with L{LedgerUnavailable} after
    ``connect_timeout``) and migrates the schema, or with
    ``migrate=False`` only checks that it is current.
    """

    _select_usage = f"SELECT {', '.join(COLUMN_NAMES)} FROM usage"
    _row_record = staticmethod(row_record)

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
        self._pool = Pool(self._connect, pool_size, wait_timeout=connect_timeout * 3)
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
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS dd0c_schema (version integer NOT NULL)")
            found = self._version(conn)
            self._refuse_newer(found)
            if conn.execute("SELECT count(*) FROM dd0c_schema").fetchone() == (0,):
                conn.execute("INSERT INTO dd0c_schema (version) VALUES (0)")
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
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
                for start in range(0, len(records), INSERT_CHUNK):
                    chunk = records[start:start + INSERT_CHUNK]
                    params = [value for record in chunk for value in record_row(record)]
                    cursor.execute(insert_sql(len(chunk)), params)  # type: ignore[call-overload]
                    new.update(row[0] for row in cursor.fetchall())
                fresh: list[UsageRecord] = []
                for record in records:
                    request_id = clean(record.request_id)
                    if request_id in new:
                        new.discard(request_id)
                        fresh.append(record)
                deltas = rollup_deltas(fresh)
                if deltas:
                    cursor.executemany(
                        ROLLUP_UPSERT,  # type: ignore[arg-type]
                        [
                            (*(clean(v) for v in d.values), *(getattr(d, c) for c in ROLLUP_SUMS))
                            for d in deltas
                        ],
                    )
                added = fold_rows([record_source(r) for r in fresh], clean)
                if added:
                    cursor.execute(_ROLLUP_UPSERT, [list(column) for column in zip(*added, strict=True)])

    def read_records(self, since: Optional[float] = None) -> list[UsageRecord]:
        """Stored records (``created_at >= since`` if given), in write order."""
        select = f"SELECT {', '.join(COLUMN_NAMES)} FROM usage"
        with self._transaction() as conn:
            if since is None:
                rows = conn.execute(select + " ORDER BY seq").fetchall()  # type: ignore[call-overload]
            else:
                rows = conn.execute(select + " WHERE created_at >= %s ORDER BY seq", (since,)).fetchall()  # type: ignore[call-overload]
        return [row_record(row) for row in rows]

    def group_totals(
        self, since: Optional[float], group_by: tuple[str, ...], limit: Optional[int] = None
    ) -> list[GroupTotals]:
        """
        Totals per group from the daily rollup; when ``since`` falls inside
        a day, that day's part comes from the records themselves.
        """
        rollup_cols = {"day": "to_char(day, 'YYYY-MM-DD')", "key": "key_id", "team": "team", "model": "model"}
        select = ", ".join(rollup_cols[g] for g in group_by)
        sums = ", ".join(f"sum({c})" for c in ROLLUP_SUMS)
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
        sums = dict(zip(ROLLUP_SUMS, row[n:], strict=True))
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
                    f"INSERT INTO keys ({KEY_COLUMNS}) VALUES {KEY_VALUES}",
                    key_row(info),
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
                    f"INSERT INTO keys ({KEY_COLUMNS}) VALUES {KEY_VALUES} "
                    "ON CONFLICT (key_id) DO NOTHING",
                    key_row(info),
                )
                added += cursor.rowcount
        return added

    def find_by_hash(self, key_hash: str) -> Optional[KeyInfo]:
        """The key with this hash, revoked or not."""
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {KEY_COLUMNS} FROM keys WHERE key_hash = %s", (key_hash,)).fetchone()
        return None if row is None else row_key(row)

    def list_keys(self) -> list[KeyInfo]:
        """All keys, oldest first (one query: the key cache reloads with it)."""
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY created_at, seq").fetchall()
        return [row_key(row) for row in rows]

    def revoke(self, key_id_or_name: str, when: float) -> Optional[KeyInfo]:
        """Revoke by id, else by name (see L{IKeyStore.revoke})."""
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM keys WHERE key_id = %s FOR UPDATE", (key_id_or_name,)
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {KEY_COLUMNS} FROM keys WHERE name = %s "
                    "ORDER BY revoked_at IS NULL DESC, created_at DESC, seq DESC LIMIT 1 FOR UPDATE",
                    (key_id_or_name,),
                ).fetchone()
            if row is None:
                return None
            info = row_key(row)
            if info.revoked_at is not None:
                return info
            conn.execute("UPDATE keys SET revoked_at = %s WHERE key_id = %s", (when, info.key_id))
        return attrs.evolve(info, revoked_at=when)


def password_from(environ: Mapping[str, str], name: Optional[str]) -> Optional[str]:
    """The password from the variable ``ledger.password_env`` names, if set."""
    if not name:
        return None
    return environ.get(name) or None
