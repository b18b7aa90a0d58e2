# Tests: tests/test_live_openai.py, tests/test_bad_input.py
"""
The API surface: one leaf resource that dispatches on method and path.

Each request becomes a :class:`Call`: it is timed, authenticated against the
key cache, checked, and either answered here (models, errors) or relayed
through an :class:`~dd0c_route.relay.relay.Exchange`.  Every call but
``/healthz`` ends in exactly one usage record, errors included.

Dispatch is a dict lookup on the path (no child traversal), the request
body is parsed once, and the hot path does no I/O but its sockets: keys come
from an in-memory cache, records go to an in-memory queue.

Routing (``dd0c_route.routing``) hooks in at three points: budgets admit the
call once its key is known (:meth:`ApiResource._authorized`); the router
picks the model and the fallback chain (:meth:`Call.route`); and
:meth:`Call.serve` tries the chain, one :class:`Exchange` per attempt.  An
attempt that fails before any byte reached the client (429, 5xx, connect
failure, first-byte timeout) writes nothing -- its request object is a
:class:`_AttemptRequest` that is *held* the moment the failure is seen --
and the next attempt starts; only the last attempt answers the client and
finalizes the meter, so there is still exactly one record.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional, Sequence

from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..boundedjson import InvalidJSON, loads_bounded
from ..config import Config, ProviderConfig
from ..ledger.interfaces import KeyInfo
from ..metering.meter import Meter, Outcome, RequestInfo
from ..providers.registry import ProviderRegistry
from ..redaction import redact_sensitive
from ..relay.handlers import (
    BodyHandler,
    GenericStreamHandler,
    JSONBodyHandler,
    OpenAIChatStreamHandler,
)
from ..relay.relay import Exchange
from ..relay.upstream import UpstreamClient
from ..relay.usage import UsageFacts
from ..routing.router import Decision, UnknownModel
from ..routing.service import Routing
from .auth import presented_key
from .errors import ProxyError, anthropic_error_body, openai_error_body
from .paths import InvalidPath, Passthrough, normalize_path

__all__ = ["ApiResource", "ProxyApp"]

log = Logger()

_JSON = [b"application/json"]


def _new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class ProxyApp:
    """
    Everything a request needs, built once by the tap.
    """

    def __init__(
        self,
        *,
        reactor: Any,
        config: Config,
        keys: Any,
        meter: Meter,
        upstream: UpstreamClient,
        routing: Optional[Routing] = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        if routing is None:
            routing = Routing(config, ProviderRegistry(config), reactor)
        self.routing = routing
        self.registry = routing.router.registry
        self.keys = keys
        self.meter = meter
        self.upstream = upstream
        self.active = 0
        self._models_body = self._build_models_body()
        self.routes: dict[bytes, Callable[[Call], None]] = {
            b"/v1/chat/completions": self._chat_completions,
            b"/v1/models": self._models,
        }
        self.extra_routes: dict[bytes, Callable[[Call], None]] = {}
        self.passthrough_allowed = Passthrough(config.server.passthrough)

    # -- listing --------------------------------------------------------

    def _build_models_body(self) -> bytes:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": provider.name}
            for model, provider in self.registry.listed_models()
        ]
        return json.dumps({"object": "list", "data": data}).encode("utf-8")

    def _models(self, call: Call) -> None:
        if call.method not in (b"GET", b"HEAD"):
            raise ProxyError(405, "Method not allowed: use GET", code="method_not_allowed")
        call.respond_json(200, self._models_body)

    # -- chat completions -----------------------------------------------

    def _chat_completions(self, call: Call) -> None:
        if call.method != b"POST":
            raise ProxyError(405, "Method not allowed: use POST", code="method_not_allowed")
        body = call.json_body()
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ProxyError(400, "you must provide a model parameter", param="model", code="missing_required_parameter" if "model" not in body else "invalid_type")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ProxyError(400, "'messages' must be a non-empty array of message objects", param="messages", code="invalid_value")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ProxyError(400, f"messages[{index}] must be an object with a string 'role'", param=f"messages[{index}]", code="invalid_value")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ProxyError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
        stream = bool(stream)
        translators = getattr(self, "translators", None) or {}
        kinds = frozenset(("openai", *translators))
        decision = call.route(model, body, messages, kinds)
        call.info.stream = stream
        call.info.messages = messages
        call.serve(decision, lambda served, provider: self.serve_chat(call, body, stream, served, provider))

    def serve_chat(self, call: Call, body: dict[str, Any], stream: bool, model: str, provider: ProviderConfig) -> None:
        """
        Serve a chat completion ``body`` with ``model`` on ``provider``
        (translated when the provider speaks another API): the first
        attempt and every fallback go through here.
        """
        same_model = body.get("model") == model
        if provider.kind != "openai":
            translate = getattr(self, "translators", {}).get(provider.kind)
            if translate is None:
                raise ProxyError(400, f"The model `{model}` is served by a {provider.kind} provider, which this endpoint cannot reach yet", param="model", code="model_not_supported")
            translate(call, provider, body if same_model else dict(body, model=model))
            return
        raw = call.raw_body
        client_wants_usage = False
        options = body.get("stream_options")
        if stream and isinstance(options, dict) and options.get("include_usage") is True:
            client_wants_usage = True
        if same_model:
            if stream and not client_wants_usage:
                if options is None and raw.lstrip()[:1] == b"{":
                    # Ask for usage without re-serializing the body: prepend the
                    # member (the client did not send one, so no duplicate).
                    stripped = raw.lstrip()
                    raw = b'{"stream_options":{"include_usage":true},' + stripped[1:]
                else:
                    new = dict(body)
                    new["stream_options"] = dict(options or {}, include_usage=True)
                    raw = json.dumps(new).encode("utf-8")
        else:
            new = dict(body, model=model)
            if stream and not client_wants_usage:
                new["stream_options"] = dict(options if isinstance(options, dict) else {}, include_usage=True)
            raw = json.dumps(new).encode("utf-8")
        facts = UsageFacts()

        def handler(response: Any) -> BodyHandler:
            if stream:
                return OpenAIChatStreamHandler(facts, client_wants_usage)
            return JSONBodyHandler(facts)

        call.relay(
            provider,
            provider.base_url + "/chat/completions",
            openai_headers(provider, call),
            raw,
            facts,
            handler,
        )


    # -- every other /v1 endpoint -----------------------------------------

    def passthrough(self, call: Call) -> None:
        """
        Any other ``/v1/*`` endpoint (embeddings, completions, responses,
        moderations, files…) relayed unchanged to the provider that serves
        the body's ``model`` (or the first OpenAI-kind provider), streaming
        when the provider streams and metered when it reports usage.
        """
        request = call.request
        path = request.path
        ctype = (request.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        provider: Optional[ProviderConfig] = None
        body: Optional[bytes] = call.raw_body or None
        if body and ctype.startswith(b"application/json"):
            parsed = call.json_body()
            model = parsed.get("model")
            if isinstance(model, str) and model:
                provider = call.resolve_model(model)
            call.info.stream = parsed.get("stream") is True
        if provider is None:
            provider = self.registry.default_provider("openai")
            if provider is None:
                raise ProxyError(404, "No OpenAI-kind provider is configured for this endpoint", code="not_found")
        if provider.kind != "openai":
            raise ProxyError(400, f"{path.decode('utf-8', 'replace')} is not available for {provider.kind} models", code="unsupported_endpoint")
        uri = request.uri
        url = provider.base_url + uri[len(b"/v1"):].decode("utf-8", "replace")
        headers = openai_headers(provider, call)
        if ctype:
            headers[b"content-type"] = [ctype]
        facts = UsageFacts()

        def handler(response: Any) -> BodyHandler:
            rtype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
            if rtype.startswith(b"text/event-stream"):
                return GenericStreamHandler(facts)
            if rtype.startswith(b"application/json"):
                return JSONBodyHandler(facts)
            return BodyHandler(facts)

        call.relay(provider, url, headers, body, facts, handler, method=request.method.decode("ascii"))


def openai_headers(provider: ProviderConfig, call: Call) -> dict[bytes, list[bytes]]:
    """Upstream headers for an OpenAI-kind provider: its key, never the client's."""
    headers = {b"content-type": _JSON, b"accept": [b"application/json, text/event-stream"]}
    if provider.api_key:
        headers[b"authorization"] = [b"Bearer " + provider.api_key.reveal().encode("utf-8")]
    beta = call.request.requestHeaders.getRawHeaders(b"openai-beta")
    if beta:
        headers[b"openai-beta"] = beta
    return headers


def _unknown_model(model: str) -> ProxyError:
    return ProxyError(
        404,
        f"The model `{redact_sensitive(model[:200])}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def pass_error(status: int, body: bytes, headers: dict[bytes, list[bytes]]) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """
    A provider error, relayed as is (status, JSON, headers clients act on),
    scrubbed of anything that looks like a key.  A non-JSON body (an HTML
    page from a load balancer) becomes an OpenAI-shaped error.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        out = redact_sensitive(body.decode("utf-8", "replace")).encode("utf-8")
    else:
        out = openai_error_body(
            ProxyError(status, f"The upstream provider answered {status} without a JSON body", code="upstream_error", type="server_error" if status >= 500 else None)
        )
    headers = dict(headers)
    headers[b"content-type"] = _JSON
    return status, out, headers


#: Attempt failures that mean the provider may have received (and may
#: bill) the request although it never answered.
_AFTER_SEND = frozenset({"timeout_after_send", "reset_after_send"})


class _AttemptRequest:
    """
    The client request as one fallback attempt sees it.  Everything passes
    through until :attr:`held` is set -- the moment the attempt is known to
    have failed before any byte was written -- after which the attempt's
    error answer goes nowhere and the next attempt answers instead.
    """

    def __init__(self, request: Any) -> None:
        self._request = request
        self.held = False
        self._scratch: Optional[Headers] = None

    @property
    def responseHeaders(self) -> Any:
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class Call:
    """
    One client request, from arrival to its usage record.
    """

    def __init__(self, app: ProxyApp, request: Any, anthropic_errors: bool = False) -> None:
        self.app = app
        self.request = request
        self.method = request.method
        self.anthropic_errors = anthropic_errors
        self.info = RequestInfo(
            request_id=_new_request_id(),
            started=app.reactor.seconds(),
            endpoint=request.path.decode("utf-8", "replace"),
        )
        self.exchange: Optional[Exchange] = None
        self.client_gone = False
        self.done = False
        self.key: Optional[KeyInfo] = None
        self._raw: Optional[bytes] = None
        self._json: Optional[dict[str, Any]] = None
        # Routing and fallbacks (see Call.serve).
        self.decision: Optional[Decision] = None
        self._chain: list[tuple[str, ProviderConfig]] = []
        self._serve: Optional[Callable[[str, ProviderConfig], None]] = None
        self._attempts: list[str] = []
        self._attempt_request: Optional[_AttemptRequest] = None
        self._attempt_failure: Optional[str] = None
        self._upstream_failure: Optional[Failure] = None
        self._retry: Optional[str] = None

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

    def resolve_model(self, model: str) -> ProviderConfig:
        """The provider of ``model`` (or of its alias target), unrouted."""
        self.info.model_requested = model
        target, provider = self.app.routing.router.resolve(model)
        if provider is None:
            raise _unknown_model(model)
        self.info.model_requested = target
        self.info.model = target
        self.info.provider = provider.name
        return provider

    # -- routing ------------------------------------------------------------

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
        routing = self.app.routing
        try:
            decision = routing.router.decide(model, body, messages, self.key, kinds, system)
        except UnknownModel:
            raise _unknown_model(model) from None
        self.decision = decision
        info.model_requested = decision.requested
        info.route_rule = decision.route
        info.complexity = decision.complexity
        info.model = decision.model
        info.provider = decision.provider.name
        if decision.shadow_model is not None:
            note = routing.note(info.request_id)
            if note is not None:
                note.shadow_model = decision.shadow_model
                note.prompt_includes_cached = decision.provider.kind != "anthropic"
        return decision

    def serve(self, decision: Decision, serve: Callable[[str, ProviderConfig], None]) -> None:
        """
        Try the decision's chain: ``serve(model, provider)`` starts one
        attempt (it ends in :meth:`relay`).  A provider whose circuit is
        open is skipped; when every one is, the answer is a 503.
        """
        self._chain = list(decision.chain)
        self._serve = serve
        self._next_attempt()

    def _next_attempt(self) -> None:
        routing = self.app.routing
        breaker = routing.breaker
        last_error: Optional[ProxyError] = None
        wait: Optional[float] = None
        assert self._serve is not None
        while self._chain:
            model, provider = self._chain.pop(0)
            if routing.enforcing and not breaker.available(provider.name):
                self._attempts.append(f"{model}@{provider.name}:circuit_open")
                retry_in = breaker.retry_in(provider.name)
                wait = retry_in if wait is None else min(wait, retry_in)
                continue
            self.info.model = model
            self.info.provider = provider.name
            self._attempt_failure = None
            self._upstream_failure = None
            self._retry = None
            try:
                self._serve(model, provider)
            except ProxyError as error:
                if self.exchange is not None and self.exchange.state != "done":
                    raise
                if not self._chain:
                    self._attempts_note(f"{model}@{provider.name}:{error.code or error.status}")
                    raise
                self._attempts.append(f"{model}@{provider.name}:{error.code or error.status}")
                last_error = error
                continue
            return
        if last_error is not None:
            raise last_error
        self._attempts_note(None)
        raise ProxyError(
            503,
            "Every provider for this model is failing and paused for a cool-down; retry later",
            code="circuit_open",
            type="server_error",
            headers=(("retry-after", str(max(1, int((wait or 0) + 0.999)))),),
        )

    def _attempts_note(self, last: Optional[str]) -> None:
        """Record the attempts when there was more than one."""
        attempts = self._attempts + ([last] if last else [])
        if len(attempts) < 2 and not (attempts and "circuit_open" in attempts[0]):
            return
        note = self.app.routing.note(self.info.request_id)
        if note is not None:
            note.attempts = ",".join(attempts)

    def _can_fall_back(self, after_send: bool) -> bool:
        if self.client_gone or self._attempt_request is None or not self._chain:
            return False
        if after_send and not self.app.routing.config.fallback_after_send:
            return False
        breaker = self.app.routing.breaker
        return any(breaker.available(provider.name) for _, provider in self._chain)

    def explain_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """``x-dd0c-*``: request id, and what served the call and why."""
        info = self.info
        headers = [
            (b"x-dd0c-request-id", info.request_id.encode()),
            (b"x-dd0c-route", (info.route_rule or "default").encode("utf-8", "replace")),
            (b"x-dd0c-complexity", (info.complexity or "none").encode()),
        ]
        if info.provider:
            headers.append((b"x-dd0c-provider", info.provider.encode("utf-8", "replace")))
        if info.model:
            headers.append((b"x-dd0c-model", info.model.encode("utf-8", "replace")))
        return tuple(headers)

    # -- answering --------------------------------------------------------

    def respond_json(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer with a small JSON body we built, and record the call."""
        if not self.client_gone:
            request = self.request
            request.setResponseCode(status)
            out = request.responseHeaders
            out.setRawHeaders(b"content-type", _JSON)
            out.setRawHeaders(b"content-length", [str(len(body)).encode()])
            for name, value in self.explain_headers():
                out.setRawHeaders(name, [value])
            for name, value in headers:
                out.setRawHeaders(name, [value])
            if request.method != b"HEAD":
                request.write(body)
            request.finish()
        now = self.app.reactor.seconds()
        self.finish_record(Outcome(status=status, ended=now, ttfb=now, disconnected=self.client_gone))

    def write_error(self, request: Any, error: ProxyError) -> None:
        """Write an error in the client's format (used by the exchange too)."""
        body = anthropic_error_body(error) if self.anthropic_errors else openai_error_body(error)
        request.setResponseCode(error.status)
        out = request.responseHeaders
        out.setRawHeaders(b"content-type", _JSON)
        out.setRawHeaders(b"content-length", [str(len(body)).encode()])
        for header, raw_value in self.explain_headers():
            out.setRawHeaders(header, [raw_value])
        for name, value in error.headers:
            out.setRawHeaders(name.encode(), [value.encode()])
        if error.status == 413:
            # The rest of an oversized body is not worth reading.
            out.setRawHeaders(b"connection", [b"close"])
        request.write(body)
        request.finish()

    def fail(self, error: ProxyError) -> None:
        """Answer with a proxy error (nothing sent upstream) and record it."""
        if self.done:
            return
        if self.exchange is not None:
            self.exchange.fail(error)
            return
        if not self.client_gone:
            self.write_error(self.request, error)
        now = self.app.reactor.seconds()
        self.finish_record(
            Outcome(status=error.status, ended=now, ttfb=now, disconnected=self.client_gone, error_type=error.code or error.type)
        )

    def finish_record(self, outcome: Outcome) -> None:
        if self.done:
            return
        self.done = True
        self.app.active -= 1
        if outcome.status == 0:
            outcome = Outcome(status=499, ended=outcome.ended, ttfb=outcome.ttfb, disconnected=True, error_type=outcome.error_type or "client_closed_request", truncated=outcome.truncated)
        self.app.meter.finalize(self.info, self.exchange.facts if self.exchange else UsageFacts(), outcome)

    def client_lost(self, reason: Any) -> None:
        self.client_gone = True
        if self.exchange is not None:
            self.exchange.client_lost(reason)
        elif not self.done:
            now = self.app.reactor.seconds()
            self.finish_record(Outcome(status=499, ended=now, disconnected=True, error_type="client_closed_request"))

    # -- relaying ---------------------------------------------------------

    def relay(
        self,
        provider: ProviderConfig,
        url: str,
        headers: dict[bytes, list[bytes]],
        body: Optional[bytes],
        facts: UsageFacts,
        choose_handler: Callable[[Any], BodyHandler],
        translate_error: Callable[..., tuple[int, bytes, dict[bytes, list[bytes]]]] = pass_error,
        method: str = "POST",
    ) -> None:
        """
        Send the request upstream and relay the answer back: one attempt.
        With more models left in the chain, the attempt's request is held
        back on a failure before the first byte, and the next one starts.
        """
        info = self.info
        info.provider = provider.name
        request: Any = self.request
        if self._chain:
            request = self._attempt_request = _AttemptRequest(self.request)
        else:
            self._attempt_request = None
        timeouts = self.app.config.timeouts

        def attempt_translate_error(
            status: int, error_body: bytes, error_headers: dict[bytes, list[bytes]]
        ) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
            if status == 429 or status >= 500:
                self._attempt_failure = str(status)
                if self._can_fall_back(after_send=False):
                    self._retry = str(status)
                    assert self._attempt_request is not None
                    self._attempt_request.held = True
                    return status, error_body, error_headers
            return translate_error(status, error_body, error_headers)

        exchange = self.exchange = Exchange(
            request=request,
            reactor=self.app.reactor,
            facts=facts,
            respond_error=self._attempt_error,
            translate_error=attempt_translate_error,
            choose_handler=choose_handler,
            finalize=self._exchange_done,
            first_byte_timeout=timeouts.first_byte,
            idle_timeout=timeouts.idle,
            started=info.started,
            extra_headers=self.explain_headers(),
        )
        d = self.app.upstream.request(method, url, headers, body)
        d.addErrback(self._note_upstream_failure)
        exchange.start(d)

    def _note_upstream_failure(self, failure: Failure) -> Failure:
        self._upstream_failure = failure
        return failure

    def _attempt_error(self, request: Any, error: ProxyError) -> None:
        """The exchange's own error (unreachable, timeout): fall back or answer."""
        kind: Optional[str] = None
        if error.code == "upstream_timeout":
            kind = "timeout_after_send"
        elif error.code == "upstream_unreachable":
            failure = self._upstream_failure
            if failure is not None and failure.check(ConnectError, DNSLookupError, ConnectingCancelledError):
                kind = "connect_failed"
            else:
                kind = "reset_after_send"
        if kind is not None:
            self._attempt_failure = kind
            if self._can_fall_back(after_send=kind in _AFTER_SEND):
                self._retry = kind
                return
        self.write_error(request, error)

    def _exchange_done(self, exchange: Exchange) -> None:
        info = self.info
        provider = info.provider or ""
        breaker = self.app.routing.breaker
        failure = self._attempt_failure
        if failure is None and exchange.upstream_failed and not exchange.client_gone:
            failure = exchange.error_type or "upstream_error"
        if failure is not None:
            breaker.failure(provider)
        elif 0 < exchange.status < 500:
            breaker.success(provider)
        retry = self._retry
        if retry is not None and not self.client_gone:
            self._attempts.append(f"{info.model}@{provider}:{retry}")
            self._retry = None
            self.exchange = None
            try:
                self._next_attempt()
            except ProxyError as error:
                self.fail(error)
            except Exception:
                log.failure("starting a fallback attempt failed")
                self.fail(ProxyError(500, "Internal proxy error", code="internal_error"))
            return
        if self._attempts:
            self._attempts_note(f"{info.model}@{provider}:{failure or exchange.status}")
        self.finish_record(
            Outcome(
                status=exchange.status,
                ended=exchange.ended or self.app.reactor.seconds(),
                ttfb=exchange.ttfb,
                disconnected=exchange.client_gone,
                error_type=exchange.error_type,
                truncated=exchange.upstream_failed,
            )
        )


def _checked_path(request: Any) -> bytes:
    """
    The request's path normalized (:func:`normalize_path`), also set on the
    request (query kept as is) so that what is relayed is what was checked.
    """
    raw = request.path
    try:
        path = normalize_path(raw)
    except InvalidPath as why:
        raise ProxyError(400, f"Invalid request path: {why}", code="invalid_path") from None
    if path != raw:
        request.uri = path + request.uri[len(raw):]
        request.path = path
    return path


class ApiResource(Resource):
    """
    The leaf resource serving every path; see the module docstring.
    """

    isLeaf = True

    def __init__(self, app: ProxyApp) -> None:
        super().__init__()
        self.app = app

    def render(self, request: Any) -> Any:
        app = self.app
        path = request.path
        if path == b"/healthz":
            return self._healthz(request)
        anthropic = path.startswith(b"/v1/messages")
        call = Call(app, request, anthropic_errors=anthropic)
        app.active += 1
        request.notifyFinish().addErrback(call.client_lost)
        try:
            body = request.content
            if body is not None and getattr(body, "overflow", False):
                raise ProxyError(
                    413,
                    f"The request body is larger than the limit of {app.config.server.max_body_bytes} bytes",
                    code="request_too_large",
                )
            path = _checked_path(request)
            route = app.routes.get(path) or app.extra_routes.get(path)
            if route is None and not path.startswith(b"/v1/"):
                raise ProxyError(404, "Unknown path: this proxy serves the OpenAI and Anthropic /v1 API", code="not_found")
            if route is None and not app.passthrough_allowed.allows(path):
                raise ProxyError(404, "Unknown endpoint: this path is not relayed by this proxy (see [server] passthrough)", code="unknown_endpoint")
            key = presented_key(request)
            if key is None:
                raise ProxyError(401, "You didn't provide an API key. Use the Authorization header: Bearer <your dd0c-route key>.", code="invalid_api_key")
            hit, info = app.keys.lookup_cached(key)
            if hit:
                self._authorized(call, route, info)
            else:
                d = app.keys.fetch(key)
                d.addCallback(lambda found: self._authorized(call, route, found))
                d.addErrback(self._failed, call)
        except ProxyError as error:
            call.fail(error)
        except Exception:
            self._failed(Failure(), call)
        return NOT_DONE_YET

    def _authorized(self, call: Call, route: Optional[Callable[[Call], None]], info: Optional[KeyInfo]) -> None:
        if call.client_gone:
            return
        try:
            if info is None:
                raise ProxyError(401, "Invalid API key provided. Check your dd0c-route key.", code="invalid_api_key")
            call.key = info
            call.info.key_id = info.key_id
            call.info.team = info.team
            budgets = self.app.routing.budgets
            if budgets.enabled and call.request.path != b"/v1/models":
                budgets.admit(info, len(call.raw_body) // 4)
            if route is None:
                route = self.app.passthrough
            route(call)
        except ProxyError as error:
            call.fail(error)
        except Exception:
            self._failed(Failure(), call)

    def _failed(self, failure: Failure, call: Call) -> None:
        log.failure("error handling a request", failure)
        call.fail(ProxyError(500, "Internal proxy error", code="internal_error"))

    def _healthz(self, request: Any) -> bytes:
        app = self.app
        body = json.dumps(
            {
                "status": "ok",
                "active_requests": app.active,
                "upstream_connections": app.upstream.counter.open,
            }
        ).encode()
        request.responseHeaders.setRawHeaders(b"content-type", _JSON)
        return body
