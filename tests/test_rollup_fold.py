"""
The SQLite rollup folded lazily past a watermark (ledger/sqlite_rollup.py
``fold_pending``, ``FoldSchedule``; ledger/sqlite.py ``write_records`` and
``fold_rollup``; ledger/sqlite_admin.py ``usage_summary``): writing only
inserts; a summary folds first, so it includes every committed record;
records written by two ledgers on one file -- in two processes, folding at
the same time -- are counted once; an interrupted fold changes nothing; the
writer folds on its own once enough records (of every process) are
pending; replays are not folded twice; the migration sets the watermark so that a rollup
the writers filled is not counted again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.ledger import sqlite as sqlite_module
from dd0c_route.ledger import sqlite_rollup
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.ledger.sqlite_rollup import FOLD_CHECK, FOLD_RECORDS, FoldSchedule

from .test_usage_rollup import DAY, HOUR, T0, answered, expected, seeded

ROOT = Path(__file__).resolve().parent.parent
GROUP_BYS = (("model",), ("hour", "key"), ("day", "route"), ("team",))
#: A month around the records, and ranges whose edges are read from the records.
RANGES = ((T0 - DAY, T0 + 5 * DAY), (T0 + 5 * HOUR + 1000.5, T0 + DAY + 7 * HOUR + 99), (T0 + 3 * HOUR + 5, T0 + 3 * HOUR + 3000))

#: Writes a range of ``seeded()`` in batches from its own process, folding after each.
_CHILD = """
import json, sys
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.ledger.sqlite_rollup import FoldSchedule
from tests.test_usage_rollup import seeded
path, lo, hi, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
records = seeded()
ledger = SQLiteLedger(path, fold_schedule=FoldSchedule(records=2**62))
print("ready", flush=True)
folded = 0
for i in range(lo, hi, step):
    ledger.write_records(records[i:i + step])
    folded += ledger.fold_rollup()
ledger.close()
print(json.dumps(folded))
"""


def never() -> FoldSchedule:
    """A schedule whose writer never folds on its own."""
    return FoldSchedule(records=2**62)


@attrs.define
class Snapshot:
    """The ledger's summary without the fold before it: what the rollup and the records hold now."""

    store: SQLiteLedger

    def usage_summary(self, start: float, end: float, group_by: tuple[str, ...]) -> Any:
        with self.store._lock:
            conn = self.store._conn
            conn.execute("BEGIN")
            try:
                return sqlite_rollup.summarize(conn, start, end, group_by)
            finally:
                conn.execute("COMMIT")


class FoldTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = tempfile.mkdtemp(prefix="dd0c-fold-") + "/ledger.sqlite3"

    def ledger(self, schedule: FoldSchedule | None = None) -> SQLiteLedger:
        store = SQLiteLedger(self.path, fold_schedule=never() if schedule is None else schedule)
        self.addCleanup(store.close)
        return store

    def check(self, store: SQLiteLedger, records: list[UsageRecord]) -> None:
        for start, end in RANGES:
            for group_by in GROUP_BYS:
                self.assertEqual(
                    answered(store, start, end, group_by), expected(records, start, end, group_by), (group_by, start, end)
                )

    def raw(self, store: SQLiteLedger, sql: str) -> list[tuple[Any, ...]]:
        with store._lock:
            return store._conn.execute(sql).fetchall()

    def state(self, store: SQLiteLedger) -> tuple[Any, ...]:
        """The watermark and every rollup row, as stored (nothing folded first)."""
        return (
            self.raw(store, "SELECT seq FROM usage_rollup_mark"),
            self.raw(store, "SELECT * FROM usage_rollup ORDER BY 1, 2, 3, 4, 5, 6, 7"),
        )

    def test_writing_does_not_fold(self) -> None:
        """write_records only inserts: the rollup stays empty and the watermark at 0 until something folds."""
        store = self.ledger()
        store.write_records(seeded(100))
        self.assertEqual(self.state(store), ([(0,)], []))
        self.assertEqual(len(store.read_records()), 100)

    def test_summary_right_after_writes_includes_them(self) -> None:
        """A summary folds first: each summary counts every record written before it, then nothing is pending."""
        store = self.ledger()
        records = seeded()
        store.write_records(records[:150])
        self.check(store, records[:150])
        store.write_records(records[150:])
        self.check(store, records)
        self.assertEqual(store.fold_rollup(), 0)

    def test_summary_reads_one_snapshot(self) -> None:
        """The summary's edges read only records the rollup it reads has folded: a record committed unfolded is in neither."""
        store = self.ledger()
        records = seeded()
        store.write_records(records[0::2])
        store.fold_rollup()
        store.write_records(records[1::2])  # the same hours, edges included
        snapshot = Snapshot(store)
        for start, end in RANGES:
            for group_by in GROUP_BYS:
                self.assertEqual(answered(snapshot, start, end, group_by), expected(records[0::2], start, end, group_by))

    def test_two_ledgers_on_one_file_count_each_record_once(self) -> None:
        """Two ledger objects on one file write overlapping batches; one summary counts every record once."""
        a, b = self.ledger(), self.ledger()
        records = seeded()
        a.write_records(records[:100])
        b.write_records(records[60:200])
        a.fold_rollup()
        b.write_records(records[200:300])
        a.write_records(records[250:])
        self.check(b, records)
        self.check(a, records)
        self.assertEqual((a.fold_rollup(), b.fold_rollup()), (0, 0))

    def test_two_processes_folding_at_once_count_each_record_once(self) -> None:
        """Two processes write and fold after every batch at the same time as this one: each record is folded exactly once."""
        store = self.ledger()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        children = [
            subprocess.Popen([sys.executable, "-c", _CHILD, self.path, str(lo), str(hi), "7"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for lo, hi in ((0, 140), (140, 280))
        ]
        for child in children:
            self.addCleanup(child.kill)
            assert child.stdout is not None
            self.assertEqual(child.stdout.readline(), "ready\n")
        records = seeded()
        folded = 0
        for i in range(280, len(records), 5):
            store.write_records(records[i:i + 5])
            folded += store.fold_rollup()
        for child in children:
            assert child.stdout is not None
            out = child.stdout.read()  # what readline buffered, too: communicate() would read past it
            child.stdout.close()
            self.assertEqual(child.wait(timeout=120), 0)
            folded += json.loads(out)
        folded += store.fold_rollup()
        self.assertEqual(folded, len(records))
        self.check(store, records)

    def test_interrupted_fold_changes_nothing(self) -> None:
        """An exception after part of the fold was upserted rolls all of it back: rollup and watermark as before; the next fold is exact."""
        store = self.ledger()
        records = seeded()
        store.write_records(records[:100])
        store.fold_rollup()
        store.write_records(records[100:])
        before = self.state(store)
        real = sqlite_rollup.add_to_rollup
        calls: list[int] = []

        def second_chunk_fails(conn: Any, rows: Any) -> None:
            calls.append(len(rows))
            if len(calls) == 2:
                raise RuntimeError("the fold is interrupted")
            real(conn, rows)

        self.patch(sqlite_rollup, "_CHUNK", 50)
        self.patch(sqlite_rollup, "add_to_rollup", second_chunk_fails)
        with self.assertRaises(RuntimeError):
            store.fold_rollup()
        self.assertEqual(calls, [50, 50])
        self.assertEqual(self.state(store), before)
        self.patch(sqlite_rollup, "add_to_rollup", real)
        self.check(store, records)

    def test_failed_periodic_fold_is_logged_not_raised(self) -> None:
        """The records of a batch whose fold fails are stored and write_records returns; the next fold takes them."""
        store = self.ledger(FoldSchedule(records=1, check_every=1))
        records = seeded(80)

        def fails(conn: Any, rows: Any) -> None:
            raise RuntimeError("no fold today")

        real = sqlite_rollup.add_to_rollup
        self.patch(sqlite_rollup, "add_to_rollup", fails)
        store.write_records(records)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(store.read_records()), 80)
        self.assertEqual(self.state(store), ([(0,)], []))
        self.patch(sqlite_rollup, "add_to_rollup", real)
        self.check(store, records)

    def test_the_writer_folds_once_enough_records_are_pending(self) -> None:
        """Once the schedule's number of records are pending the batch's write folds: rollup rows without any summary."""
        store = self.ledger(FoldSchedule(records=50, check_every=10))
        records = seeded(200)
        store.write_records(records[:30])
        store.write_records(records[:30])  # replays are not new records
        store.write_records(records[30:49])
        self.assertEqual(self.state(store), ([(0,)], []))
        store.write_records(records[49:60])
        mark, rows = self.state(store)
        self.assertEqual(mark, self.raw(store, "SELECT max(seq) FROM usage"))
        self.assertEqual(sum(r[7] for r in rows if r[0] == "hour:total"), 60)
        store.write_records(records[60:100])
        self.assertEqual(self.state(store)[0], mark)
        self.check(store, records[:100])

    def test_every_process_s_records_count_toward_the_fold(self) -> None:
        """Pending records are counted across the ledgers sharing the file: the writer that finds enough folds them all."""
        a = self.ledger(FoldSchedule(records=50, check_every=10))
        b = self.ledger(FoldSchedule(records=50, check_every=10))
        records = seeded(100)
        a.write_records(records[:30])
        self.assertEqual(self.state(a), ([(0,)], []))
        b.write_records(records[30:60])
        self.assertEqual(self.state(a)[0], [(60,)])
        self.check(a, records[:60])

    def test_the_pending_count_is_looked_at_every_check_every_records(self) -> None:
        """Between looks a batch only counts its records: the fold waits for the next look."""
        store = self.ledger(FoldSchedule(records=1, check_every=100))
        records = seeded(200)
        for i in range(0, 99, 33):
            store.write_records(records[i:i + 33])
        self.assertEqual(self.state(store), ([(0,)], []))
        store.write_records(records[99:132])
        self.assertEqual(self.state(store)[0], [(132,)])

    def test_default_schedule(self) -> None:
        """Writers fold once 5 000 records are pending, looking every 500 of their own, unless told otherwise."""
        self.assertEqual((FOLD_RECORDS, FOLD_CHECK), (5_000, 500))
        store = SQLiteLedger(":memory:")
        self.addCleanup(store.close)
        self.assertEqual((store._schedule.records, store._schedule.check_every), (5_000, 500))

    def test_replays_between_folds_are_not_folded_twice(self) -> None:
        """Records written again after they were folded (a spool or journal replay) are skipped by the insert and by the fold."""
        store = self.ledger()
        records = seeded(200)
        store.write_records(records[:120])
        store.fold_rollup()
        folded = self.state(store)
        store.write_records([attrs.evolve(r, latency_ms=1.0) for r in records[:120]])
        self.assertEqual(store.fold_rollup(), 0)
        self.assertEqual(self.state(store), folded)
        store.write_records(records[100:] + records[:10])
        self.assertEqual(store.fold_rollup(), 80)
        self.check(store, records)

    def test_migration_from_a_rollup_the_writers_filled(self) -> None:
        """A ledger at the version before the watermark, whose rollup already holds every record, is not folded again."""
        store = self.ledger()
        records = seeded()
        store.write_records(records)
        store.fold_rollup()
        filled = self.state(store)[1]
        with store._lock:
            store._conn.execute("DROP TABLE usage_rollup_mark")
            store._conn.execute(f"PRAGMA user_version = {sqlite_module._MIGRATIONS.index(sqlite_rollup.MARK)}")
        store.close()
        again = self.ledger()
        self.assertEqual(again.schema_version, sqlite_module.SCHEMA_VERSION)
        self.assertEqual(self.state(again), (self.raw(again, "SELECT max(seq) FROM usage"), filled))
        self.check(again, records)

    def test_migration_of_an_empty_ledger(self) -> None:
        """A new ledger starts with its watermark at 0."""
        self.assertEqual(self.state(self.ledger()), ([(0,)], []))
