# Tests: tests/test_live_openai.py, tests/test_upstream_errors.py
"""
Every other ``/v1/*`` endpoint (embeddings, completions, responses,
moderations, files…): relayed unchanged to the provider that serves the
body's ``model`` (or the first OpenAI-kind provider), streaming when the
provider streams, and metered when it reports usage.
"""

from __future__ import annotations

from typing import Optional

from twisted.web.iweb import IResponse

from ..config import ProviderConfig
from ..metering.usage import UsageFacts
from ..providers.errors import pass_openai_error
from ..relay.handlers import BodyHandler, GenericStreamHandler, JSONBodyHandler
from ..relay.plan import UpstreamCall
from .call import Call
from .errors import ProxyError

__all__ = ["passthrough"]


def passthrough(call: Call) -> None:
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
    app = call.app
    if provider is None:
        provider = app.registry.default_provider("openai")
        if provider is None:
            raise ProxyError(404, "No OpenAI-kind provider is configured for this endpoint", code="not_found")
    if provider.kind != "openai":
        raise ProxyError(400, f"{path.decode('utf-8', 'replace')} is not available for {provider.kind} models", code="unsupported_endpoint")
    adapter = app.adapters["openai"]
    headers = adapter.headers(provider, request.requestHeaders, native=True)
    if ctype:
        headers[b"content-type"] = [ctype]
    facts = UsageFacts()

    def choose_handler(response: IResponse) -> BodyHandler:
        rtype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if rtype.startswith(b"text/event-stream"):
            return GenericStreamHandler(facts)
        if rtype.startswith(b"application/json"):
            return JSONBodyHandler(facts)
        return BodyHandler(facts)

    plan = UpstreamCall(
        url=adapter.url(provider, request.uri.decode("utf-8", "replace")),
        headers=headers,
        body=body,
        facts=facts,
        choose_handler=choose_handler,
        translate_error=pass_openai_error,
        method=request.method.decode("ascii"),
    )
    call.relay(provider, plan)
