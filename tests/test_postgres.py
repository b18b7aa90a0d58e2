"""
Tests for dd0c_route.ledger.postgres beyond the shared contract: migrations
and their lock, the daily rollup, grouped summaries, connection strings and
recovery after the database went away.  Each test has its own database.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import psycopg
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.config import ConfigError, LedgerConfig, parse_config
from dd0c_route.ledger.conninfo import describe_conninfo
from dd0c_route.ledger.groups import group_records
from dd0c_route.ledger.interfaces import LedgerSchemaError, LedgerUnavailable
from dd0c_route.ledger.opening import open_ledger
from dd0c_route.ledger.postgres import SCHEMA_VERSION, PostgresLedger

from .pg import create_database
from .test_ledger import make_key, make_record

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class PostgresLedgerTests(SynchronousTestCase):
    """The PostgreSQL store on a real server."""

    def setUp(self) -> None:
        self.dsn = create_database(self)

    def open(self, **kw: Any) -> PostgresLedger:
        store = PostgresLedger(self.dsn, **kw)
        self.addCleanup(store.close)
        return store

    def sql(self, query: str) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(query)  # type: ignore[call-overload]
            return cursor.fetchall() if cursor.description else None

    def test_schema_version_and_indexes(self) -> None:
        """A fresh database gets the current version, money as numeric, and the aggregation indexes."""
        store = self.open()
        assert store.schema_version == SCHEMA_VERSION >= 1
        types = dict(self.sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'usage'"))
        assert types["cost_usd"] == types["cost_requested_usd"] == types["cost_shadow_usd"] == "numeric"
        assert types["price_source"] == types["price_tier"] == "text"
        indexes = {row[0] for row in self.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'usage'")}
        assert {"usage_created_at", "usage_key", "usage_team", "usage_model"} <= indexes

    def test_concurrent_migrations_do_not_race(self) -> None:
        """Six instances opening an empty database at once all succeed; the schema is made once."""
        errors: list[BaseException] = []

        def start() -> None:
            try:
                PostgresLedger(self.dsn, pool_size=1).close()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert self.sql("SELECT version FROM dd0c_schema") == [(SCHEMA_VERSION,)]

    def test_newer_schema_refused(self) -> None:
        """A database from a newer dd0c-route is refused with a message saying so."""
        self.open().close()
        self.sql(f"UPDATE dd0c_schema SET version = {SCHEMA_VERSION + 1}")
        with self.assertRaises(LedgerSchemaError) as caught:
            PostgresLedger(self.dsn)
        assert "upgrade dd0c-route" in str(caught.exception)

    def test_no_auto_migrate_needs_migrate(self) -> None:
        """With migrate=False an empty database is refused until migrated."""
        with self.assertRaises(LedgerSchemaError) as caught:
            PostgresLedger(self.dsn, migrate=False)
        assert "dd0c-route migrate" in str(caught.exception)
        self.open().close()
        self.open(migrate=False).write_records([make_record(1)])

    def test_rollup_equals_records_and_is_idempotent(self) -> None:
        """The daily rollup sums exactly the stored records; a retried batch adds nothing."""
        store = self.open()
        records = [
            make_record(i, created_at=T0 + i * 3600.0, key_id=f"k{i % 3}", team=None if i % 2 else "qa",
                        model=None if i == 5 else f"m{i % 2}", cost_usd=None if i == 7 else Decimal(f"0.00{i}1"),
                        cost_requested_usd=Decimal("0.01"))
            for i in range(60)
        ]
        store.write_records(records[:40])
        store.write_records(records[20:])
        rollup = self.sql(
            "SELECT sum(requests), sum(prompt_tokens), sum(cost_usd), sum(cost_requested_usd), sum(unpriced) FROM usage_daily"
        )
        prompt = sum(r.prompt_tokens or 0 for r in records)
        cost = sum((r.cost_usd or Decimal(0) for r in records), Decimal(0))
        assert rollup == [(60, prompt, cost, Decimal("0.60"), 1)]
        assert self.sql("SELECT count(DISTINCT day) FROM usage_daily") == [(3,)]

    def test_group_totals_match_the_records(self) -> None:
        """Totals from the rollup equal those computed from the rows, for every grouping, since and limit."""
        store = self.open()
        records = [
            make_record(i, created_at=T0 + i * 5000.0, key_id=f"k{i % 4}", team=["a", "b", None][i % 3],
                        model=f"m{i % 3}", cost_usd=Decimal(i) / 1000)
            for i in range(80)
        ]
        store.write_records(records)
        for group_by in [("day",), ("key",), ("team",), ("model",), ("day", "model"), ("team", "key")]:
            for since in (None, T0 + DAY, T0 + DAY + 12345.5):
                for limit in (None, 3):
                    expected = group_records([r for r in records if since is None or r.created_at >= since], group_by, limit)
                    assert store.group_totals(since, group_by, limit) == expected, (group_by, since, limit)

    def test_nul_in_text_does_not_poison_a_batch(self) -> None:
        """A NUL in a client-controlled string is stored as U+FFFD instead of failing the batch forever."""
        store = self.open()
        store.write_records([make_record(1, model_requested="gpt\x00evil")])
        (back,) = store.read_records()
        assert back.model_requested == "gpt\ufffdevil"

    def test_recovers_after_connections_are_killed(self) -> None:
        """Connections killed by the server fail one call with LedgerUnavailable; the next reconnects."""
        store = self.open(pool_size=2)
        store.write_records([make_record(1)])
        self.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with self.assertRaises(LedgerUnavailable):
            store.write_records([make_record(2)])
        assert store.available is False
        store.write_records([make_record(2)])
        assert store.available is True
        assert [r.request_id for r in store.read_records()] == ["req-1", "req-2"]

    def test_import_keys_is_idempotent(self) -> None:
        """import_keys copies revoked and active keys once."""
        store = self.open()
        _, a = make_key("a", 1.0)
        _, b = make_key("b", 2.0)
        assert store.import_keys([a, b]) == 2
        assert store.import_keys([a, b]) == 0
        assert store.list_keys() == [a, b]


class ConnectionConfigTests(SynchronousTestCase):
    """[ledger] url and friends: checked at load, failures name the key, never the password."""

    def test_defaults(self) -> None:
        """The documented defaults."""
        ledger = parse_config({"ledger": {"url": "postgresql://u@h/db"}}, {}).ledger
        assert (ledger.connect_timeout, ledger.auto_migrate, ledger.pool_size, ledger.password_env) == (10.0, True, 4, None)

    def test_bad_url_never_echoed(self) -> None:
        """A malformed string is refused naming ledger.url, without quoting it."""
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ledger": {"url": "host=h password=hunter2secret junk"}}, {})
        assert caught.exception.key == "ledger.url"
        assert "hunter2secret" not in str(caught.exception)

    def test_path_and_url_exclusive(self) -> None:
        """Setting both ledger.path and ledger.url is an error."""
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ledger": {"url": "postgresql://h/db", "path": "x.sqlite3"}}, {})
        assert "not both" in str(caught.exception)

    def test_unreachable_server_fails_naming_the_key_without_password(self) -> None:
        """An unreachable server fails the open after connect_timeout with a message naming ledger.url."""
        config = LedgerConfig(url="postgresql://dd0c:pw-9f8e7d@127.0.0.1:1/ledger", connect_timeout=2.0,
                              password_env="DD0C_TEST_PW")
        with self.assertRaises(ConfigError) as caught:
            open_ledger(config, {"DD0C_TEST_PW": "env-secret-5a4b"})
        message = str(caught.exception)
        assert caught.exception.key == "ledger.url" and "127.0.0.1:1/ledger" in message
        assert "pw-9f8e7d" not in message and "env-secret-5a4b" not in message

    def test_missing_password_env(self) -> None:
        """password_env naming an unset variable is refused naming ledger.password_env."""
        with self.assertRaises(ConfigError) as caught:
            open_ledger(LedgerConfig(url="postgresql://h/db", password_env="DD0C_NOPE"), {})
        assert caught.exception.key == "ledger.password_env"

    def test_describe_hides_password(self) -> None:
        """describe_conninfo shows user@host:port/dbname only."""
        assert describe_conninfo("postgresql://me:s3cret@db.example:6543/ledger") == "me@db.example:6543/ledger"
