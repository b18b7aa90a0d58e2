# Tests: tests/test_ledger.py
"""
The usage writer: records leave the reactor thread in batches.

The relay finishes a request by calling :meth:`UsageWriter.submit`, which only
appends to a deque.  A timer armed by the first submit (no timer runs while
the queue is idle) hands the queue to one dedicated worker thread in
batches, one batch at a time, so SQLite never runs on the reactor thread and
batches never interleave or reorder.

A batch is removed from the queue only after the store has committed it.
A failed write is logged and the same batch is retried after a back-off,
ahead of newer records; ``write_records`` is idempotent by request id, so
even an ambiguous failure cannot double-count.  Records are never dropped
for lack of room: past ``warn_pending`` queued records a warning is logged
(once per incident) and the records are kept.

On stop (twistd's graceful shutdown calls ``stopService``) every queued
record is written before the worker thread is stopped.  If the store keeps
failing until ``stop_timeout``, the unwritten records are logged as JSON in
one critical event, so they can still be recovered from the log.

With a L{Spool} (PostgreSQL, whose server can go away) nothing has to wait
for the log: while the store fails, past ``max_queued`` records -- and at
stop, whatever is left -- the queue is appended to the spool file, and
every drain replays the spool into the store first (see ledger/spool.py).
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from .interfaces import IThreadRunner, IUsageStore
from .journal import Journal
from .records import UsageRecord, record_to_json
from .spool import Spool

__all__ = ["UsageWriter"]


class UsageWriter(Service):
    """
    Batches usage records to an :class:`IUsageStore` through an :class:`IThreadRunner`.

    The writer owns the runner's lifetime: it starts it in ``startService``
    and stops it after the last flush in ``stopService``.
    """

    _log = Logger()

    def __init__(
        self,
        store: IUsageStore,
        reactor: IReactorTime,
        runner: IThreadRunner,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        *,
        max_retry_interval: float = 5.0,
        warn_pending: int = 100_000,
        stop_timeout: float = 30.0,
        spool: Optional[Spool] = None,
        max_queued: int = 10_000,
        journal: Optional[Journal] = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, not {flush_interval!r}")
        self.setName("usage-writer")
        self._store = store
        self._reactor = reactor
        self._runner = runner
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_retry_interval = max_retry_interval
        self._warn_pending = warn_pending
        self._stop_timeout = stop_timeout
        self._spool = spool
        self._max_queued = max_queued
        self._journal = journal
        #: Records at the head of the queue replayed from an earlier run's journal.
        self._replayed = 0

        self._queue: deque[UsageRecord] = deque()
        self._submitted = 0
        self._written = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._timer: Optional[IDelayedCall] = None
        self._draining = False
        self._failures = 0
        self._warned = False
        self._warned_after_stop = False
        self._stopping: Optional[Deferred[None]] = None

    # -- the hot path ----------------------------------------------------

    @property
    def runner(self) -> IThreadRunner:
        """The ledger's thread: other store reads (the admin API) queue behind the batches."""
        return self._runner

    @property
    def pending(self) -> int:
        """Records submitted and not yet committed."""
        return len(self._queue)

    @property
    def oldest_pending(self) -> Optional[float]:
        """``created_at`` of the oldest record not yet committed (None: none)."""
        return self._queue[0].created_at if self._queue else None

    def submit(self, record: UsageRecord) -> None:
        """
        Queue one record; O(1), never blocks and never raises.  With a
        journal, the record also reaches the kernel before the next reactor
        iteration (see ledger/journal.py).
        """
        if self._journal is not None:
            self._journal.append(record)
        self._queue.append(record)
        self._submitted += 1
        size = len(self._queue)
        if size > self._warn_pending and not self._warned:
            self._warned = True
            self._log.warn(
                "{pending} usage records are waiting to be written (the ledger is "
                "slow or failing); keeping them all in memory",
                pending=size,
            )
        if self._stopping is not None and self._stopping.called:
            if not self._warned_after_stop:
                self._warned_after_stop = True
                self._log.error(
                    "Usage record {request_id} submitted after the writer stopped; "
                    "it stays in memory only",
                    request_id=record.request_id,
                )
            return
        if self.running and not self._draining:
            if size >= self._batch_size:
                self._arm(0)
            elif self._timer is None:
                self._arm(self._flush_interval)

    # -- flushing --------------------------------------------------------

    def flush(self) -> Deferred[None]:
        """
        Write everything queued now.

        Fires with None once those records are committed, or fails with the
        write's error (the records stay queued and are retried).
        """
        target = self._submitted
        if self._written >= target:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((target, d))
        self._kick()
        return d

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            if delay >= self._timer.getTime() - self._reactor.seconds():
                return
            self._timer.cancel()
        self._timer = self._reactor.callLater(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._draining:
            return
        self._draining = True
        Deferred.fromCoroutine(self._drain()).addCallbacks(self._drained, self._drain_failed)

    async def _drain(self) -> None:
        # What was queued when the drain began is written now; what arrives
        # meanwhile waits for the next interval unless it fills a batch or
        # someone waits for it -- under load, one batch per flush interval
        # rather than one per round trip to the thread (issue #18).
        target = self._submitted
        try:
            while True:
                if self._spool is not None and self._spool.count:
                    await self._runner.run(self._spool.replay, self._store, self._batch_size)
                    self._failures = 0
                if not self._queue:
                    return
                if self._written >= target and len(self._queue) < self._batch_size and not self._must_continue():
                    return
                batch = list(islice(self._queue, self._batch_size))
                await self._runner.run(self._store.write_records, batch)
                self._commit(len(batch))
                self._failures = 0
                if self._journal is not None:
                    # Machine crashes: what the journal wrote reaches the disk
                    # at least once per flush interval.
                    await self._runner.run(self._journal.fsync)
        except Exception:
            if self._spool is not None and self._queue and (
                len(self._queue) > self._max_queued or self._stopping is not None
            ):
                records = list(self._queue)
                await self._runner.run(self._spool.append, records)
                self._commit(len(records))
            raise

    def _commit(self, count: int) -> None:
        """The oldest C{count} queued records are durable (stored or spooled)."""
        for _ in range(count):
            self._queue.popleft()
        self._written += count
        journal = self._journal
        if journal is not None:
            replayed = min(count, self._replayed)
            self._replayed -= replayed
            if replayed and not self._replayed:
                journal.replayed()
            if count > replayed:
                journal.committed(count - replayed)
        self._fire_waiters()

    @property
    def spooled(self) -> int:
        """Records waiting in the spool file."""
        return 0 if self._spool is None else self._spool.count

    @property
    def failing(self) -> bool:
        """True while the last write (or replay) failed."""
        return self._failures > 0

    def health(self) -> dict[str, Any]:
        """The backlog, for ``/healthz``: queued, spooled, and store up/down."""
        available = getattr(self._store, "available", True)
        down = self.failing or available is False
        return {"queued": self.pending, "spooled": self.spooled, "store": "down" if down else "up"}

    def _fire_waiters(self) -> None:
        ready = [d for target, d in self._waiters if target <= self._written]
        self._waiters = [(t, d) for t, d in self._waiters if t > self._written]
        for d in ready:
            d.callback(None)

    def _must_continue(self) -> bool:
        """Someone waits for what is queued: a ``flush()`` or the stop."""
        return self._stopping is not None or any(target > self._written for target, _ in self._waiters)

    def _drained(self, _: object) -> None:
        self._draining = False
        if len(self._queue) < self._warn_pending // 2:
            self._warned = False
        if self._queue and self.running:
            self._arm(self._flush_interval)

    def _drain_failed(self, failure: Failure) -> None:
        self._draining = False
        self._failures += 1
        delay = self._retry_delay()
        self._log.failure(
            "Writing usage records failed; {pending} kept for retry in {delay:.1f}s",
            failure,
            pending=len(self._queue),
            delay=delay,
        )
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(failure)
        if self.running and (self._queue or self.spooled):
            self._arm(delay)

    def _retry_delay(self) -> float:
        base = max(self._flush_interval, 0.05)
        return float(min(base * 2 ** max(self._failures - 1, 0), self._max_retry_interval))

    # -- service ---------------------------------------------------------

    def startService(self) -> None:
        """Start the worker thread and flush anything queued before start."""
        Service.startService(self)
        self._runner.start()
        if self._journal is not None:
            records = self._journal.replay()
            if records:
                self._log.info("Replaying {count} usage records from the journal of an earlier run", count=len(records))
                self._queue.extendleft(reversed(records))
                self._replayed += len(records)
                self._submitted += len(records)
        if self._queue or self.spooled:
            self._arm(0)

    def stopService(self) -> Deferred[None]:
        """Write every queued record, then stop the worker thread."""
        Service.stopService(self)
        return self.stop()

    def stop(self) -> Deferred[None]:
        """
        Flush everything (retrying until ``stop_timeout``), then stop the
        worker thread.  Idempotent; the Deferred never fails.
        """
        if self.running:
            Service.stopService(self)
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
            self._stopping.addErrback(
                lambda failure: self._log.failure("Stopping the usage writer failed", failure)
            )
        done: Deferred[None] = Deferred()

        def release(_: object) -> None:
            done.callback(None)

        self._stopping.addCallback(release)
        return done

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._reactor.seconds() + self._stop_timeout
        while self._queue:
            try:
                await self.flush()
            except Exception:
                # Already logged by _drain_failed; retry until the deadline.
                if self._reactor.seconds() >= deadline:
                    self._give_up()
                    break
                await deferLater(self._reactor, self._retry_delay(), lambda: None)
        if self._journal is not None:
            self._journal.close()
        self._runner.stop()

    def _give_up(self) -> None:
        records: list[dict[str, Any]] = [record_to_json(r) for r in self._queue]
        self._log.critical(
            "Stopping with {count} usage records unwritten; they are kept in "
            "this event's 'records' field",
            count=len(records),
            records=records,
        )
