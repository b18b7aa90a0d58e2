# Tests: tests/test_fallback.py, tests/test_live_routing.py
"""
The fallback chain: one request tried on each (model, provider) of a
routing decision in turn, one :class:`~dd0c_route.relay.relay.Exchange` per
attempt, until one answers.

An attempt may fall back only while nothing has reached the client: on a
429 or 5xx answer, a connect failure, or a first-byte timeout (and, when
``routing.fallback_after_send`` allows it, a reset or timeout after the
request was sent).  Such an attempt writes to a :class:`HeldRequest` that is
*held* the moment the failure is seen, so its error answer goes nowhere and
the next attempt answers instead.  The last attempt writes to the client's
request itself.  A provider whose circuit is open is skipped.  Every attempt
counts into the circuit breaker; when there was more than one, the record's
``attempts`` lists them as ``model@provider:outcome``.

This unit knows no HTTP status of its own and no body shape: failures it
cannot absorb are answered by the caller's ``answer_failure`` and
``refused``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.python.components import proxyForInterface
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from ..config import ProviderConfig, TimeoutConfig
from ..metering.meter import RequestInfo
from ..providers.errors import CannotServe
from ..relay.client import client_request
from ..relay.failures import TIMEOUT, UNREACHABLE, UpstreamFailure
from ..relay.plan import UpstreamCall
from ..relay.relay import DONE, Exchange
from .breaker import CircuitBreaker
from .errors import CircuitOpen

__all__ = ["FallbackChain", "HeldRequest"]

#: Attempt failures that mean the provider may have received (and may
#: bill) the request although it never answered.
_AFTER_SEND = frozenset({"timeout_after_send", "reset_after_send"})

_CONNECT_FAILURES = (ConnectError, DNSLookupError, ConnectingCancelledError)

#: ``(info, headers) -> end(status, failure)``: sees an attempt's upstream
#: headers before it is sent (and may add to them), then hears how it ended.
AttemptObserver = Callable[[RequestInfo, dict[bytes, list[bytes]]], Callable[[int, Optional[str]], None]]


class HeldRequest(proxyForInterface(IRequest, "_request")):  # type: ignore[misc]
    """
    The client request as one fallback attempt sees it: everything passes
    through until :attr:`held` is set, after which the attempt's answer
    (status, headers, body) goes nowhere.
    """

    def __init__(self, request: IRequest) -> None:
        super().__init__(request)
        self.held = False
        self._scratch: Optional[Headers] = None

    @property
    def responseHeaders(self) -> Headers:
        if self.held:
            if self._scratch is None:
                self._scratch = Headers()
            return self._scratch
        return self._request.responseHeaders

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        if not self.held:
            self._request.setResponseCode(code, message)

    def write(self, data: bytes) -> None:
        if not self.held:
            self._request.write(data)

    def finish(self) -> None:
        if not self.held:
            self._request.finish()

    # The consumer side of twisted.web's Request (not part of IRequest).
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._request.unregisterProducer()

    def loseConnection(self) -> None:
        self._request.loseConnection()


class FallbackChain:
    """
    Serves one request over a chain of (model, provider); see the module
    docstring.  ``plan_for(model, provider)`` builds an attempt's upstream
    request (or raises :class:`CannotServe` to skip to the next model).
    """

    def __init__(
        self,
        chain: Sequence[tuple[str, ProviderConfig]],
        *,
        info: RequestInfo,
        request: IRequest,
        breaker: CircuitBreaker,
        enforcing: bool,
        fallback_after_send: bool,
        reactor: IReactorTime,
        send: Callable[[str, str, dict[bytes, list[bytes]], Optional[bytes]], Any],
        timeouts: TimeoutConfig,
        explain: Callable[[], tuple[tuple[bytes, bytes], ...]],
        answer_failure: Callable[[IRequest, UpstreamFailure], int],
        finished: Callable[[Exchange], None],
        refused: Callable[[BaseException], None],
        on_attempt: Optional[AttemptObserver] = None,
    ) -> None:
        self._chain = list(chain)
        self._info = info
        self._client = request
        self._breaker = breaker
        self._enforcing = enforcing
        self._after_send = fallback_after_send
        self._reactor = reactor
        self._send = send
        self._timeouts = timeouts
        self._explain = explain
        self._answer_failure = answer_failure
        self._finished = finished
        self._refused = refused
        #: Tracing: told of each attempt as it is sent (it may add headers),
        #: and, through what it returns, of how the attempt ended.
        self._on_attempt = on_attempt
        self._attempt_end: Optional[Callable[[int, Optional[str]], None]] = None
        self._plan_for: Optional[Callable[[str, ProviderConfig], UpstreamCall]] = None
        self.exchange: Optional[Exchange] = None
        self.attempts: list[str] = []
        self.client_gone = False
        self._held: Optional[HeldRequest] = None
        self._attempt_failure: Optional[str] = None
        self._retry: Optional[str] = None

    # -- driving ------------------------------------------------------------

    def start(self, plan_for: Callable[[str, ProviderConfig], UpstreamCall]) -> None:
        """
        Start the first attempt that can be made.  Raises :class:`CannotServe`
        (the last model's) or :class:`CircuitOpen` when none can.
        """
        self._plan_for = plan_for
        self._next()

    def client_lost(self, reason: Any = None) -> None:
        """The client went away: no further attempt, and the current one stops."""
        self.client_gone = True
        if self.exchange is not None:
            self.exchange.client_lost(reason)

    def _next(self) -> None:
        breaker = self._breaker
        info = self._info
        last_error: Optional[CannotServe] = None
        wait: Optional[float] = None
        assert self._plan_for is not None
        while self._chain:
            model, provider = self._chain.pop(0)
            if self._enforcing and not breaker.available(provider.name):
                self.attempts.append(f"{model}@{provider.name}:circuit_open")
                retry_in = breaker.retry_in(provider.name)
                wait = retry_in if wait is None else min(wait, retry_in)
                continue
            if model:  # a direct relay of a model-less request keeps its model unset
                info.model = model
            info.provider = provider.name
            self._attempt_failure = None
            self._retry = None
            try:
                plan = self._plan_for(model, provider)
            except CannotServe as error:
                label = f"{model}@{provider.name}:{error.code or error.status}"
                if not self._chain:
                    self._note(label)
                    raise
                self.attempts.append(label)
                last_error = error
                continue
            self._relay(plan)
            return
        if last_error is not None:
            raise last_error
        self._note(None)
        raise CircuitOpen(
            "Every provider for this model is failing and paused for a cool-down; retry later",
            max(1, int((wait or 0) + 0.999)),
        )

    def _relay(self, plan: UpstreamCall) -> None:
        request: IRequest = self._client
        if self._chain:
            request = self._held = HeldRequest(self._client)
        else:
            self._held = None
        inner = plan.translate_error

        def translate_error(
            status: int, body: bytes, headers: dict[bytes, list[bytes]]
        ) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
            if status == 429 or status >= 500:
                self._attempt_failure = str(status)
                if self._can_fall_back(after_send=False):
                    self._retry = str(status)
                    assert self._held is not None
                    self._held.held = True
                    return status, body, headers
            return inner(status, body, headers)

        exchange = self.exchange = Exchange(
            request=client_request(request),
            reactor=self._reactor,
            facts=plan.facts,
            respond_error=self._attempt_error,
            translate_error=translate_error,
            choose_handler=plan.choose_handler,
            finalize=self._exchange_done,
            first_byte_timeout=self._timeouts.first_byte,
            idle_timeout=self._timeouts.idle,
            started=self._info.started,
            extra_headers=self._explain(),
        )
        headers = plan.headers
        if self._on_attempt is not None:
            headers = dict(headers)
            self._attempt_end = self._on_attempt(self._info, headers)
        exchange.start(self._send(plan.method, plan.url, headers, plan.body))

    # -- one attempt's end ----------------------------------------------------

    def _can_fall_back(self, after_send: bool) -> bool:
        if self.client_gone or self._held is None or not self._chain:
            return False
        if after_send and not self._after_send:
            return False
        breaker = self._breaker
        return any(breaker.available(provider.name) for _, provider in self._chain)

    def _attempt_error(self, request: IRequest, failure: UpstreamFailure) -> int:
        """The exchange's own failure (unreachable, timeout): fall back or answer."""
        kind: Optional[str] = None
        if failure.kind == TIMEOUT:
            kind = "timeout_after_send"
        elif failure.kind == UNREACHABLE:
            cause = failure.cause
            kind = "connect_failed" if cause is not None and cause.check(*_CONNECT_FAILURES) else "reset_after_send"
        if kind is not None:
            self._attempt_failure = kind
            if self._can_fall_back(after_send=kind in _AFTER_SEND):
                self._retry = kind
                return 0
        return self._answer_failure(request, failure)

    def _exchange_done(self, exchange: Exchange) -> None:
        info = self._info
        provider = info.provider or ""
        failure = self._attempt_failure
        if failure is None and exchange.upstream_failed and not exchange.client_gone:
            failure = exchange.error_type or "upstream_error"
        if failure is not None:
            self._breaker.failure(provider)
        elif 0 < exchange.status < 500:
            self._breaker.success(provider)
        if self._attempt_end is not None:
            self._attempt_end(exchange.status, failure)
            self._attempt_end = None
        retry = self._retry
        if retry is not None and not self.client_gone:
            self.attempts.append(f"{info.model}@{provider}:{retry}")
            self._retry = None
            self.exchange = None
            try:
                self._next()
            except Exception as error:  # answered by the caller, whatever it is
                self._refused(error)
            return
        if self.attempts:
            self._note(f"{info.model}@{provider}:{failure or exchange.status}")
        self._finished(exchange)

    def _note(self, last: Optional[str]) -> None:
        """Record the attempts when there was more than one."""
        attempts = self.attempts + ([last] if last else [])
        if len(attempts) < 2 and not (attempts and "circuit_open" in attempts[0]):
            return
        self._info.attempts = ",".join(attempts)

    def release(self) -> None:
        """
        The call is over: forget the last exchange, which refers back to this
        chain, so that neither keeps the other (and the request) alive.
        """
        self.exchange = None

    @property
    def live(self) -> bool:
        """An attempt is in progress (its exchange not yet finalized)."""
        return self.exchange is not None and self.exchange.state != DONE
