# Tests: tests/test_live_anthropic.py
"""
Native Anthropic ingress: ``/v1/messages`` and ``/v1/messages/count_tokens``.

Both are relayed unchanged to an Anthropic-kind provider, only read on the
way to meter them (a routing rule may rewrite the ``model`` member of a
Messages call to another Anthropic model).  ``count_tokens`` is answered
locally when the provider cannot be reached, with the header
``x-dd0c-token-count: local`` saying so.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.iweb import IRequest, IResponse

from ..config import ProviderConfig
from ..metering.meter import Outcome
from ..metering.tokens import count_prompt_tokens
from ..metering.usage import UsageFacts
from ..providers.anthropic_handlers import NativeStreamHandler
from ..providers.errors import pass_anthropic_error
from ..relay.client import client_request
from ..relay.failures import UpstreamFailure
from ..relay.handlers import BodyHandler, JSONBodyHandler
from ..relay.plan import UpstreamCall
from ..relay.relay import Exchange
from .call import Call
from .errors import ProxyError, error_for
from .respond import write_json

__all__ = ["count_tokens", "messages"]

log = Logger()

#: Failures meaning "the provider was never heard from": the cases where
#: ``count_tokens`` is answered locally instead.
_UNREACHABLE = frozenset({"upstream_unreachable", "upstream_timeout", "upstream_error"})

#: A native Messages call can only be served by Anthropic-kind providers.
_ANTHROPIC_ONLY = frozenset({"anthropic"})


def _native_request(call: Call, need_max_tokens: bool, route: bool = False) -> tuple[dict[str, Any], ProviderConfig]:
    """
    Check a native Messages request and find its Anthropic provider; with
    ``route``, ask the router (only Anthropic-kind models can serve it).
    """
    if call.method != b"POST":
        raise ProxyError(405, "Method not allowed: use POST", code="method_not_allowed")
    body = call.json_body()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError(400, "model: Field required (a model name string)", param="model", code="invalid_request")
    if not isinstance(body.get("messages"), list):
        raise ProxyError(400, "messages: Field required (a list of messages)", param="messages", code="invalid_request")
    max_tokens = body.get("max_tokens")
    if need_max_tokens and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise ProxyError(400, "max_tokens: Field required (an integer)", param="max_tokens", code="invalid_request")
    if route:
        provider = call.route(model, body, body["messages"], _ANTHROPIC_ONLY, system=body.get("system")).provider
    else:
        provider = call.resolve_model(model)
    if provider.kind != "anthropic":
        raise ProxyError(
            400,
            f"The model `{model[:200]}` is served by a {provider.kind} provider: use /v1/chat/completions for it",
            param="model",
            code="model_not_supported",
        )
    return body, provider


def _prompt_messages(body: Mapping[str, Any]) -> list[Any]:
    """The messages to count locally: the system prompt counts as one."""
    messages = list(body.get("messages") or ())
    system = body.get("system")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def message_or_error(body: dict[str, Any]) -> bool:
    """An Anthropic ``message`` or error object."""
    return body.get("type") in ("message", "error")


def messages(call: Call) -> None:
    """``POST /v1/messages``: relayed, or re-routed to another Anthropic model."""
    body, _ = _native_request(call, need_max_tokens=True, route=True)
    stream = body.get("stream") is True
    call.info.stream = stream
    call.info.messages = _prompt_messages(body)
    adapter = call.app.adapters["anthropic"]
    client_headers = call.request.requestHeaders

    def plan_for(model: str, provider: ProviderConfig) -> UpstreamCall:
        raw = call.raw_body if body.get("model") == model else json.dumps(dict(body, model=model)).encode("utf-8")
        facts = UsageFacts()

        def choose_handler(response: IResponse) -> BodyHandler:
            if stream:
                return NativeStreamHandler(facts)
            return JSONBodyHandler(facts, message_or_error)

        return UpstreamCall(
            url=adapter.url(provider, "/v1/messages"),
            headers=adapter.headers(provider, client_headers, native=True),
            body=raw,
            facts=facts,
            choose_handler=choose_handler,
            translate_error=pass_anthropic_error,
        )

    assert call.decision is not None
    call.serve(call.decision, plan_for)


def count_tokens(call: Call) -> None:
    """
    ``POST /v1/messages/count_tokens``: relayed; answered from our own
    tokenizer when the provider cannot be reached.  Free either way, so
    the record carries zero tokens.
    """
    body, provider = _native_request(call, need_max_tokens=False)
    model = call.info.model or body["model"]
    upstream_body = call.raw_body if model == body["model"] else json.dumps(dict(body, model=model)).encode("utf-8")
    prompt = _prompt_messages(body)
    request = call.request
    app = call.app
    reactor = app.reactor
    adapter = app.adapters["anthropic"]
    facts = UsageFacts()
    facts.prompt_tokens = 0
    facts.completion_tokens = 0
    answered_locally: list[bool] = []

    def choose_handler(response: IResponse) -> BodyHandler:
        request.responseHeaders.setRawHeaders(b"x-dd0c-token-count", [b"provider"])
        return BodyHandler(facts)

    def respond_error(request: IRequest, failure: UpstreamFailure) -> int:
        error = error_for(failure)
        assert error is not None
        if failure.kind not in _UNREACHABLE:
            if not call.client_gone:
                call.write_error(request, error)
            return error.status
        answered_locally.append(True)
        d = deferToThreadPool(reactor, reactor.getThreadPool(), count_prompt_tokens, model, prompt)
        d.addCallbacks(answer_locally, local_count_failed, errbackArgs=(error,))
        return error.status

    def answer_locally(tokens: int) -> None:
        if call.client_gone:
            return
        out = json.dumps({"input_tokens": tokens}).encode("utf-8")
        write_json(request, 200, out, (*call.explain_headers(), (b"x-dd0c-token-count", b"local")))

    def local_count_failed(failure: Any, error: ProxyError) -> None:
        log.failure("local token counting failed", failure)
        if not call.client_gone:
            call.write_error(request, error)

    def finalize(exchange: Exchange) -> None:
        local = bool(answered_locally)
        call.finish_record(
            Outcome(
                status=200 if local else exchange.status,
                ended=exchange.ended or reactor.seconds(),
                ttfb=exchange.ttfb,
                disconnected=exchange.client_gone,
                error_type=None if local else exchange.error_type,
                truncated=False if local else exchange.upstream_failed,
            )
        )

    call.info.provider = provider.name
    timeouts = app.config.timeouts
    exchange = call.exchange = Exchange(
        request=client_request(request),
        reactor=reactor,
        facts=facts,
        respond_error=respond_error,
        translate_error=pass_anthropic_error,
        choose_handler=choose_handler,
        finalize=finalize,
        first_byte_timeout=timeouts.first_byte,
        idle_timeout=timeouts.idle,
        started=call.info.started,
        extra_headers=call.explain_headers(),
    )
    exchange.start(
        app.upstream.request(
            "POST",
            adapter.url(provider, "/v1/messages/count_tokens"),
            adapter.headers(provider, request.requestHeaders, native=True),
            upstream_body,
        )
    )
