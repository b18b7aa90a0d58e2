# Tests: tests/test_ledger.py
"""
One dedicated thread for blocking ledger calls.

SQLite must never run on the reactor thread, and usage batches must never
interleave: a pool of exactly one thread gives both, and its queue keeps the
order in which batches were handed over.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .interfaces import IThreadRunner

__all__ = ["ThreadPoolRunner"]


@implementer(IThreadRunner)
class ThreadPoolRunner:
    """
    An :class:`IThreadRunner` over a private ``ThreadPool(1, 1)``.

    Its results come back through ``reactor.callFromThread``, so callbacks run
    on the reactor thread.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "dd0c-ledger") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if not self._pool.started:
            self._pool.start()

    def stop(self) -> None:
        """
        Stop the thread once its queued calls have run (idempotent).

        This joins the thread; the writer calls it only after its last
        flush has completed, so the join does not wait on SQLite.
        """
        if self._pool.started:
            self._pool.stop()

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Call ``f(*args, **kwargs)`` in the ledger thread."""
        return deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)
