# Tests: tests/test_live_openai.py, tests/test_bad_input.py, tests/test_disconnect.py, tests/test_request_garbage.py
"""
One client request, from arrival to its usage record: the :class:`Call`.

A call is timed, authenticated (by :mod:`~dd0c_route.web.resource`),
checked by its endpoint, routed, and either answered here (models, errors)
or relayed through a :class:`~dd0c_route.routing.fallback.FallbackChain`.
Everything routing and the relay learn about it lands on its
:class:`~dd0c_route.metering.meter.RequestInfo`, and :meth:`Call.finish_record`
turns that into exactly one usage record, errors included.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ..boundedjson import InvalidJSON, loads_bounded
from ..config import ProviderConfig
from ..ledger.interfaces import KeyInfo
from ..metering.meter import Outcome, RequestInfo
from ..metering.usage import UsageFacts
from ..relay.failures import INTERNAL, UpstreamFailure
from ..relay.plan import UpstreamCall
from ..relay.relay import DONE, Exchange
from ..routing.fallback import FallbackChain
from ..routing.features import keep_features
from ..routing.router import Decision, UnknownModel
from .errors import ProxyError, anthropic_error_body, error_for, openai_error_body, unknown_model
from .request_id import client_request_id, new_request_id
from .respond import write_json

__all__ = ["Call"]

log = Logger()


class Call:
    """One client request; see the module docstring."""

    def __init__(self, app: Any, request: IRequest, anthropic_errors: bool = False) -> None:
        self.app = app
        self.request = request
        self.method = request.method
        self.anthropic_errors = anthropic_errors
        self.info = RequestInfo(
            request_id=new_request_id(),
            started=app.reactor.seconds(),
            endpoint=request.path.decode("utf-8", "replace"),
            client_request_id=client_request_id(request.requestHeaders.getRawHeaders(b"x-request-id")),
        )
        if app.tracer is not None:
            app.tracer.start(self.info, request)
        #: The attempts of a routed or relayed call (None until it relays).
        self.chain: Optional[FallbackChain] = None
        #: An exchange the endpoint drives itself (``count_tokens``).
        self.exchange: Optional[Exchange] = None
        self.client_gone = False
        self.done = False
        self.key: Optional[KeyInfo] = None
        self.decision: Optional[Decision] = None
        self._raw: Optional[bytes] = None
        self._json: Optional[dict[str, Any]] = None

    # -- body -------------------------------------------------------------

    @property
    def raw_body(self) -> bytes:
        if self._raw is None:
            content = self.request.content
            self._raw = content.getvalue() if content is not None else b""
        return self._raw

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 that says what is wrong."""
        if self._json is None:
            raw = self.raw_body
            if not raw.strip():
                raise ProxyError(400, "The request body is empty: send a JSON object", code="invalid_json")
            try:
                body = loads_bounded(raw)
            except InvalidJSON as why:
                raise ProxyError(
                    400,
                    f"We could not parse the JSON body of your request: {why}. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                    code="invalid_json",
                ) from None
            if not isinstance(body, dict):
                raise ProxyError(400, "The request body must be a JSON object", code="invalid_json")
            self._json = body
        return self._json

    # -- routing ------------------------------------------------------------

    def resolve_model(self, model: str) -> ProviderConfig:
        """The provider of ``model`` (or of its alias target), unrouted."""
        self.info.model_requested = model
        target, provider = self.app.routing.router.resolve(model)
        if provider is None:
            raise unknown_model(model)
        self.info.model_requested = target
        self.info.model = target
        self.info.provider = provider.name
        return provider

    def route(
        self,
        model: str,
        body: dict[str, Any],
        messages: Sequence[Any],
        kinds: frozenset[str],
        system: Optional[Any] = None,
    ) -> Decision:
        """
        Ask the router which model(s) serve this call; the decision is kept
        in the record's fields (and so in the explanation headers).
        """
        info = self.info
        info.model_requested = model
        try:
            decision = self.app.routing.router.decide(model, body, messages, self.key, kinds, system)
        except UnknownModel:
            raise unknown_model(model) from None
        self.decision = decision
        info.model_requested = decision.requested
        info.route_rule = decision.route
        info.complexity = decision.complexity
        info.model = decision.model
        info.provider = decision.provider.name
        if decision.features is not None:
            keep_features(info, decision.features)
        if decision.shadow_model is not None:
            info.shadow_model = decision.shadow_model
            info.shadow_prompt_includes_cached = decision.provider.kind != "anthropic"
        return decision

    def serve(self, decision: Decision, plan_for: Callable[[str, ProviderConfig], UpstreamCall]) -> None:
        """Serve the decision's chain, one attempt per (model, provider)."""
        self._start_chain(decision.chain, plan_for, enforcing=self.app.routing.enforcing)

    def relay(self, provider: ProviderConfig, plan: UpstreamCall) -> None:
        """Relay one upstream request as planned (no fallback, no circuit check)."""
        self._start_chain([(self.info.model or "", provider)], lambda model, served_by: plan, enforcing=False)

    def _start_chain(
        self,
        chain: Sequence[tuple[str, ProviderConfig]],
        plan_for: Callable[[str, ProviderConfig], UpstreamCall],
        enforcing: bool,
    ) -> None:
        app = self.app
        routing = app.routing
        self.chain = FallbackChain(
            chain,
            info=self.info,
            request=self.request,
            breaker=routing.breaker,
            enforcing=enforcing,
            fallback_after_send=routing.config.fallback_after_send,
            reactor=app.reactor,
            send=app.upstream.request,
            timeouts=app.config.timeouts,
            explain=self.explain_headers,
            answer_failure=self.answer_failure,
            finished=self._exchange_done,
            refused=self.fail,
            on_attempt=None if app.tracer is None else app.tracer.attempt,
        )
        self.chain.start(plan_for)

    def explain_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """``x-dd0c-*``: request id, and what served the call and why."""
        info = self.info
        headers = [
            (b"x-dd0c-request-id", info.request_id.encode()),
            (b"x-dd0c-route", (info.route_rule or "default").encode("utf-8", "replace")),
            (b"x-dd0c-complexity", (info.complexity or "none").encode()),
        ]
        if info.client_request_id is not None:
            # Echoed when the client sent one; otherwise X-Request-ID stays the provider's.
            headers.append((b"x-request-id", info.client_request_id.encode()))
        if info.provider:
            headers.append((b"x-dd0c-provider", info.provider.encode("utf-8", "replace")))
        if info.model:
            headers.append((b"x-dd0c-model", info.model.encode("utf-8", "replace")))
        return tuple(headers)

    # -- answering --------------------------------------------------------

    def respond_json(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer with a small JSON body we built, and record the call."""
        if not self.client_gone:
            write_json(self.request, status, body, self.explain_headers() + headers)
        now = self.app.reactor.seconds()
        self.finish_record(Outcome(status=status, ended=now, ttfb=now, disconnected=self.client_gone))

    def write_error(self, request: IRequest, error: ProxyError) -> None:
        """Write an error in the client's format."""
        body = anthropic_error_body(error) if self.anthropic_errors else openai_error_body(error)
        headers = self.explain_headers() + tuple((name.encode(), value.encode()) for name, value in error.headers)
        if error.status == 413:
            # The rest of an oversized body is not worth reading.
            headers += ((b"connection", b"close"),)
        write_json(request, error.status, body, headers)

    def answer_failure(self, request: IRequest, failure: UpstreamFailure) -> int:
        """An exchange's failure, answered in the client's format; its status."""
        error = error_for(failure)
        assert error is not None
        if not self.client_gone:
            self.write_error(request, error)
        return error.status

    def fail(self, problem: BaseException, failure: Optional[Failure] = None) -> None:
        """
        Answer a failure (nothing sent upstream) and record it.  Anything
        that is not one of ours is logged and answered 500.
        """
        if self.done:
            return
        error = error_for(problem, self.info.model_requested or "")
        if error is None:
            log.failure("error handling a request", failure or Failure(problem))
            error = ProxyError(500, "Internal proxy error", code="internal_error")
        chain = self.chain
        if chain is not None and chain.live:
            assert chain.exchange is not None
            chain.exchange.fail(UpstreamFailure(INTERNAL, error.message))
            return
        if self.exchange is not None and self.exchange.state != DONE:
            self.exchange.fail(UpstreamFailure(INTERNAL, error.message))
            return
        if not self.client_gone:
            self.write_error(self.request, error)
        now = self.app.reactor.seconds()
        self.finish_record(
            Outcome(status=error.status, ended=now, ttfb=now, disconnected=self.client_gone, error_type=error.code or error.type)
        )

    def finish_record(self, outcome: Outcome, facts: Optional[UsageFacts] = None) -> None:
        """Hand the call's one record to the meter (the first call wins)."""
        if self.done:
            return
        self.done = True
        self.app.active -= 1
        self.app.live.discard(self)
        if outcome.status == 0:
            outcome = Outcome(status=499, ended=outcome.ended, ttfb=outcome.ttfb, disconnected=True, error_type=outcome.error_type or "client_closed_request", truncated=outcome.truncated)
        if facts is None:
            exchange = self.exchange or (self.chain.exchange if self.chain is not None else None)
            facts = exchange.facts if exchange is not None else UsageFacts()
        self.app.meter.finalize(self.info, facts, outcome)
        # The call, its chain and its exchange refer to each other (callbacks
        # both ways): dropping the links now lets reference counting free the
        # whole request -- twisted.web's Request included -- at once, instead
        # of the cyclic GC finding ~80 objects per request later (issue #18:
        # that GC cost ~80 us per request).
        if self.chain is not None:
            self.chain.release()
            self.chain = None
        self.exchange = None

    def client_lost(self, reason: Any) -> None:
        self.client_gone = True
        if self.chain is not None:
            self.chain.client_lost(reason)
        elif self.exchange is not None:
            self.exchange.client_lost(reason)
        elif not self.done:
            now = self.app.reactor.seconds()
            self.finish_record(Outcome(status=499, ended=now, disconnected=True, error_type="client_closed_request"))

    def _exchange_done(self, exchange: Exchange) -> None:
        self.finish_record(
            Outcome(
                status=exchange.status,
                ended=exchange.ended or self.app.reactor.seconds(),
                ttfb=exchange.ttfb,
                disconnected=exchange.client_gone,
                error_type=exchange.error_type,
                truncated=exchange.upstream_failed,
            ),
            exchange.facts,
        )
