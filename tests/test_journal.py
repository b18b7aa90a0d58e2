"""
The journal (ledger/journal.py): records reach the file at the next reactor
iteration, segments go once their records are durable, and a new run
replays what an earlier one left -- through the writer, exactly once.
"""

from __future__ import annotations

import glob
import os
import tempfile
from decimal import Decimal

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.ledger import journal as journal_module
from dd0c_route.ledger.journal import Journal
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.writer import UsageWriter
from dd0c_route.testing.doubles import InMemoryLedger, SynchronousRunner


def record(n: int) -> UsageRecord:
    return UsageRecord(request_id=f"req_{n}", model="gpt-4o", prompt_tokens=n, completion_tokens=1,
                       cost_usd=Decimal("0.000123"), status=200, created_at=1000.0 + n)


class JournalTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="dd0c-journal-")
        self.path = os.path.join(self.dir, "ledger.journal")
        self.clock = Clock()

    def files(self):
        return sorted(glob.glob(self.path + ".*"))

    def test_rows_reach_the_file_at_the_next_iteration_in_one_write(self):
        journal = Journal(self.path, self.clock)
        writes = []
        real_write = os.write
        self.patch(journal_module.os, "write", lambda fd, data: writes.append(len(data)) or real_write(fd, data))
        for n in range(5):
            journal.append(record(n))
        self.assertEqual(self.files(), [], "nothing written before the iteration ends")
        self.clock.advance(0)
        self.assertEqual(len(writes), 2, "one write for the segment header, one for the turn's five rows")
        (path,) = self.files()
        with open(path) as f:
            self.assertEqual(len(f.read().splitlines()), 1 + 5)

    def test_a_killed_run_is_replayed_by_the_next(self):
        first = Journal(self.path, self.clock)
        for n in range(3):
            first.append(record(n))
        self.clock.advance(0)
        # kill -9: no close, no commit.  The next run:
        second = Journal(self.path, Clock())
        self.assertEqual([r.request_id for r in second.replay()], ["req_0", "req_1", "req_2"])
        self.assertEqual(second.replay()[0].cost_usd, Decimal("0.000123"))
        second.replayed()
        self.assertEqual(self.files(), [])

    def test_segments_go_once_their_records_are_durable(self):
        journal = Journal(self.path, self.clock)
        journal.append(record(1))
        journal.append(record(2))
        self.clock.advance(0)
        journal.committed(1)
        self.assertEqual(len(self.files()), 1, "one record is not durable yet")
        journal.committed(1)
        self.assertEqual(self.files(), [])

    def test_a_torn_line_is_skipped(self):
        journal = Journal(self.path, self.clock)
        journal.append(record(1))
        self.clock.advance(0)
        with open(self.files()[0], "a") as f:
            f.write('["req_torn", nul')
        self.assertEqual([r.request_id for r in Journal(self.path, Clock()).replay()], ["req_1"])

    def test_writer_replays_at_start_into_the_store_exactly_once(self):
        store = InMemoryLedger()
        store.write_records([record(0)])  # stored before the kill, still journaled
        killed = UsageWriter(store, self.clock, SynchronousRunner(), journal=Journal(self.path, self.clock))
        killed.startService()
        for n in range(4):
            killed.submit(record(n))
        self.clock.advance(0)  # the journal write; the 0.2 s store flush never comes
        writer = UsageWriter(store, self.clock, SynchronousRunner(), journal=Journal(self.path, self.clock))
        writer.startService()
        self.clock.advance(0)
        self.successResultOf(writer.flush())
        self.assertEqual(sorted(r.request_id for r in store.read_records()), ["req_0", "req_1", "req_2", "req_3"])
        self.assertEqual(self.files(), [], "replayed segments are deleted once stored")
        writer.submit(record(9))
        self.successResultOf(writer.flush())
        self.clock.advance(0)
        self.assertEqual(self.files(), [])
        self.successResultOf(writer.stop())
