# Tests: tests/test_bad_input.py, tests/test_backpressure_live.py
"""
The ``Site`` and ``Request`` the proxy serves with.

twisted.web's defaults are tuned for web pages, not for a relay: it spools
bodies over 100 kB to temporary files, has no body limit, parses form
submissions, formats an access-log line per request and renders errors as
HTML pages with tracebacks.  Here bodies are held in memory up to the
configured limit (the excess is discarded and answered with 413), no form
parsing, no access-log formatting on the hot path, and an unhandled error
is answered with an OpenAI-shaped JSON 500 (no traceback, no HTML).
"""

from __future__ import annotations

import io
from typing import Any, Optional

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.web.server import Request, Site

from ..relay.connections import set_no_delay
from .errors import ProxyError, openai_error_body
from .framing import ProxyChannel

__all__ = ["LimitedBody", "ProxyRequest", "ProxySite"]

log = Logger()


class LimitedBody(io.BytesIO):
    """
    An in-memory request body that stops keeping bytes past ``limit``: the
    request is then answered 413 without holding the excess.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0
        self.overflow = False

    def write(self, data: Any) -> int:
        self.size += len(data)
        if self.overflow or self.size > self.limit:
            self.overflow = True
            return len(data)
        return super().write(data)


class ProxyRequest(Request):
    """A request whose unhandled errors are answered in JSON, redacted."""

    def processingFailed(self, reason: Any) -> None:
        log.failure("unhandled error while processing a request", reason)
        if self.finished or self.startedWriting or getattr(self, "_disconnected", False):
            try:
                self.loseConnection()
            except Exception:
                log.failure("closing a failed request's connection")
            return
        body = openai_error_body(ProxyError(500, "Internal proxy error", code="internal_error"))
        self.setResponseCode(500)
        self.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        self.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
        self.write(body)
        self.finish()


class ProxySite(Site):
    """A ``Site`` for the relay: see the module docstring."""

    requestFactory = ProxyRequest
    displayTracebacks = False
    #: HTTP/1.1 only, through our strict channel (web/framing.py): no h2
    #: negotiation that would bypass its checks.
    protocol = ProxyChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        max_body_bytes: int,
        *,
        client_header_timeout: Optional[float] = None,
        client_body_timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        try:
            super().__init__(resource, parsePOSTFormSubmission=False, **kwargs)
        except TypeError:  # Twisted before parsePOSTFormSubmission existed
            super().__init__(resource, **kwargs)
        self.max_body_bytes = max_body_bytes
        self.client_header_timeout = client_header_timeout
        self.client_body_timeout = client_body_timeout
        #: Connections closed by a client read timeout.
        self.client_timeouts = 0
        self.channels: set[Any] = set()

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            channel.clock = self.reactor
            channel.header_timeout = self.client_header_timeout
            channel.body_timeout = self.client_body_timeout
            self.channels.add(channel)
            lost = channel.connectionLost
            made = channel.makeConnection

            def makeConnection(transport: Any) -> None:
                # Small SSE events must leave at once, not wait for an ACK.
                set_no_delay(transport)
                made(transport)

            channel.makeConnection = makeConnection

            def connectionLost(reason: Any) -> None:
                self.channels.discard(channel)
                lost(reason)

            channel.connectionLost = connectionLost
        return channel

    def close_connections(self) -> Deferred[None]:
        """
        At stop, after the port has closed: end every client connection
        (in-flight streams are cut, which finalizes their meters), and fire
        when all are gone.
        """
        channels = list(self.channels)
        if not channels:
            return succeed(None)
        done: list[Deferred[None]] = []
        for channel in channels:
            d: Deferred[None] = Deferred()
            previous = channel.connectionLost

            def lost(reason: Any, d: Deferred[None] = d, previous: Any = previous) -> None:
                previous(reason)
                d.callback(None)

            channel.connectionLost = lost
            done.append(d)
            transport = getattr(channel, "transport", None) or channel._channel.transport
            transport.abortConnection()
        return gatherResults(done).addCallback(lambda _: None)

    def getContentFile(self, length: Any) -> LimitedBody:
        body = LimitedBody(self.max_body_bytes)
        if length is not None and length > self.max_body_bytes:
            body.overflow = True
        return body

    def log(self, request: Any) -> None:
        """No access log on the hot path: the usage ledger is the record."""
