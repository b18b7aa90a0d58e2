"""
Tests for dd0c_route.ledger: the stores (SQLite and the in-memory fake,
through one contract), the usage writer and the thread runner.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
from decimal import Decimal
from typing import Any, Optional, Sequence

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.application.service import MultiService
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from dd0c_route.ledger.interfaces import (
    IKeyStore,
    IThreadRunner,
    IUsageStore,
    KeyInfo,
    KeyNameTaken,
)
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.runner import ThreadPoolRunner
from dd0c_route.ledger.sqlite import (
    _USAGE_COLUMNS,
    SCHEMA_VERSION,
    LedgerSchemaError,
    SQLiteLedger,
)
from dd0c_route.ledger.summary import by_key, by_model, summarize
from dd0c_route.ledger.writer import UsageWriter
from dd0c_route.testing.doubles import (
    DeferredRunner,
    FlakyUsageStore,
    InMemoryLedger,
    SynchronousRunner,
)

from .pg import create_database


def make_record(n: int, **kw: Any) -> UsageRecord:
    """A plausible record numbered C{n}."""
    values: dict[str, Any] = dict(
        request_id=f"req-{n}",
        response_id=f"chatcmpl-{n}",
        key_id="key_000000000001",
        provider="openai",
        model_requested="gpt-4o-mini",
        model="gpt-4o-mini-2024-07-18",
        prompt_tokens=10 + n,
        completion_tokens=5,
        cost_usd=Decimal("0.000012345"),
        status=200,
        stream=True,
        latency_ms=12.5,
        ttfb_ms=3.25,
        created_at=1_700_000_000.0 + n,
    )
    values.update(kw)
    return UsageRecord(**values)


def make_key(name: str, created_at: float, team: Optional[str] = None) -> tuple[str, KeyInfo]:
    """A fresh key and its stored form."""
    key = generate_key()
    return key, KeyInfo(
        key_id=new_key_id(), name=name, key_hash=hash_key(key), created_at=created_at, team=team
    )


class LedgerContractMixin:
    """
    The behaviour every IUsageStore + IKeyStore must have; mixed into one
    test case per implementation.
    """

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_interfaces(self) -> None:
        """The store fully provides both IUsageStore and IKeyStore."""
        assert verifyObject(IUsageStore, self.store)
        assert verifyObject(IKeyStore, self.store)

    def test_records_round_trip_in_order(self) -> None:
        """Written records read back equal, oldest first, across batches."""
        first = [make_record(i) for i in range(3)]
        second = [make_record(i) for i in range(3, 5)]
        self.store.write_records(first)
        self.store.write_records(second)
        assert list(self.store.read_records()) == first + second

    def test_exact_money_and_optional_fields(self) -> None:
        """Decimal costs come back exact, None stays None, bools stay bools."""
        records = [
            make_record(1, cost_usd=Decimal("0.000000123456789012345"), stream=False),
            make_record(2, cost_usd=None, cost_requested_usd=Decimal("1E-9"), disconnected=True,
                        ttfb_ms=None, prompt_tokens=None, tokens_counted_locally="prompt,completion"),
        ]
        self.store.write_records(records)
        back = list(self.store.read_records())
        assert back == records
        assert isinstance(back[0].cost_usd, Decimal)
        assert back[1].disconnected is True and back[0].stream is False

    def test_empty_batch(self) -> None:
        """Writing no records is a no-op."""
        self.store.write_records([])
        assert list(self.store.read_records()) == []

    def test_write_is_idempotent_by_request_id(self) -> None:
        """A batch written twice (a retry) is stored once."""
        batch = [make_record(1), make_record(2)]
        self.store.write_records(batch)
        self.store.write_records([*batch, make_record(3)])
        assert [r.request_id for r in self.store.read_records()] == ["req-1", "req-2", "req-3"]

    def test_read_since(self) -> None:
        """read_records(since) returns only records created at or after it."""
        self.store.write_records([make_record(i) for i in range(5)])
        assert [r.request_id for r in self.store.read_records(since=1_700_000_003.0)] == [
            "req-3",
            "req-4",
        ]

    def test_keys_found_by_hash(self) -> None:
        """A stored key is found by its hash; an unknown hash finds nothing."""
        key, info = make_key("ci", 10.0, team="platform")
        self.store.add_key(info)
        assert self.store.find_by_hash(hash_key(key)) == info
        assert self.store.find_by_hash(hash_key(generate_key())) is None

    def test_list_keys_oldest_first(self) -> None:
        """list_keys returns every key, oldest first."""
        infos = [make_key(name, t)[1] for name, t in [("b", 2.0), ("a", 1.0), ("c", 3.0)]]
        for info in infos:
            self.store.add_key(info)
        assert [k.name for k in self.store.list_keys()] == ["a", "b", "c"]

    def test_active_names_are_unique(self) -> None:
        """A second active key with a taken name is refused with KeyNameTaken."""
        self.store.add_key(make_key("ci", 1.0)[1])
        try:
            self.store.add_key(make_key("ci", 2.0)[1])
        except KeyNameTaken:
            pass
        else:
            raise AssertionError("KeyNameTaken not raised")
        assert len(self.store.list_keys()) == 1

    def test_revoked_name_can_be_reused(self) -> None:
        """After revoking a key its name may be given to a new key."""
        self.store.add_key(make_key("ci", 1.0)[1])
        self.store.revoke("ci", 5.0)
        self.store.add_key(make_key("ci", 6.0)[1])
        assert [k.active for k in self.store.list_keys()] == [False, True]

    def test_revoke_by_id(self) -> None:
        """Revoking by id stamps revoked_at, and find_by_hash shows it."""
        key, info = make_key("ci", 1.0)
        self.store.add_key(info)
        revoked = self.store.revoke(info.key_id, 42.0)
        assert revoked == attrs.evolve(info, revoked_at=42.0)
        assert self.store.find_by_hash(hash_key(key)) == revoked
        assert revoked is not None and not revoked.active

    def test_revoke_by_name_prefers_active(self) -> None:
        """Revoking by name revokes the active key of that name."""
        self.store.add_key(make_key("ci", 1.0)[1])
        self.store.revoke("ci", 2.0)
        _, current = make_key("ci", 3.0)
        self.store.add_key(current)
        revoked = self.store.revoke("ci", 4.0)
        assert revoked is not None and revoked.key_id == current.key_id
        assert revoked.revoked_at == 4.0

    def test_revoke_twice_keeps_first_time(self) -> None:
        """Revoking a revoked key changes nothing and returns it."""
        _, info = make_key("ci", 1.0)
        self.store.add_key(info)
        self.store.revoke(info.key_id, 2.0)
        again = self.store.revoke(info.key_id, 9.0)
        assert again is not None and again.revoked_at == 2.0

    def test_revoke_unknown(self) -> None:
        """Revoking a key that does not exist returns None."""
        assert self.store.revoke("nope", 1.0) is None


class SQLiteContractTests(LedgerContractMixin, SynchronousTestCase):
    """The contract, against SQLiteLedger on a temporary file."""

    def make_store(self) -> SQLiteLedger:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        store = SQLiteLedger(os.path.join(directory, "ledger.sqlite3"))
        self.addCleanup(store.close)
        return store


class PostgresContractTests(LedgerContractMixin, SynchronousTestCase):
    """The same contract, against PostgresLedger on a database of its own."""

    def make_store(self) -> PostgresLedger:
        store = PostgresLedger(create_database(self), pool_size=2)
        self.addCleanup(store.close)
        return store


class InMemoryContractTests(LedgerContractMixin, SynchronousTestCase):
    """The same contract, against the InMemoryLedger fake."""

    def make_store(self) -> InMemoryLedger:
        return InMemoryLedger()


_text = st.text(max_size=20)
_opt_text = st.none() | _text
_opt_int = st.none() | st.integers(0, 2**62)
_money = st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=12, min_value=-10**6, max_value=10**6)
_float = st.floats(allow_nan=False, allow_infinity=False)

records_strategy = st.builds(
    UsageRecord,
    request_id=_text,
    response_id=_opt_text,
    key_id=_opt_text,
    team=_opt_text,
    provider=_opt_text,
    model_requested=_opt_text,
    model=_opt_text,
    endpoint=_text,
    prompt_tokens=_opt_int,
    completion_tokens=_opt_int,
    cached_tokens=_opt_int,
    cache_creation_tokens=_opt_int,
    tokens_counted_locally=_text,
    cost_usd=_money,
    status=st.integers(0, 599),
    stream=st.booleans(),
    disconnected=st.booleans(),
    ttfb_ms=st.none() | _float,
    latency_ms=_float,
    error_type=_opt_text,
    created_at=_float,
    route_rule=_opt_text,
    complexity=_opt_text,
    cost_requested_usd=_money,
)


class SQLiteLedgerTests(SynchronousTestCase):
    """Behaviour specific to the SQLite file."""

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "ledger.sqlite3")

    def open(self) -> SQLiteLedger:
        store = SQLiteLedger(self.path)
        self.addCleanup(store.close)
        return store

    def test_columns_cover_every_record_field(self) -> None:
        """The usage table has a column for each UsageRecord field, in order."""
        assert [name for name, _ in _USAGE_COLUMNS] == [f.name for f in attrs.fields(UsageRecord)]

    @settings(max_examples=200, deadline=None)
    @given(records=st.lists(records_strategy, max_size=5, unique_by=lambda r: r.request_id))
    def test_any_record_round_trips(self, records: list[UsageRecord]) -> None:
        """Any record (unicode, huge ints, exact decimals, floats) reads back equal."""
        with SQLiteLedger(":memory:") as store:
            store.write_records(records)
            assert store.read_records() == records

    @settings(max_examples=80, deadline=None)
    @given(
        records=st.lists(records_strategy, max_size=160),
        ids=st.lists(st.integers(0, 60), min_size=160, max_size=160),
        cuts=st.lists(st.integers(0, 160), max_size=4),
    )
    def test_batches_insert_as_row_by_row(self, records: list[UsageRecord], ids: list[int], cuts: list[int]) -> None:
        """
        Batches of any size (sent as multi-row statements, issue #18) store
        what inserting row by row stored: every new request id once, in
        order, a repeated one (in the batch or before it) skipped.
        """
        records = [attrs.evolve(r, request_id=f"req-{i}") for r, i in zip(records, ids, strict=False)]
        with SQLiteLedger(":memory:") as store:
            bounds = sorted({0, len(records), *(c for c in cuts if c <= len(records))})
            for start, end in itertools.pairwise(bounds):
                store.write_records(records[start:end])
            expected, seen = [], set()
            for r in records:
                if r.request_id not in seen:
                    seen.add(r.request_id)
                    expected.append(r)
            assert store.read_records() == expected

    def test_wal_and_synchronous_normal(self) -> None:
        """The file is in WAL mode with synchronous=NORMAL."""
        store = self.open()
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1

    def test_schema_version_set_once(self) -> None:
        """A new file gets the current schema version; reopening keeps the data."""
        store = self.open()
        assert store.schema_version == SCHEMA_VERSION >= 1
        store.write_records([make_record(1)])
        store.close()
        assert self.open().read_records() == [make_record(1)]

    def test_newer_schema_refused(self) -> None:
        """A file from a newer dd0c-route is refused with a message saying so."""
        self.open().close()
        conn = sqlite3.connect(self.path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with self.assertRaises(LedgerSchemaError) as caught:
            SQLiteLedger(self.path)
        assert "upgrade dd0c-route" in str(caught.exception)

    def test_batch_is_atomic(self) -> None:
        """If one record of a batch cannot be stored, none of the batch is."""
        store = self.open()
        with self.assertRaises(OverflowError):
            store.write_records([make_record(1), make_record(2, prompt_tokens=2**80)])
        assert store.read_records() == []

    def test_other_connection_sees_writes(self) -> None:
        """A second process-like connection (the CLI) reads committed records."""
        self.open().write_records([make_record(1)])
        assert self.open().read_records() == [make_record(1)]


class SummaryTests(SynchronousTestCase):
    """Totals per model and per key."""

    def test_groups_and_unpriced(self) -> None:
        """Requests, tokens and exact costs add up per group; unknown costs are counted apart."""
        records = [
            make_record(1, model="a", key_id="k1", cost_usd=Decimal("0.1")),
            make_record(2, model="b", key_id="k1", cost_usd=Decimal("0.2")),
            make_record(3, model="a", key_id="k2", cost_usd=None),
        ]
        models = {t.group: t for t in summarize(records, by_model)}
        assert models["a"].requests == 2 and models["a"].unpriced == 1
        assert models["a"].cost_usd == Decimal("0.1")
        keys = {t.group: t for t in summarize(records, by_key)}
        assert keys["k1"].cost_usd == Decimal("0.3")
        (total,) = summarize(records)
        assert total.prompt_tokens == 11 + 12 + 13 and total.total_tokens == 36 + 15


class RecordingStore:
    """An IUsageStore wrapper that notes each batch and its thread."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.batches: list[list[str]] = []
        self.threads: list[threading.Thread] = []

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        self.threads.append(threading.current_thread())
        self.batches.append([r.request_id for r in records])
        self.store.write_records(records)

    def read_records(self, since: Optional[float] = None) -> Any:
        return self.store.read_records(since)


implementer(IUsageStore)(RecordingStore)


class UsageWriterTests(SynchronousTestCase):
    """The writer's batching, ordering, retry and shutdown, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.ledger = InMemoryLedger()
        self.store = RecordingStore(self.ledger)
        self.runner = SynchronousRunner()

    def make_writer(self, store: Any = None, runner: Any = None, **kw: Any) -> UsageWriter:
        writer = UsageWriter(store or self.store, self.clock, runner or self.runner, **kw)
        writer.startService()
        return writer

    def assertNoTimers(self) -> None:
        assert self.clock.getDelayedCalls() == []

    def test_doubles_provide_interfaces(self) -> None:
        """The runner doubles and the real runner provide IThreadRunner."""
        for runner in (SynchronousRunner(), DeferredRunner(), ThreadPoolRunner(self.clock)):  # type: ignore[arg-type]
            assert verifyObject(IThreadRunner, runner)
        assert verifyObject(IUsageStore, FlakyUsageStore(self.ledger))

    def test_submit_does_not_write(self) -> None:
        """submit only queues: the store is not called until the flush interval passes."""
        writer = self.make_writer()
        writer.submit(make_record(1))
        assert self.store.batches == [] and writer.pending == 1
        self.clock.advance(0.19)
        assert self.store.batches == []
        self.clock.advance(0.01)
        assert self.store.batches == [["req-1"]] and writer.pending == 0
        self.assertNoTimers()

    def test_idle_writer_has_no_timer(self) -> None:
        """No timer runs while nothing is queued."""
        self.make_writer()
        self.assertNoTimers()

    def test_batches_in_order(self) -> None:
        """Queued records are written in submission order, in batches of batch_size."""
        writer = self.make_writer(batch_size=3)
        for i in range(2):
            writer.submit(make_record(i))
        self.clock.advance(0.2)
        for i in range(2, 9):
            writer.submit(make_record(i))
        self.clock.advance(0)
        assert self.store.batches == [
            ["req-0", "req-1"],
            ["req-2", "req-3", "req-4"],
            ["req-5", "req-6", "req-7"],
            ["req-8"],
        ]
        assert [r.request_id for r in self.ledger.read_records()] == [f"req-{i}" for i in range(9)]
        self.assertNoTimers()

    def test_full_batch_flushes_at_once(self) -> None:
        """Reaching batch_size writes on the next reactor turn, not after the interval."""
        writer = self.make_writer(batch_size=2)
        writer.submit(make_record(1))
        writer.submit(make_record(2))
        self.clock.advance(0)
        assert self.store.batches == [["req-1", "req-2"]]

    def test_partial_batches_wait_for_the_interval(self) -> None:
        """
        Records that arrive while a batch is being written wait for the next
        flush interval, unless they fill a batch: under load the writer
        writes one batch per interval, not one per thread round trip.
        """
        runner = DeferredRunner()
        writer = self.make_writer(runner=runner, batch_size=3)
        writer.submit(make_record(1))
        self.clock.advance(0.2)
        writer.submit(make_record(2))
        writer.submit(make_record(3))
        runner.release()
        assert self.store.batches == [["req-1"]] and runner.pending == []
        self.clock.advance(0.19)
        assert runner.pending == []
        self.clock.advance(0.01)
        runner.release()
        assert self.store.batches == [["req-1"], ["req-2", "req-3"]]
        assert writer.pending == 0
        self.assertNoTimers()

    def test_flush_during_a_write_is_not_delayed(self) -> None:
        """A flush() asked for while a batch is in flight is served right after it, not an interval later."""
        runner = DeferredRunner()
        writer = self.make_writer(runner=runner, batch_size=10)
        writer.submit(make_record(1))
        self.clock.advance(0.2)
        writer.submit(make_record(2))
        flushed = writer.flush()
        runner.release()
        runner.release()
        assert self.store.batches == [["req-1"], ["req-2"]]
        assert self.successResultOf(flushed) is None
        self.assertNoTimers()

    def test_one_write_at_a_time(self) -> None:
        """While a batch is in flight no second write starts; later records follow it."""
        runner = DeferredRunner()
        writer = self.make_writer(runner=runner, batch_size=2)
        writer.submit(make_record(1))
        self.clock.advance(0.2)
        writer.submit(make_record(2))
        writer.submit(make_record(3))
        self.clock.advance(1)
        assert len(runner.pending) == 1
        runner.release()
        assert len(runner.pending) == 1
        runner.release()
        assert self.store.batches == [["req-1"], ["req-2", "req-3"]]
        assert writer.pending == 0

    def test_failed_batch_is_retried_first(self) -> None:
        """A failed batch is logged, kept, and retried ahead of newer records."""
        store = FlakyUsageStore(self.ledger, failures=2)
        writer = self.make_writer(store=store, batch_size=2)
        with capturedLogs() as events:
            writer.submit(make_record(1))
            self.clock.advance(0.2)
            writer.submit(make_record(2))
            writer.submit(make_record(3))
            assert writer.pending == 3
            self.clock.advance(0.2)
            self.clock.advance(0.4)
        assert store.attempts == [("req-1",), ("req-1", "req-2"), ("req-1", "req-2"), ("req-3",)]
        assert [r.request_id for r in self.ledger.read_records()] == ["req-1", "req-2", "req-3"]
        failures = [e for e in events if "log_failure" in e]
        assert len(failures) == 2 and failures[0]["log_level"] == LogLevel.critical
        assert len(self.flushLoggedErrors(OSError)) == 2
        self.assertNoTimers()

    def test_flush(self) -> None:
        """flush() writes everything queued now and fires when it is committed."""
        writer = self.make_writer()
        writer.submit(make_record(1))
        d = writer.flush()
        assert self.successResultOf(d) is None
        assert self.store.batches == [["req-1"]]
        assert self.successResultOf(writer.flush()) is None
        self.assertNoTimers()

    def test_flush_failure_keeps_records(self) -> None:
        """A failing flush() fails its Deferred and keeps the records for the retry."""
        store = FlakyUsageStore(self.ledger, failures=1)
        writer = self.make_writer(store=store)
        writer.submit(make_record(1))
        self.failureResultOf(writer.flush(), OSError)
        self.flushLoggedErrors(OSError)
        assert writer.pending == 1
        self.clock.advance(0.2)
        assert writer.pending == 0 and len(self.ledger.read_records()) == 1

    def test_stop_flushes_then_stops_runner(self) -> None:
        """stopService writes every queued record before stopping the thread."""
        runner = DeferredRunner()
        parent = MultiService()
        writer = UsageWriter(self.store, self.clock, runner)
        writer.setServiceParent(parent)
        parent.startService()
        assert runner.started
        for i in range(3):
            writer.submit(make_record(i))
        d = parent.stopService()
        self.assertNoResult(d)
        assert not runner.stopped
        runner.release()
        self.successResultOf(d)
        assert runner.stopped and writer.pending == 0
        assert len(self.ledger.read_records()) == 3
        self.assertNoTimers()

    def test_stop_retries_failures(self) -> None:
        """On stop, a failing store is retried (with back-off) until it succeeds."""
        store = FlakyUsageStore(self.ledger, failures=3)
        writer = self.make_writer(store=store)
        writer.submit(make_record(1))
        d = writer.stop()
        self.assertNoResult(d)
        self.clock.pump([0.2, 0.4, 0.8])
        self.successResultOf(d)
        assert len(self.ledger.read_records()) == 1 and self.runner.stopped
        self.flushLoggedErrors(OSError)
        self.assertNoTimers()

    def test_stop_gives_up_into_the_log(self) -> None:
        """A store failing past stop_timeout: stop still ends, and the records are in the log."""
        store = FlakyUsageStore(self.ledger, failures=10**6)
        writer = self.make_writer(store=store, stop_timeout=3.0)
        writer.submit(make_record(1))
        with capturedLogs() as events:
            d = writer.stop()
            self.clock.pump([1.0] * 10)
        self.successResultOf(d)
        assert self.runner.stopped and writer.pending == 1
        (given_up,) = [e for e in events if "records" in e]
        assert given_up["records"][0]["request_id"] == "req-1"
        assert given_up["records"][0]["cost_usd"] == "0.000012345"
        self.flushLoggedErrors(OSError)
        self.assertNoTimers()

    def test_stop_is_idempotent(self) -> None:
        """Calling stop twice gives two Deferreds that both fire."""
        writer = self.make_writer()
        first, second = writer.stop(), writer.stop()
        self.successResultOf(first)
        self.successResultOf(second)
        self.successResultOf(writer.stop())

    def test_backlog_warning_once_records_kept(self) -> None:
        """Past warn_pending records a warning is logged once, and nothing is dropped."""
        runner = DeferredRunner()
        writer = self.make_writer(runner=runner, warn_pending=3, batch_size=100)
        with capturedLogs() as events:
            for i in range(10):
                writer.submit(make_record(i))
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        assert len(warnings) == 1 and warnings[0]["pending"] == 4
        assert writer.pending == 10
        self.clock.advance(0.2)
        runner.release()
        assert len(self.ledger.read_records()) == 10

    def test_submit_after_stop_is_kept_and_logged(self) -> None:
        """A record submitted after stop stays queued and an error is logged once."""
        writer = self.make_writer()
        self.successResultOf(writer.stop())
        with capturedLogs() as events:
            writer.submit(make_record(1))
            writer.submit(make_record(2))
        assert writer.pending == 2
        assert len([e for e in events if e.get("log_level") == LogLevel.error]) == 1
        self.assertNoTimers()

    def test_rejects_bad_batch_size(self) -> None:
        """A batch size below 1 is refused with a message naming it."""
        with self.assertRaises(ValueError) as caught:
            UsageWriter(self.store, self.clock, self.runner, batch_size=0)
        assert "batch_size" in str(caught.exception)


class UsageWriterThreadTests(TestCase):
    """The writer with a real thread and a real SQLite file."""

    def test_writes_off_the_reactor_thread(self) -> Deferred[None]:
        """Every store call runs in one dedicated thread that is not the reactor's."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        ledger = SQLiteLedger(os.path.join(directory, "ledger.sqlite3"))
        self.addCleanup(ledger.close)
        store = RecordingStore(ledger)
        writer = UsageWriter(store, global_reactor, ThreadPoolRunner(global_reactor), batch_size=7)  # type: ignore[arg-type]
        writer.startService()
        self.addCleanup(writer.stopService)
        main = threading.current_thread()
        for i in range(20):
            writer.submit(make_record(i))

        def flushed(_: object) -> Deferred[None]:
            assert len(store.batches) >= 3
            assert {t.ident for t in store.threads} == {store.threads[0].ident}
            assert store.threads[0] is not main
            for i in range(20, 25):
                writer.submit(make_record(i))
            return writer.stopService()

        def stopped(_: object) -> None:
            assert [r.request_id for r in ledger.read_records()] == [f"req-{i}" for i in range(25)]

        return writer.flush().addCallback(flushed).addCallback(stopped)
