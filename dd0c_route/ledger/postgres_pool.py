# Tests: tests/test_postgres.py
"""
The PostgreSQL ledger's connection pool: at most ``size`` connections,
opened on demand and dropped when broken, so the store recovers by itself
when the database comes back.  A connection failure surfaces as
L{LedgerUnavailable}.  Blocking, like the store that uses it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg

from .interfaces import LedgerUnavailable

__all__ = ["Pool"]


class Pool:
    """
    At most ``size`` connections, opened on demand and dropped when broken.

    Simpler than psycopg_pool for what the ledger needs: no background
    threads, and a dead database shows as an immediate connection error on
    use (after ``connect_timeout``), which is when the writer wants to know.
    """

    def __init__(self, connect: Any, size: int, wait_timeout: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._wait = wait_timeout
        self._closed = False

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction (committed if the body returns)."""
        if not self._slots.acquire(timeout=self._wait):
            raise LedgerUnavailable("every PostgreSQL connection of the pool stayed busy")
        try:
            conn = self._take()
            try:
                with conn.transaction():
                    yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self._drop(conn)
                raise LedgerUnavailable(f"PostgreSQL: {error}") from None
            except BaseException:
                self._give(conn)
                raise
            self._give(conn)
        finally:
            self._slots.release()

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("the PostgreSQL store is closed")
            if self._idle:
                return self._idle.pop()
        try:
            conn: psycopg.Connection[Any] = self._connect()
        except psycopg.Error as error:
            raise LedgerUnavailable(f"cannot connect to PostgreSQL: {error}") from None
        return conn

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._drop(conn)
