# Tests: tests/test_relay.py, tests/test_live_openai.py
"""
One request's journey upstream and back: the :class:`Exchange`.

States, each entered once, in order::

    WAITING   the upstream request is in flight (its Deferred is pending)
    RELAYING  the upstream body is being delivered to the client
    DONE      the meter has been finalized

The upstream body transport is registered as the streaming producer of the
client request, so a slow reader pauses the provider socket.  When the
client goes away, twisted.web calls that producer's ``stopProducing`` (which
closes the provider connection, never to be pooled again); before the body
starts there is nothing registered, so the pending Deferred is cancelled.
Whatever the order of events (upstream done and client gone in the same
turn, reset, timeout), :meth:`Exchange._finalize` runs exactly once.

After a disconnect ``request.finished`` stays false, ``write`` is a silent
no-op and ``finish``/``unregisterProducer`` raise: :attr:`client_gone` is our
own flag and is the only guard used.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from ..metering.usage import UsageFacts
from .client import ClientRequest
from .failures import ERROR, INTERNAL, INVALID, TIMEOUT, UNREACHABLE, InvalidAnswer, UpstreamFailure
from .handlers import BodyHandler
from .read_batch import READS
from .readers import BodyReader, Discard, ErrorCollector

__all__ = ["PASS_HEADERS", "Exchange"]

log = Logger()

#: Upstream response headers clients act on; everything else (hop-by-hop,
#: Content-Length, Content-Encoding, cookies) stays behind.
PASS_HEADERS = frozenset(
    {
        b"retry-after", b"retry-after-ms", b"x-request-id", b"request-id",
        b"openai-processing-ms", b"openai-version", b"openai-organization",
        b"x-ratelimit-limit-requests", b"x-ratelimit-limit-tokens",
        b"x-ratelimit-remaining-requests", b"x-ratelimit-remaining-tokens",
        b"x-ratelimit-reset-requests", b"x-ratelimit-reset-tokens",
        b"anthropic-ratelimit-requests-limit", b"anthropic-ratelimit-requests-remaining",
        b"anthropic-ratelimit-requests-reset", b"anthropic-ratelimit-tokens-limit",
        b"anthropic-ratelimit-tokens-remaining", b"anthropic-ratelimit-tokens-reset",
        b"anthropic-ratelimit-input-tokens-limit", b"anthropic-ratelimit-input-tokens-remaining",
        b"anthropic-ratelimit-input-tokens-reset", b"anthropic-ratelimit-output-tokens-limit",
        b"anthropic-ratelimit-output-tokens-remaining", b"anthropic-ratelimit-output-tokens-reset",
    }
)

WAITING, RELAYING, DONE = "waiting", "relaying", "done"


class Exchange:
    """
    Relays one request upstream and its response back, and finalizes its
    meter exactly once.

    ``respond_error`` answers an :class:`UpstreamFailure` in the client's
    format (or not at all, when a fallback takes over) and returns the
    status it stands for;
    ``translate_error`` maps an upstream error (status, body, headers) to
    what the client should see; ``choose_handler`` picks the body handler
    for a successful response; ``finalize`` receives the exchange once.
    """

    def __init__(
        self,
        *,
        request: ClientRequest,
        reactor: IReactorTime,
        facts: UsageFacts,
        respond_error: Callable[[Any, UpstreamFailure], int],
        translate_error: Callable[[int, bytes, dict[bytes, list[bytes]]], tuple[int, bytes, dict[bytes, list[bytes]]]],
        choose_handler: Callable[[IResponse], BodyHandler],
        finalize: Callable[[Exchange], None],
        first_byte_timeout: float,
        idle_timeout: float,
        started: float,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.request = request
        self.reactor = reactor
        self.facts = facts
        self._respond_error = respond_error
        self._translate_error = translate_error
        self._choose_handler = choose_handler
        self._on_finalize = finalize
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._extra_headers = extra_headers
        self.started = started
        self.state = WAITING
        self.client_gone = False
        self.timed_out = False
        self.status = 0
        self.ttfb: Optional[float] = None
        self.ended: Optional[float] = None
        self.error_type: Optional[str] = None
        #: The response body broke off (upstream reset, idle timeout, a
        #: handler error): the client got part of a billable answer.
        self.upstream_failed = False
        self._upstream_d: Optional[Deferred[IResponse]] = None
        self._body_transport: Any = None
        self._handler: Optional[BodyHandler] = None
        self._upstream_headers: Any = None
        #: The status and headers of a successful answer have been sent.
        self._committed = False
        #: Why the upstream answer is unusable (a non-JSON event, a body
        #: that is not the JSON expected), once known.
        self._invalid: Optional[str] = None
        self._registered = False
        self._timer: Any = None
        #: Pieces of the body held until the end of the socket read they
        #: came in (see :mod:`.read_batch`); None when nothing is held.
        self._held: Optional[list[bytes]] = None
        #: The connection those pieces came on, and whether its response
        #: has ended (then the pool has it back: see :meth:`_stop_body`).
        self._held_connection: Any = None
        self._body_ended = False

    # -- start ------------------------------------------------------------

    def start(self, upstream_d: Deferred[IResponse]) -> None:
        """Wait for the upstream response (call once)."""
        self._upstream_d = upstream_d
        self._timer = self.reactor.callLater(self._first_byte_timeout, self._first_byte_timed_out)
        upstream_d.addCallbacks(self._got_response, self._request_failed)
        upstream_d.addErrback(self._internal_error)

    def client_lost(self, reason: Any = None) -> None:
        """The client went away (notifyFinish errback)."""
        if self.client_gone:
            return
        self.client_gone = True
        if self.state == WAITING and self._upstream_d is not None:
            self._upstream_d.cancel()
        elif self._body_transport is not None:
            # Usually done already by twisted.web (registered producer);
            # harmless to repeat, and needed if the body was not registered.
            self._body_transport.stopProducing()

    # -- upstream events ----------------------------------------------------

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            timer.cancel()
        self._timer = None

    def _first_byte_timed_out(self) -> None:
        self._timer = None
        self.timed_out = True
        if self._upstream_d is not None:
            self._upstream_d.cancel()

    def _idle_timed_out(self) -> None:
        self._timer = None
        self.timed_out = True
        if self._body_transport is not None:
            self._body_transport.stopProducing()

    def _got_response(self, response: IResponse) -> None:
        self._cancel_timer()
        self._upstream_d = None
        self.state = RELAYING
        if self.client_gone:
            response.deliverBody(Discard())
            return
        status = response.code
        headers = response.headers
        if status >= 400 or status < 200:
            self.status = status
            self._error_headers = {
                name: values for name, values in headers.getAllRawHeaders()
                if name.lower() in PASS_HEADERS or name.lower() == b"content-type"
            }
            response.deliverBody(ErrorCollector(self))
            return
        handler = self._handler = self._choose_handler(response)
        if handler.expects_sse and not (headers.getRawHeaders(b"content-type") or [b""])[0].startswith(b"text/event-stream"):
            # A load balancer's page, or a JSON answer to a stream request:
            # nothing the client's SDK could parse as the stream it asked for.
            response.deliverBody(Discard())
            self.fail(UpstreamFailure(INVALID, "The upstream provider answered a stream request without an event stream"))
            return
        self.status = status
        self._upstream_headers = headers
        if not handler.buffered:
            self._commit()
        response.deliverBody(BodyReader(self))

    def _commit(self) -> None:
        """Send the status and headers of a successful answer (once)."""
        self._committed = True
        assert self._handler is not None
        headers = self._upstream_headers
        request = self.request
        request.setResponseCode(self.status)
        out = request.responseHeaders
        for name, values in headers.getAllRawHeaders():
            if name.lower() in PASS_HEADERS:
                out.setRawHeaders(name, values)
        ctype = self._handler.content_type or headers.getRawHeaders(b"content-type", [b"application/json"])[0]
        out.setRawHeaders(b"content-type", [ctype])
        if ctype.startswith(b"text/event-stream"):
            out.setRawHeaders(b"cache-control", [b"no-cache"])
        for name, value in self._extra_headers:
            out.setRawHeaders(name, [value])

    def body_started(self, transport: Any) -> None:
        self._body_transport = transport
        if self.client_gone:
            transport.stopProducing()
            return
        self.request.registerProducer(transport, True)
        self._registered = True
        self._timer = self.reactor.callLater(self._idle_timeout, self._idle_timed_out)

    def body_data(self, data: bytes) -> None:
        if self.client_gone or self._invalid is not None:
            # Nothing after an unusable event counts: not its text, not its usage.
            return
        if READS.active:
            held = self._held
            if held is None:
                self._held = [data]
                self._held_connection = READS.connection
                READS.hold(self)
            else:
                held.append(data)
            return
        self._deliver(data)

    def flush_read(self) -> None:
        """The socket read ended: handle the pieces it brought as one block."""
        held = self._held
        if held is None:
            return
        self._held = None
        if self.client_gone or self._invalid is not None or self.state == DONE:
            # Never delivered, so never billed.
            return
        self._deliver(held[0] if len(held) == 1 else b"".join(held))

    def _deliver(self, data: bytes) -> None:
        """Body bytes in: through the handler, and what it keeps to the client."""
        timer = self._timer
        if timer is not None:
            timer.reset(self._idle_timeout)
        handler = self._handler
        assert handler is not None
        try:
            out = handler.data(data)
        except InvalidAnswer as error:
            self._reject(str(error))
            return
        except Exception:
            log.failure("stream handler failed")
            self.upstream_failed = True
            self._stop_body()
            return
        if out:
            if not self._committed:
                self._commit()
            if self.ttfb is None:
                self.ttfb = self.reactor.seconds()
            self.request.write(out)
        if handler.invalid is not None:
            self._reject(handler.invalid)

    def _reject(self, message: str) -> None:
        """The upstream answer is not usable: stop reading it (see :meth:`_body_done`)."""
        if self._invalid is None:
            self._invalid = message
            self._stop_body()

    def _stop_body(self) -> None:
        """
        Read no more of this answer, and never reuse its connection.  Pieces
        handled at the end of the read that also brought the body's end are
        judged after the pool took the connection back (stopping the body is
        then a no-op): that connection is closed instead.
        """
        self._body_transport.stopProducing()
        connection = self._held_connection
        if self._body_ended and connection is not None:
            connection.loseConnection()

    def body_done(self, reason: Failure) -> None:
        # The body ended in the read that brought its last pieces: they go
        # first (a failure mid-read keeps what arrived before it).
        self._body_ended = True
        self.flush_read()
        self._cancel_timer()
        if self.state == DONE:
            return
        clean = reason.check(ResponseDone, PotentialDataLoss) is not None and self._invalid is None
        if not self.client_gone:
            handler = self._handler
            assert handler is not None
            if self._registered:
                self.request.unregisterProducer()
                self._registered = False
            tail = b""
            if clean:
                try:
                    tail = handler.end()
                except InvalidAnswer as error:
                    self._invalid = str(error)
                    clean = False
                except Exception:
                    log.failure("stream handler failed at end")
                    clean = False
            if not clean and not self._committed:
                # Nothing reached the client yet: a gateway error instead of
                # a broken answer, and the provider is billed nothing.
                if self._invalid is not None:
                    self.fail(UpstreamFailure(INVALID, f"The upstream provider sent an unusable answer: {self._invalid}"))
                elif self.timed_out:
                    self.fail(UpstreamFailure(TIMEOUT, "The upstream provider did not answer in time"))
                else:
                    self.fail(UpstreamFailure(ERROR, "The upstream connection broke before the response was complete"))
                return
            if not clean:
                self.upstream_failed = True
                self.error_type = INVALID if self._invalid is not None else TIMEOUT if self.timed_out else ERROR
                if handler.can_report_failure:
                    tail += handler.failed(
                        "the upstream sent an unusable event" if self._invalid is not None
                        else "upstream timed out" if self.timed_out
                        else "the upstream connection broke before the response was complete"
                    )
                else:
                    # A truncated JSON body must not look complete: cut the
                    # connection so the client sees the failure.
                    if tail:
                        self.request.write(tail)
                    self.request.loseConnection()
                    self._finalize()
                    return
            if tail:
                if not self._committed:
                    self._commit()
                if self.ttfb is None:
                    self.ttfb = self.reactor.seconds()
                self.request.write(tail)
            elif not self._committed:
                self._commit()
            self.request.finish()
        self._finalize()

    def error_body_done(self, body: bytes) -> None:
        if self.state == DONE:
            return
        if self.client_gone:
            self._finalize()
            return
        status, body, headers = self._translate_error(self.status, body, self._error_headers)
        self.status = status
        try:
            parsed = json.loads(body)
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict):
                self.error_type = str(error.get("type") or error.get("code") or "") or None
        except ValueError:
            pass
        request = self.request
        request.setResponseCode(status)
        for name, values in headers.items():
            request.responseHeaders.setRawHeaders(name, values)
        for name, value in self._extra_headers:
            request.responseHeaders.setRawHeaders(name, [value])
        self.ttfb = self.reactor.seconds()
        request.write(body)
        request.finish()
        self._finalize()

    def _request_failed(self, failure: Failure) -> None:
        self._cancel_timer()
        self._upstream_d = None
        if self.client_gone:
            self._finalize()
            return
        if self.timed_out:
            problem = UpstreamFailure(TIMEOUT, "The upstream provider did not answer in time", failure)
        elif failure.check(
            ConnectError, DNSLookupError, ConnectingCancelledError, ResponseNeverReceived, ResponseFailed, CancelledError
        ):
            problem = UpstreamFailure(UNREACHABLE, "The upstream provider could not be reached", failure)
        else:
            log.failure("upstream request failed", failure)
            problem = UpstreamFailure(ERROR, "The upstream request failed", failure)
        self.fail(problem)

    def _internal_error(self, failure: Failure) -> None:
        log.failure("relay internal error", failure)
        if self.state != DONE:
            if not self.client_gone and self.status == 0:
                self.fail(UpstreamFailure(INTERNAL, "Internal proxy error", failure))
            else:
                self._finalize()

    # -- ending -----------------------------------------------------------

    def fail(self, problem: UpstreamFailure) -> None:
        """Answer a failure (before any response byte) and finalize."""
        self.error_type = problem.kind
        if not self.client_gone:
            self.ttfb = self.reactor.seconds()
        self.status = self._respond_error(self.request, problem)
        self._finalize()

    def _finalize(self) -> None:
        if self.state == DONE:
            return
        self.state = DONE
        self._cancel_timer()
        self.ended = self.reactor.seconds()
        try:
            self._on_finalize(self)
        except Exception:
            log.failure("finalizing the meter failed")

