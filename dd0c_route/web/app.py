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
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

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
from ..relay.relay import Exchange, PASS_HEADERS
from ..relay.upstream import UpstreamClient
from ..relay.usage import UsageFacts
from .auth import presented_key
from .errors import ProxyError, anthropic_error_body, openai_error_body

__all__ = ["ProxyApp", "ApiResource"]

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
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.registry = ProviderRegistry(config)
        self.keys = keys
        self.meter = meter
        self.upstream = upstream
        self.active = 0
        self._models_body = self._build_models_body()
        self.routes: dict[bytes, Callable[["Call"], None]] = {
            b"/v1/chat/completions": self._chat_completions,
            b"/v1/models": self._models,
        }
        self.extra_routes: dict[bytes, Callable[["Call"], None]] = {}

    # -- listing --------------------------------------------------------

    def _build_models_body(self) -> bytes:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": provider.name}
            for model, provider in self.registry.listed_models()
        ]
        return json.dumps({"object": "list", "data": data}).encode("utf-8")

    def _models(self, call: "Call") -> None:
        if call.method not in (b"GET", b"HEAD"):
            raise ProxyError(405, "Method not allowed: use GET", code="method_not_allowed")
        call.respond_json(200, self._models_body)

    # -- chat completions -----------------------------------------------

    def _chat_completions(self, call: "Call") -> None:
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
        provider = call.resolve_model(model)
        call.info.stream = stream
        call.info.messages = messages
        translate = self.translators.get(provider.kind) if hasattr(self, "translators") else None
        if provider.kind != "openai":
            if translate is None:
                raise ProxyError(400, f"The model `{model}` is served by a {provider.kind} provider, which this endpoint cannot reach yet", param="model", code="model_not_supported")
            translate(call, provider, body)
            return
        raw = call.raw_body
        client_wants_usage = False
        if stream:
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage") is True:
                client_wants_usage = True
            elif options is None and raw.lstrip()[:1] == b"{":
                # Ask for usage without re-serializing the body: prepend the
                # member (the client did not send one, so no duplicate).
                stripped = raw.lstrip()
                raw = b'{"stream_options":{"include_usage":true},' + stripped[1:]
            else:
                new = dict(body)
                new["stream_options"] = dict(options or {}, include_usage=True)
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

    def passthrough(self, call: "Call") -> None:
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


def openai_headers(provider: ProviderConfig, call: "Call") -> dict[bytes, list[bytes]]:
    """Upstream headers for an OpenAI-kind provider: its key, never the client's."""
    headers = {b"content-type": _JSON, b"accept": [b"application/json, text/event-stream"]}
    if provider.api_key:
        headers[b"authorization"] = [b"Bearer " + provider.api_key.reveal().encode("utf-8")]
    beta = call.request.requestHeaders.getRawHeaders(b"openai-beta")
    if beta:
        headers[b"openai-beta"] = beta
    return headers


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
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ProxyError(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                    code="invalid_json",
                ) from None
            if not isinstance(body, dict):
                raise ProxyError(400, "The request body must be a JSON object", code="invalid_json")
            self._json = body
        return self._json

    def resolve_model(self, model: str) -> ProviderConfig:
        self.info.model_requested = model
        provider = self.app.registry.provider_for(model)
        if provider is None:
            raise ProxyError(
                404,
                f"The model `{redact_sensitive(model[:200])}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        self.info.model = model
        self.info.provider = provider.name
        return provider

    # -- answering --------------------------------------------------------

    def respond_json(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer with a small JSON body we built, and record the call."""
        if not self.client_gone:
            request = self.request
            request.setResponseCode(status)
            out = request.responseHeaders
            out.setRawHeaders(b"content-type", _JSON)
            out.setRawHeaders(b"content-length", [str(len(body)).encode()])
            out.setRawHeaders(b"x-dd0c-request-id", [self.info.request_id.encode()])
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
        out.setRawHeaders(b"x-dd0c-request-id", [self.info.request_id.encode()])
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
        """Send the request upstream and relay the answer back."""
        info = self.info
        info.provider = provider.name
        extra = (
            (b"x-dd0c-request-id", info.request_id.encode()),
            (b"x-dd0c-provider", provider.name.encode()),
        ) + ((b"x-dd0c-model", info.model.encode("utf-8", "replace")),) if info.model else ()
        timeouts = self.app.config.timeouts
        exchange = self.exchange = Exchange(
            request=self.request,
            reactor=self.app.reactor,
            facts=facts,
            respond_error=self.write_error,
            translate_error=translate_error,
            choose_handler=choose_handler,
            finalize=self._exchange_done,
            first_byte_timeout=timeouts.first_byte,
            idle_timeout=timeouts.idle,
            started=info.started,
            extra_headers=extra,
        )
        exchange.start(self.app.upstream.request(method, url, headers, body))

    def _exchange_done(self, exchange: Exchange) -> None:
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
            route = app.routes.get(path) or app.extra_routes.get(path)
            if route is None and not path.startswith(b"/v1/"):
                raise ProxyError(404, "Unknown path: this proxy serves the OpenAI and Anthropic /v1 API", code="not_found")
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
