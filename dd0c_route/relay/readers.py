# Tests: tests/test_relay.py
"""
The protocols an upstream response body is delivered to (``IResponse.deliverBody``).

Each hands what it reads to its exchange: the body of a successful answer
as it arrives (:class:`BodyReader`), an error body whole but bounded
(:class:`ErrorCollector`), or nothing at all (:class:`Discard`, which stops
an unwanted body at once so its connection is not leaked).
"""

from __future__ import annotations

from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

__all__ = ["MAX_ERROR_BODY", "BodyReader", "Discard", "ErrorCollector"]

#: Error bodies are read whole (they are small) but never beyond this.
MAX_ERROR_BODY = 1024 * 1024


class _Sink(TypingProtocol):
    """What the readers call on their exchange."""

    _body_transport: Any

    def body_started(self, transport: Any) -> None: ...

    def body_data(self, data: bytes) -> None: ...

    def body_done(self, reason: Failure) -> None: ...

    def error_body_done(self, body: bytes) -> None: ...


class BodyReader(Protocol):
    """Hands the upstream body to its exchange."""

    def __init__(self, exchange: _Sink) -> None:
        self.exchange = exchange

    def connectionMade(self) -> None:
        self.exchange.body_started(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.exchange.body_data(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.exchange.body_done(reason)


class Discard(Protocol):
    """Stops an unwanted body at once, so its connection is not leaked."""

    def connectionMade(self) -> None:
        cast(Any, self.transport).stopProducing()


class ErrorCollector(Protocol):
    """Reads a (bounded) error body, then hands it over."""

    def __init__(self, exchange: _Sink) -> None:
        self.exchange = exchange
        self.parts: list[bytes] = []
        self.size = 0

    def connectionMade(self) -> None:
        self.exchange._body_transport = self.transport

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_ERROR_BODY:
            cast(Any, self.transport).stopProducing()
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.exchange.error_body_done(b"".join(self.parts))
