"""
Workers' files and supervision rules (dd0c_route/workers/seat.py,
orphans.py, supervisor.py): each worker's journal and spool are its own,
files left by workers of an earlier run reach one of this run's, restarts
back off.
"""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.config import parse_config
from dd0c_route.ledger.journal import Journal
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.workers.orphans import adopt_journals, adopt_spools, seats_found
from dd0c_route.workers.seat import ledger_files
from dd0c_route.workers.supervisor import backoff


def make_record(request_id: str) -> UsageRecord:
    return UsageRecord(request_id=request_id, model="gpt-4o", prompt_tokens=1, completion_tokens=1, cost_usd=Decimal(0))


class LedgerFilesTests(SynchronousTestCase):
    def test_each_worker_has_its_own_journal_and_spool(self):
        """Worker I suffixes ``.wI`` to the journal and spool; without workers they are unchanged."""
        config = parse_config({"ledger": {"path": "/d/l.sqlite3"}}, {})
        self.assertEqual(ledger_files(config, False), ("/d/l.sqlite3.journal", "dd0c-route-ledger.spool"))
        self.assertEqual(ledger_files(config, False, 1), ("/d/l.sqlite3.journal.w1", "dd0c-route-ledger.spool.w1"))
        off = parse_config({"ledger": {"journal_path": ""}}, {})
        self.assertEqual(ledger_files(off, False, 0)[0], "")


class JournalSeatTests(SynchronousTestCase):
    def test_a_journal_does_not_replay_a_workers_segments(self):
        """``X.journal`` replays ``X.journal.<n>`` only, never worker 1's ``X.journal.w1.<n>``."""
        base = os.path.join(tempfile.mkdtemp(), "l.journal")
        clock = Clock()
        worker = Journal(base + ".w1", clock)
        worker.append(make_record(request_id="from-w1"))
        worker.close()
        self.assertEqual(Journal(base, clock).replay(), [])
        self.assertEqual([r.request_id for r in Journal(base + ".w1", clock).replay()], ["from-w1"])


class OrphanTests(SynchronousTestCase):
    def journal(self, path: str, *ids: str) -> None:
        journal = Journal(path, Clock())
        for request_id in ids:
            journal.append(make_record(request_id=request_id))
        journal.close()

    def test_orphan_journals_go_to_the_target_seat(self):
        """
        Segments of seats not running now (the unsuffixed journal, ``.w3``)
        move into worker 0's journal, which then replays them with its own;
        a live seat's are left alone.
        """
        base = os.path.join(tempfile.mkdtemp(), "l.journal")
        self.journal(base, "single")
        self.journal(base + ".w0", "w0")
        self.journal(base + ".w1", "w1")
        self.journal(base + ".w3", "w3")
        self.assertEqual(seats_found(base), {None, 0, 1, 3})
        self.assertEqual(adopt_journals(base, 0, range(2)), 2)
        self.assertEqual(seats_found(base), {0, 1})
        replayed = sorted(r.request_id for r in Journal(base + ".w0", Clock()).replay())
        self.assertEqual(replayed, ["single", "w0", "w3"])
        self.assertEqual([r.request_id for r in Journal(base + ".w1", Clock()).replay()], ["w1"])

    def test_a_single_process_adopts_every_workers_journal(self):
        """Back to ``workers = 1``: the unsuffixed journal replays what every worker left."""
        base = os.path.join(tempfile.mkdtemp(), "l.journal")
        self.journal(base + ".w0", "a")
        self.journal(base + ".w1", "b")
        adopt_journals(base, None, ())
        self.assertEqual(sorted(r.request_id for r in Journal(base, Clock()).replay()), ["a", "b"])

    def test_orphan_spools_are_appended_line_by_line(self):
        """An orphan spool's lines are appended to the target's (a torn last line stays its own line)."""
        base = os.path.join(tempfile.mkdtemp(), "s.spool")
        with open(base + ".w0", "wb") as f:
            f.write(b'{"a":1}\n{"torn"')
        with open(base + ".w2", "wb") as f:
            f.write(b'{"b":2}\n')
        self.assertEqual(adopt_spools(base, 0, range(2)), 1)
        self.assertFalse(os.path.exists(base + ".w2"))
        with open(base + ".w0", "rb") as f:
            self.assertEqual(f.read(), b'{"a":1}\n{"torn"\n{"b":2}\n')


class BackoffTests(SynchronousTestCase):
    def test_restarts_back_off_to_a_cap(self):
        """Half a second after the first death, doubling, at most 30 s."""
        self.assertEqual([backoff(n) for n in (1, 2, 3, 4)], [0.5, 1.0, 2.0, 4.0])
        self.assertEqual(backoff(20), 30.0)
