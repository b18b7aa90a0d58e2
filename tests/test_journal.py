"""
The journal (ledger/journal.py): records reach the file at the next reactor
iteration, segments go once their records are durable, and a new run
replays what an earlier one left -- through the writer, exactly once.
"""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
from decimal import Decimal

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.ledger import journal as journal_module
from dd0c_route.ledger.journal import Journal
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.writer import UsageWriter
from dd0c_route.testing.doubles import DeferredRunner, InMemoryLedger, SynchronousRunner


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


    def test_durable_segments_are_deleted_through_remove(self):
        """
        With ``remove`` (the proxy passes the ledger thread's runner), the
        journal hands it the durable segments instead of deleting them on
        the reactor; they go when it runs.
        """
        runner = DeferredRunner()
        journal = Journal(self.path, self.clock, remove=lambda paths: runner.run(journal_module.remove_files, paths))
        journal.append(record(1))
        self.clock.advance(0)
        (segment,) = self.files()
        journal.committed(1)
        self.assertEqual(self.files(), [segment], "not deleted on the reactor")
        self.assertEqual([args for _, args, _, _ in runner.pending], [([segment],)])
        runner.release()
        self.assertEqual(self.files(), [])

    def test_segments_that_cannot_be_deleted_are_logged(self):
        """A segment remove_files could not delete is named in a warning (a restart replays it, harmlessly)."""
        journal = Journal(self.path, self.clock, remove=lambda paths: list(paths))
        journal.append(record(1))
        self.clock.advance(0)
        with capturedLogs() as events:
            journal.committed(1)
        self.assertEqual([e["paths"] for e in events if "paths" in e], [self.files()])


# -- the line format: orjson, with json where orjson would differ (issue #18) --

_any_text = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "é€😀", "\x00\n\"\\", "null"])
_any_int = st.none() | st.integers(0, 2**62) | st.integers(-(2**70), 2**70) | st.sampled_from([2**63, 2**64, -(2**63) - 1])
_any_float = st.floats() | st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, 1e16, 0.1])
_any_money = st.none() | st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(places=12, min_value=-1, max_value=1)
_opt = st.none()

any_record = st.builds(
    UsageRecord,
    request_id=_any_text,
    response_id=_opt | _any_text,
    key_id=_opt | _any_text,
    team=_opt | _any_text,
    model=_opt | _any_text,
    endpoint=_any_text,
    prompt_tokens=_any_int,
    completion_tokens=_any_int,
    cached_tokens=_any_int,
    reasoning_tokens=_any_int,
    cost_usd=_any_money,
    cost_shadow_usd=_any_money,
    status=st.integers(0, 599),
    stream=st.booleans(),
    tools=_opt | st.booleans(),
    ttfb_ms=_opt | _any_float,
    latency_ms=_any_float,
    created_at=_any_float | st.integers(0, 2**40),
    attempts=_opt | _any_text,
)


def _same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN and -0.0 told from 0.0 (what a replay must keep)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


class LineFormatTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(record=any_record)
    def test_line_reads_back_as_the_json_row(self, record: UsageRecord) -> None:
        """
        Any record's journal line parses (as the replay parses it) to exactly
        the row ``json.dumps`` wrote before: the same values, of the same
        types, NaN, huge integers and lone surrogates included.
        """
        line = journal_module._line(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        ours = json.loads(line.decode("utf-8", errors="replace"))
        before = json.loads(json.dumps(journal_module._row(record), separators=(",", ":")))
        assert len(ours) == len(before)
        assert all(_same(a, b) for a, b in zip(ours, before, strict=True)), (ours, before)

    @settings(max_examples=100, deadline=None)
    @given(records=st.lists(any_record, min_size=1, max_size=6))
    def test_a_batch_replays_to_the_same_records(self, records: list[UsageRecord]) -> None:
        """Records journaled in one iteration's write come back from the replay equal, in order."""
        path = os.path.join(tempfile.mkdtemp(prefix="dd0c-journal-"), "ledger.journal")
        clock = Clock()
        journal = Journal(path, clock)
        for r in records:
            journal.append(r)
        clock.advance(0)
        replayed = Journal(path, Clock()).replay()
        assert len(replayed) == len(records)
        for got, sent in zip(replayed, records, strict=True):
            for field in attrs.fields(UsageRecord):
                assert _same(getattr(got, field.name), getattr(sent, field.name)), field.name

    def test_plain_records_are_written_by_orjson(self) -> None:
        """The common record takes the fast path (and a NaN one does not)."""
        calls = []
        real = journal_module.orjson.dumps
        self.patch(journal_module.orjson, "dumps", lambda *a, **kw: calls.append(1) or real(*a, **kw))
        journal_module._line(record(1))
        assert calls == [1]
        journal_module._line(attrs.evolve(record(1), latency_ms=float("nan")))
        assert calls == [1]
