# Tests: tests/test_read_batch.py
"""
The pieces of upstream bodies that arrive in one socket read, handled once
at the end of that read (issue #18).

A provider's stream is HTTP-chunked, usually one SSE event per chunk, and
twisted.web's chunked decoder hands each chunk to the body protocol on its
own: 52 events that arrive in one read are 52 calls, each of which would be
checked by the stream handler and written to the client (one more chunk of
our own chunked encoding) separately.  Instead, while the upstream
connection's ``dataReceived`` runs (:meth:`ReadBatch.around`, installed on
each pooled connection by :mod:`.upstream`), an exchange only holds the
pieces (:meth:`ReadBatch.hold`); when the read has been parsed, each
exchange that held something takes them in one block.  Nothing waits for a
later reactor turn, so no latency is added: the block goes out before the
reactor looks at another socket.

Outside such a read (a test's in-memory agent, any other client), nothing
is held and each piece is handled as it comes: batching is an optimization
the upstream client opts into, never a requirement of the exchange.

There is one batch per process (:data:`READS`) because there is one
reactor thread and reads do not interleave; a nested read (one connection's
data delivered while another's is being parsed, as an in-memory transport
can do) keeps the outer read's pending exchanges for the outer read's end.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from twisted.logger import Logger

__all__ = ["READS", "ReadBatch", "Reader"]

log = Logger()


class Reader(Protocol):
    """What holds pieces during a read: an exchange."""

    def flush_read(self) -> None:
        """Handle the pieces held during the read that just ended."""


class ReadBatch:
    """See the module docstring."""

    __slots__ = ("_pending", "active", "connection")

    def __init__(self) -> None:
        #: A batched read is being parsed: exchanges should hold their pieces.
        self.active = False
        #: The transport of the connection being read (while ``active``): an
        #: exchange that finds the answer unusable only after its end was
        #: parsed closes it, since the pool has taken it back by then.
        self.connection: Optional[Any] = None
        self._pending: list[Reader] = []

    def hold(self, reader: Reader) -> None:
        """``reader`` holds pieces: flush it when the current read ends (call once per read)."""
        self._pending.append(reader)

    def around(self, received: Callable[[bytes], None], data: bytes, connection: Any = None) -> None:
        """Run ``received(data)`` (a read of ``connection``) as one batch, then flush what was held."""
        outer = self.connection
        self.connection = connection
        if self.active:
            try:
                received(data)
            finally:
                self.connection = outer
            return
        self.active = True
        try:
            received(data)
        finally:
            self.active = False
            self.connection = None
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            readers, self._pending = pending, []
            for reader in readers:
                try:
                    reader.flush_read()
                except Exception:
                    log.failure("handling a read's upstream data failed")
            pending = self._pending


#: The process's batch (one reactor thread, one read at a time).
READS = ReadBatch()
