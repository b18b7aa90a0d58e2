# Tests: tests/test_framing.py, tests/test_hardening_live.py
"""
The HTTP/1.1 channel the proxy serves with: strict request framing, answers
in JSON for head errors, and client read timeouts.

twisted.web's ``HTTPChannel`` (checked on 24.7 and 26.10) reads
``Transfer-Encoding: chunked`` followed by ``Transfer-Encoding: identity`` as
chunked and ignores ``identity`` alone, so the bytes after the body can
become a second request on the connection (RFC 9112 section 6.3 says such a
request MUST get 400 and the connection closed).  Here the framing headers
are checked before twisted.web sees them: ``Transfer-Encoding`` must be
exactly ``chunked`` once (repeated headers are joined), and ``Content-Length``
may not be repeated nor combined with ``Transfer-Encoding``; anything else
is a 400 in JSON and the connection closes before any request is dispatched.

Head errors get a JSON body (twisted.web writes a bare ``400`` with no body):
a line over ``MAX_LENGTH`` (16 KiB) or a head over ``totalHeadersSize``
(16 KiB) is a 431.

Timeouts (``[server] client_header_timeout`` / ``client_body_timeout``,
nginx's meaning): the whole request head must arrive within the header
timeout, counted from the connection (or the end of the previous response);
while a body is read, each read must follow the previous one within the body
timeout.  Then the connection is closed -- with a JSON 408 when part of a
request had arrived, silently for an idle keep-alive connection -- and
``site.client_timeouts`` counts it.  No timer runs while a request is being
answered, so long streams are not affected.  Twisted's own idle timeout
(``timeOut``) resets on every byte, which is why it does not stop a client
trickling one byte a second.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from .errors import ProxyError, openai_error_body

__all__ = ["ProxyChannel", "error_response"]


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def error_response(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response with an OpenAI-shaped body, closing."""
    body = openai_error_body(ProxyError(status, message, code=code))
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    ) + body


class ProxyChannel(HTTPChannel):
    """
    ``HTTPChannel`` with strict framing, JSON head errors and client read
    timeouts; see the module docstring.  ``ProxySite.buildProtocol`` sets
    ``clock``, ``header_timeout`` and ``body_timeout``.
    """

    clock: Any = None
    header_timeout: Optional[float] = None
    body_timeout: Optional[float] = None

    _te_seen = False
    _cl_seen = False
    _reading_body = False
    _head_started = False
    _refused = False
    _timer: Optional[IDelayedCall] = None

    # -- timers ---------------------------------------------------------------

    def _arm(self, seconds: Optional[float]) -> None:
        if not seconds or self.clock is None:
            self._disarm()
            return
        timer = self._timer
        if timer is not None and timer.active():
            # Moved, not cancelled and made again: a request arms its
            # timer at every phase and every body read (issue #18).
            timer.reset(seconds)
        else:
            self._timer = self.clock.callLater(seconds, self._timed_out)

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self) -> None:
        self._timer = None
        site = getattr(self, "site", None)
        if site is not None:
            site.client_timeouts = getattr(site, "client_timeouts", 0) + 1
        if self._head_started or self._reading_body:
            self._refuse(408, "The request was not received in time", "request_timeout")
        else:
            self.loseConnection()

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm(self.header_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)

    def requestDone(self, request: Any) -> None:
        # Armed before the buffered next request (if any) is parsed, which
        # happens inside super().requestDone.
        if self.persistent:
            self._head_started = False
            self._arm(self.header_timeout)
        super().requestDone(request)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._reading_body and self._timer is not None:
            self._head_started = True
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._reading_body:
            self._arm(self.body_timeout)
        super().rawDataReceived(data)

    # -- framing ----------------------------------------------------------------

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer a head error in JSON and close; nothing is dispatched."""
        self._disarm()
        self._refused = True
        self._reading_body = False
        self.length = None
        transport = self.transport
        if transport is not None:
            transport.write(error_response(status, message, code))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's own head errors (bad request line, bad header name,
        # malformed chunk): the same 400, with a JSON body.
        self._refuse(400, "The request is not valid HTTP/1.1", "invalid_request")

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(431, "A request header line is longer than 16 KiB", "request_header_too_large")

    def lineReceived(self, line: bytes) -> None:
        self._head_started = True
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(431, "The request head is larger than 16 KiB", "request_header_too_large")
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        lowered = name.lower()
        if colon and lowered in (b"transfer-encoding", b"content-length"):
            if lowered == b"transfer-encoding":
                if self._te_seen or self._cl_seen or value.strip(b" \t").lower() != b"chunked":
                    self._refuse(400, "Transfer-Encoding must be exactly 'chunked', without Content-Length", "invalid_framing")
                    return False
                self._te_seen = True
            else:
                if self._te_seen or self._cl_seen:
                    self._refuse(400, "Content-Length must appear once, without Transfer-Encoding", "invalid_framing")
                    return False
                self._cl_seen = True
        return bool(super().headerReceived(line))

    def allHeadersReceived(self) -> None:
        self._te_seen = self._cl_seen = False
        self._head_started = False
        super().allHeadersReceived()
        if self.length != 0:
            self._reading_body = True
            self._arm(self.body_timeout)
        else:
            self._disarm()

    def allContentReceived(self) -> None:
        self._reading_body = False
        self._disarm()
        super().allContentReceived()
