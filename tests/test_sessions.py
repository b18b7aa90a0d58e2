"""
Dashboard sessions in the ledger: the ISessionStore contract on SQLite, on
a real PostgreSQL database and on the in-memory fake (live while unexpired
and the admin key is active and admin; logout deletes; only the SHA-256 of
the id is stored), and the SessionTable in front of it on a Clock (the
cookie's id is never stored, the CSRF token is derived, lookups are cached
for ``cache_ttl`` and shared, a logout elsewhere ends the session within
that bound, expiry always holds); and the one migration step (sessions
table, the keys' rate limits) from the schema before it, on both stores.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dd0c_route.admin.sessions import SessionTable, csrf_token, session_hash
from dd0c_route.ledger.interfaces import ISessionStore, KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.ledger.session_records import SessionRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.testing.doubles import DeferredRunner, InMemoryLedger, SynchronousRunner

from . import test_ledger  # its stores' make_store (not its test classes: they would run twice)

HOUR = 3600.0


def admin_key(store: Any, admin: bool = True) -> KeyInfo:
    info = KeyInfo(new_key_id(), "ops-" + os.urandom(3).hex(), hash_key(generate_key()), 1.0, admin=admin)
    store.add_key(info)
    return info


def record(key_id: str, created: float = 100.0, ttl: float = HOUR) -> SessionRecord:
    return SessionRecord(
        id_hash=hashlib.sha256(os.urandom(16)).hexdigest(), key_id=key_id, created_at=created, expires_at=created + ttl,
    )


class SessionStoreContract:
    """What every ISessionStore does; mixed into one test case per store."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_the_interface(self) -> None:
        """The store fully provides ISessionStore."""
        assert verifyObject(ISessionStore, self.store)

    def test_live_until_it_expires(self) -> None:
        """Found before expires_at, not at or after it."""
        key = admin_key(self.store)
        session = record(key.key_id)
        self.store.add_session(session)
        assert self.store.find_session(session.id_hash, 200.0) == session
        assert self.store.find_session(session.id_hash, session.expires_at) is None
        assert self.store.find_session("0" * 64, 200.0) is None

    def test_logout_deletes(self) -> None:
        """end_session forgets it; ending an unknown one does nothing."""
        key = admin_key(self.store)
        session = record(key.key_id)
        self.store.add_session(session)
        self.store.end_session(session.id_hash)
        self.store.end_session(session.id_hash)
        assert self.store.find_session(session.id_hash, 200.0) is None

    def test_a_revoked_or_client_key_has_no_live_session(self) -> None:
        """The key revoked (by anyone) ends its sessions; a non-admin key's session is never live."""
        key, other, client = admin_key(self.store), admin_key(self.store), admin_key(self.store, admin=False)
        mine, theirs, bogus = record(key.key_id), record(other.key_id), record(client.key_id)
        for session in (mine, theirs, bogus):
            self.store.add_session(session)
        self.store.revoke(key.key_id, 150.0)
        assert self.store.find_session(mine.id_hash, 200.0) is None
        assert self.store.find_session(theirs.id_hash, 200.0) == theirs
        assert self.store.find_session(bogus.id_hash, 200.0) is None

    def test_a_login_drops_expired_sessions(self) -> None:
        """Adding a session deletes those that expired before it began (an expired one stays dead anyway)."""
        key = admin_key(self.store)
        old = record(key.key_id, created=0.0, ttl=10.0)
        self.store.add_session(old)
        self.store.add_session(record(key.key_id, created=50.0))
        assert self.store.find_session(old.id_hash, 5.0) is None


class SQLiteSessionTests(SessionStoreContract, SynchronousTestCase):
    make_store = test_ledger.SQLiteContractTests.make_store


class PostgresSessionTests(SessionStoreContract, SynchronousTestCase):
    make_store = test_ledger.PostgresContractTests.make_store


class InMemorySessionTests(SessionStoreContract, SynchronousTestCase):
    make_store = test_ledger.InMemoryContractTests.make_store


class SessionTableTests(SynchronousTestCase):
    """The table on a Clock over the in-memory fake (its call counts show every read)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.store = InMemoryLedger()
        self.key = admin_key(self.store)
        self.table = SessionTable(self.store, SynchronousRunner().run, self.clock, ttl=HOUR, cache_ttl=2.0)

    def get(self, table: SessionTable, session_id: str) -> Any:
        return self.successResultOf(table.get(session_id))

    def test_the_store_holds_a_hash_and_the_token_is_derived(self) -> None:
        """The stored id_hash is SHA-256 of the cookie; the CSRF token is neither the id nor the hash."""
        session = self.successResultOf(self.table.create(self.key.key_id))
        [stored] = self.store._sessions.values()
        assert stored.id_hash == session_hash(session.session_id) == hashlib.sha256(session.session_id.encode()).hexdigest()
        assert session.session_id not in repr(stored) and session.session_id not in repr(session)
        assert session.csrf_token == csrf_token(session.session_id) not in (session.session_id, stored.id_hash)
        assert session.csrf_ok(session.csrf_token) and not session.csrf_ok("x") and not session.csrf_ok(None)

    def test_another_table_on_the_same_store_knows_the_login(self) -> None:
        """Another worker or instance (another table, one store) finds the session and agrees on its token."""
        session = self.successResultOf(self.table.create(self.key.key_id))
        elsewhere = SessionTable(self.store, SynchronousRunner().run, self.clock)
        found = self.get(elsewhere, session.session_id)
        assert found is not None and found.key_id == self.key.key_id and found.csrf_token == session.csrf_token

    def test_reads_are_cached_for_cache_ttl(self) -> None:
        """Within 2 s a lookup costs no query (live and refused alike); after it, one."""
        session = self.successResultOf(self.table.create(self.key.key_id))
        elsewhere = SessionTable(self.store, SynchronousRunner().run, self.clock)
        for _ in range(5):
            assert self.get(elsewhere, session.session_id) is not None
            assert self.get(elsewhere, "A" * 43) is None
        assert self.store.calls["find_session"] == 2
        self.clock.advance(2.0)
        self.get(elsewhere, session.session_id)
        assert self.store.calls["find_session"] == 3

    def test_logout_ends_it_here_at_once_and_elsewhere_within_cache_ttl(self) -> None:
        """Logged out on one table: refused there now; the other refuses once its cached answer is 2 s old."""
        session = self.successResultOf(self.table.create(self.key.key_id))
        elsewhere = SessionTable(self.store, SynchronousRunner().run, self.clock)
        assert self.get(elsewhere, session.session_id) is not None
        self.successResultOf(self.table.end(session))
        assert self.get(self.table, session.session_id) is None
        self.clock.advance(1.9)
        assert self.get(elsewhere, session.session_id) is not None  # the documented bound
        self.clock.advance(0.1)
        assert self.get(elsewhere, session.session_id) is None

    def test_revoking_the_key_ends_its_sessions(self) -> None:
        """forget_key ends them here at once; the store's join ends them everywhere at the next read."""
        session = self.successResultOf(self.table.create(self.key.key_id))
        elsewhere = SessionTable(self.store, SynchronousRunner().run, self.clock)
        assert self.get(elsewhere, session.session_id) is not None
        self.store.revoke(self.key.key_id, self.clock.seconds())
        self.table.forget_key(self.key.key_id)
        assert self.get(self.table, session.session_id) is None
        self.clock.advance(2.0)
        assert self.get(elsewhere, session.session_id) is None

    def test_an_expired_session_is_refused_even_from_the_cache(self) -> None:
        """At expires the session is dead, cached or not."""
        table = SessionTable(self.store, SynchronousRunner().run, self.clock, ttl=10.0, cache_ttl=60.0)
        session = self.successResultOf(table.create(self.key.key_id))
        self.clock.advance(9.9)
        assert self.get(table, session.session_id) is not None
        self.clock.advance(0.1)
        assert self.get(table, session.session_id) is None
        assert self.get(SessionTable(self.store, SynchronousRunner().run, self.clock), session.session_id) is None

    def test_malformed_cookies_cost_no_read(self) -> None:
        """Empty, short, long or non-URL-safe values are refused without a query."""
        for value in ("", None, "abc", "A" * 44, "A" * 42 + "!", "A" * 42 + "\u00e9"):
            assert self.get(self.table, value) is None
        assert self.store.calls.get("find_session", 0) == 0

    def test_concurrent_reads_share_one_query(self) -> None:
        """Three lookups while the first read runs: one query, three answers."""
        runner = DeferredRunner()
        session = self.successResultOf(self.table.create(self.key.key_id))
        table = SessionTable(self.store, runner.run, self.clock)
        pending = [table.get(session.session_id) for _ in range(3)]
        runner.release()
        assert [self.successResultOf(d).key_id for d in pending] == [self.key.key_id] * 3
        assert self.store.calls["find_session"] == 1

    def test_a_failing_store_fails_the_lookup(self) -> None:
        """A store that cannot answer fails every waiting lookup (the API answers 503), and caches nothing."""
        session = self.successResultOf(self.table.create(self.key.key_id))

        def broken(*args: Any) -> Any:
            raise OSError("ledger down")

        self.store.find_session = broken  # type: ignore[method-assign]
        table = SessionTable(self.store, SynchronousRunner().run, self.clock)
        self.failureResultOf(table.get(session.session_id), OSError)
        del self.store.find_session
        assert self.get(table, session.session_id) is not None


def test_sqlite_file_never_holds_the_session_id(tmp_path: Any) -> None:
    """The cookie's value appears nowhere in the SQLite file or its WAL, its SHA-256 does."""
    store = SQLiteLedger(str(tmp_path / "ledger.sqlite3"))
    key = admin_key(store)
    clock = Clock()
    clock.advance(1000.0)
    table = SessionTable(store, SynchronousRunner().run, clock)
    sessions = []
    table.create(key.key_id).addCallback(sessions.append)
    [session] = sessions
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert session.session_id.encode() not in data
    assert session.csrf_token.encode() not in data
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        assert db.execute("SELECT id_hash FROM sessions").fetchall() == [(session_hash(session.session_id),)]


class MigrationTests(SynchronousTestCase):
    """The one step that adds the sessions table and the keys' rate limits, from the schema before it."""

    def check(self, store: Any) -> None:
        (old,) = store.list_keys()
        assert (old.key_id, str(old.daily_usd), old.requests_per_minute, old.tokens_per_minute) == ("key_old", "2.5", None, None)
        store.update_key(attrs.evolve(old, requests_per_minute=5, tokens_per_minute=900))
        (again,) = store.list_keys()
        assert (again.requests_per_minute, again.tokens_per_minute, str(again.daily_usd)) == (5, 900, "2.5")
        admin = admin_key(store)
        session = record(admin.key_id)
        store.add_session(session)
        assert store.find_session(session.id_hash, 200.0) == session

    def test_sqlite(self) -> None:
        from dd0c_route.ledger.sqlite import _MIGRATIONS, SCHEMA_VERSION
        from dd0c_route.ledger.sqlite_rollup import register_exact

        path = self.mktemp() + ".sqlite3"
        conn = sqlite3.connect(path)
        register_exact(conn)
        before = _step_adding_sessions(_MIGRATIONS)
        for step in _MIGRATIONS[:before]:
            for statement in step:
                statement(conn) if callable(statement) else conn.execute(statement)
        conn.execute("INSERT INTO keys (key_id, name, key_hash, created_at, daily_usd) VALUES ('key_old', 'old', 'h1', 1.0, '2.5')")
        conn.execute(f"PRAGMA user_version = {before}")
        conn.commit()
        conn.close()
        with SQLiteLedger(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            self.check(store)

    def test_postgres(self) -> None:
        import psycopg

        from dd0c_route.ledger.postgres import PostgresLedger
        from dd0c_route.ledger.postgres_schema import MIGRATIONS, SCHEMA_VERSION

        from .pg import create_database

        url = create_database(self)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE dd0c_schema (version integer NOT NULL)")
            before = _step_adding_sessions(MIGRATIONS)
            for step in MIGRATIONS[:before]:
                for statement in step:
                    conn.execute(statement)  # type: ignore[call-overload]
            conn.execute("INSERT INTO dd0c_schema (version) VALUES (%s)", (before,))
            conn.execute(
                "INSERT INTO keys (key_id, name, key_hash, created_at, daily_usd) VALUES ('key_old', 'old', 'h1', 1.0, 2.5)"
            )
        store = PostgresLedger(url, pool_size=1)
        self.addCleanup(store.close)
        assert store.schema_version == SCHEMA_VERSION
        self.check(store)


def _step_adding_sessions(migrations: Any) -> int:
    """The index of the migration step that made the sessions table (the schema before it is that version)."""
    return next(i for i, step in enumerate(migrations) if any("CREATE TABLE sessions" in str(s) for s in step))
