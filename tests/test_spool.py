"""
Tests for dd0c_route.ledger.spool and the writer's use of it: records past
the in-memory bound, or left at stop, go to an fsynced file and are
replayed exactly once when the store answers again.
"""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from typing import Any, Optional, Sequence

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from dd0c_route.ledger.interfaces import IUsageStore, LedgerUnavailable
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.spool import Spool
from dd0c_route.ledger.writer import UsageWriter
from dd0c_route.testing.doubles import InMemoryLedger, SynchronousRunner

from .test_ledger import make_record


@implementer(IUsageStore)
class SwitchableStore:
    """An in-memory store that can be taken down and brought back."""

    def __init__(self) -> None:
        self.ledger = InMemoryLedger()
        self.down = False
        self.available = True

    def write_records(self, records: Sequence[UsageRecord]) -> None:
        if self.down:
            self.available = False
            raise LedgerUnavailable("down for the test")
        self.available = True
        self.ledger.write_records(records)

    def read_records(self, since: Optional[float] = None) -> Any:
        return self.ledger.read_records(since)


class SpoolTests(SynchronousTestCase):
    """The file itself."""

    def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(), "ledger.spool")

    def test_round_trip_and_count_survive_reopen(self) -> None:
        """Appended records read back equal (exact money) and a new Spool counts them."""
        records = [make_record(1, cost_usd=Decimal("0.000000000123")), make_record(2, cost_usd=None)]
        spool = Spool(self.path)
        spool.append(records)
        assert spool.count == 2
        again = Spool(self.path)
        assert again.count == 2 and again.read() == records

    def test_torn_line_is_skipped_and_next_append_is_whole(self) -> None:
        """A crash mid-line loses that line only; the next append starts on a fresh line."""
        Spool(self.path).append([make_record(1)])
        with open(self.path, "a") as f:
            f.write('{"request_id": "req-torn", "cost')
        spool = Spool(self.path)
        spool.append([make_record(2)])
        assert [r.request_id for r in spool.read()] == ["req-1", "req-2"]
        self.flushLoggedErrors()

    def test_replay_writes_then_clears(self) -> None:
        """replay() stores every record and empties the file; a failing store keeps it."""
        spool = Spool(self.path)
        spool.append([make_record(i) for i in range(5)])
        store = SwitchableStore()
        store.down = True
        self.assertRaises(LedgerUnavailable, spool.replay, store, 2)
        assert spool.count == 5
        store.down = False
        assert spool.replay(store, 2) == 5
        assert spool.count == 0 and Spool(self.path).count == 0
        assert len(store.read_records()) == 5


class WriterSpoolTests(SynchronousTestCase):
    """The writer with a spool, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = os.path.join(tempfile.mkdtemp(), "ledger.spool")
        self.store = SwitchableStore()

    def writer(self, **kw: Any) -> UsageWriter:
        writer = UsageWriter(self.store, self.clock, SynchronousRunner(), spool=Spool(self.path), **kw)
        writer.startService()
        return writer

    def test_queue_bounded_then_spooled_then_replayed_once(self) -> None:
        """Down: records queue up to max_queued, then spool; back up: each is stored exactly once."""
        writer = self.writer(max_queued=5, batch_size=2)
        self.store.down = True
        for i in range(4):
            writer.submit(make_record(i))
        self.clock.advance(0.2)
        assert writer.pending == 4 and writer.spooled == 0
        assert writer.health() == {"queued": 4, "spooled": 0, "store": "down"}
        for i in range(4, 8):
            writer.submit(make_record(i))
        self.clock.pump([0.5] * 4)
        assert writer.pending == 0 and writer.spooled == 8
        self.store.down = False
        self.clock.pump([1.0] * 6)
        assert writer.health() == {"queued": 0, "spooled": 0, "store": "up"}
        ids = [r.request_id for r in self.store.read_records()]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(8))
        self.flushLoggedErrors(LedgerUnavailable)

    def test_stop_while_down_spools_and_next_start_replays(self) -> None:
        """Stopping with the store down writes the queue to the spool; the next writer replays it."""
        writer = self.writer(max_queued=1000)
        self.store.down = True
        for i in range(3):
            writer.submit(make_record(i))
        d = writer.stop()
        self.clock.pump([0.5] * 4)
        self.successResultOf(d)
        assert writer.pending == 0 and Spool(self.path).count == 3
        self.store.down = False
        self.writer()
        self.clock.advance(0)
        assert [r.request_id for r in self.store.read_records()] == ["req-0", "req-1", "req-2"]
        assert Spool(self.path).count == 0
        self.flushLoggedErrors(LedgerUnavailable)
