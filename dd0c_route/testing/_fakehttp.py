# Tests: tests/test_fakeprovider.py
"""
The provider-neutral half of a fake answer: delays, errors, hangs, resets
and a streamed body written event by event under backpressure.

Each provider module only decides *what* to say (JSON bodies and an
iterator of stream events); :func:`serve` decides *when*, from the
:class:`Scenario`.  Events are produced lazily and written only while the
client reads, so a 100 000-chunk stream never sits in memory.
"""

from __future__ import annotations

__all__ = ["Event", "Exchange", "json_body", "serve"]

import json
from typing import Any, Callable, Iterator, Optional, cast

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from ._fakestate import FakeProviderState, ReceivedRequest, Scenario

_BATCH = 256
_MAX_FLUSH_POLLS = 1000
_STREAM_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


@attrs.frozen
class Event:
    """
    One stream event, already framed.  ``content`` marks the events that
    carry reply content: the ones delays, resets and chunk counts apply to.
    """

    data: bytes
    content: bool = False


def json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _write_drained(transport: object) -> bool:
    """
    Whether the TCP transport has handed all written bytes to the kernel.

    Twisted has no public API for this; without it an abort would drop the
    chunks a reset scenario promises to deliver first.  Unknown transports
    count as drained.
    """
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return pending <= 0 and not getattr(transport, "_tempDataBuffer", None)


@attrs.define(eq=False)
class Exchange:
    """
    One request being answered: records it, and keeps track of the client
    going away so that no timer outlives the connection and nothing is
    written to, or finished on, a dead request.
    """

    reactor: IReactorTime
    request: Request
    state: FakeProviderState
    received: Optional[ReceivedRequest] = None
    gone: bool = False
    _calls: set[IDelayedCall] = attrs.field(factory=set)
    _on_gone: list[Callable[[], None]] = attrs.field(factory=list)

    @classmethod
    def begin(cls, reactor: IReactorTime, request: Request, state: FakeProviderState) -> Exchange:
        exchange = cls(reactor, request, state)
        request.notifyFinish().addErrback(exchange._lost)
        headers = {
            name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        content = request.content
        assert content is not None
        content.seek(0)
        exchange.received = ReceivedRequest(
            method=request.method.decode("ascii"),
            path=request.path.decode("utf-8", "replace"),
            headers=headers,
            body=content.read(),
        )
        state.record(exchange.received)
        return exchange

    def json(self) -> Any:
        """The request body as JSON, or ``None`` when it is not valid JSON."""
        assert self.received is not None
        try:
            return json.loads(self.received.body)
        except ValueError:
            return None

    def header(self, name: str) -> Optional[str]:
        value = self.request.getHeader(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value

    def _lost(self, reason: Failure) -> None:
        self.gone = True
        calls, self._calls = self._calls, set()
        for call in calls:
            if call.active():
                call.cancel()
        for hook in self._on_gone:
            hook()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` after ``delay`` seconds, unless the client leaves first."""
        if self.gone:
            return

        def fire() -> None:
            self._calls.discard(call)
            if not self.gone:
                fn()

        call = self.reactor.callLater(delay, fire)
        self._calls.add(call)

    def start_headers(self, status: int, headers: dict[str, str]) -> None:
        self.request.setResponseCode(status)
        for name, value in headers.items():
            self.request.setHeader(name, value)

    def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self.gone:
            return
        self.start_headers(status, {"content-type": "application/json", **headers})
        self.request.setHeader("content-length", str(len(body)))
        self.request.write(body)
        self.request.finish()

    def abort_when_flushed(self) -> None:
        """
        Reset the connection once what was written has left the process, so
        the client sees exactly the bytes sent before the reset.
        """
        transport = self.request.channel.transport
        polls = 0

        def check() -> None:
            nonlocal polls
            polls += 1
            if _write_drained(transport) or polls >= _MAX_FLUSH_POLLS:
                cast(Any, transport).abortConnection()
            else:
                self.later(0, check)

        self.later(0, check)


@implementer(IPushProducer)
@attrs.define(eq=False)
class _EventPump:
    """
    Writes stream events while the client reads; waits the scenario's
    delays before content events; resets after ``reset_after_chunks``.
    """

    exchange: Exchange
    scenario: Scenario
    events: Iterator[Event]
    _paused: bool = False
    _done: bool = False
    _waiting: bool = False
    _pending: Optional[Event] = None
    _delay_served: bool = False
    _content_sent: int = 0

    def start(self) -> None:
        self.exchange._on_gone.append(self.stopProducing)
        self.exchange.request.registerProducer(self, True)
        self._step()

    def pauseProducing(self) -> None:
        if not self._paused and not self._done:
            self._paused = True
            self.exchange.state.stream_paused()

    def resumeProducing(self) -> None:
        if self._paused and not self._done:
            self._paused = False
            if not self._waiting:
                self._step()

    def stopProducing(self) -> None:
        self._done = True

    def _wait(self, delay: float) -> None:
        self._waiting = True

        def wake() -> None:
            self._waiting = False
            self._step()

        self.exchange.later(delay, wake)

    def _step(self) -> None:
        budget = _BATCH
        reset_after = self.scenario.reset_after_chunks
        while not (self._paused or self._done or self.exchange.gone):
            event = self._pending if self._pending is not None else next(self.events, None)
            self._pending = None
            if event is None:
                self._finish()
                return
            if event.content:
                if reset_after is not None and self._content_sent >= reset_after:
                    self._done = True
                    self.exchange.abort_when_flushed()
                    return
                delay = (
                    self.scenario.first_token_delay
                    if self._content_sent == 0
                    else self.scenario.chunk_delay
                )
                if delay > 0 and not self._delay_served:
                    self._pending = event
                    self._delay_served = True
                    self._wait(delay)
                    return
                self._delay_served = False
                self._content_sent += 1
            self.exchange.request.write(event.data)
            budget -= 1
            if budget == 0:
                self._wait(0)
                return

    def _finish(self) -> None:
        self._done = True
        if not self.exchange.gone:
            self.exchange.request.unregisterProducer()
            self.exchange.request.finish()


_BAD_SSE_LINE = b"data: <html><body>502 Bad Gateway</body></html>\n\n"


def _with_bad_line(events: Iterator[Event], after: int = 2) -> Iterator[Event]:
    """The stream, with a non-JSON ``data:`` line after ``after`` content events."""
    seen = 0
    for event in events:
        yield event
        if event.content:
            seen += 1
            if seen == after:
                yield Event(_BAD_SSE_LINE)


def _fault(
    exchange: Exchange,
    scenario: Scenario,
    headers: dict[str, str],
    body: Callable[[], Any],
    stream: Optional[Callable[[], Iterator[Event]]],
) -> bool:
    """Answer with the scenario's broken 200; False when the fault is for the other mode."""
    fault = scenario.fault
    if fault == "html":
        page = b"" if stream is not None else b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        exchange.start_headers(200, {**headers, "content-type": "text/html"})
        exchange.request.setHeader("content-length", str(len(page)))
        exchange.request.write(page)
        exchange.request.finish()
        return True
    if fault == "bad_sse_line":
        if stream is None:
            return False
        exchange.start_headers(200, {**_STREAM_HEADERS, **headers})
        exchange.request.write(b"")
        _EventPump(exchange, scenario, _with_bad_line(stream())).start()
        return True
    if stream is not None:
        return False
    data = json_body(body())
    half = data[: len(data) // 2]
    exchange.start_headers(200, {"content-type": "application/json", **headers})
    if fault == "truncated_json":
        exchange.request.setHeader("content-length", str(len(half)))
        exchange.request.write(half)
        exchange.request.finish()
    else:  # short_body: promise the whole body, send half, close cleanly
        exchange.request.setHeader("content-length", str(len(data)))
        exchange.request.write(half)
        cast(Any, exchange.request.channel.transport).loseConnection()
    return True


def serve(
    exchange: Exchange,
    scenario: Scenario,
    *,
    error: Callable[[int], dict[str, Any]],
    base_headers: dict[str, str],
    body: Callable[[], Any],
    stream: Optional[Callable[[], Iterator[Event]]] = None,
) -> None:
    """
    Answer ``exchange`` as ``scenario`` says: ``error(status)`` gives the
    default error body, ``body()`` the JSON of a plain answer and
    ``stream()`` (when the client asked for a stream) its events.
    """
    if scenario.hang:
        return
    headers = {**base_headers, **scenario.headers}

    def answer() -> None:
        if scenario.fault is not None and _fault(exchange, scenario, headers, body, stream):
            return
        if scenario.status != 200:
            payload = scenario.error_body
            if payload is None:
                payload = error(scenario.status)
            exchange.send(scenario.status, json_body(payload), headers)
        elif stream is not None:
            exchange.start_headers(200, {**_STREAM_HEADERS, **headers})
            exchange.request.write(b"")  # the status line and headers, now
            _EventPump(exchange, scenario, stream()).start()
        else:
            exchange.later(scenario.first_token_delay, plain)

    def plain() -> None:
        data = json_body(body())
        if scenario.reset_after_chunks is None:
            exchange.send(200, data, headers)
            return
        exchange.start_headers(200, {"content-type": "application/json", **headers})
        exchange.request.setHeader("content-length", str(len(data)))
        exchange.request.write(data[: len(data) // 2])
        exchange.abort_when_flushed()

    if scenario.header_delay > 0:
        exchange.later(scenario.header_delay, answer)
    else:
        answer()
