# Tests: tests/test_live_anthropic.py
"""
Anthropic upstreams, reached two ways.

- OpenAI format in: ``/v1/chat/completions`` for a model an Anthropic-kind
  provider serves is translated (``providers.anthropic_translate``) to a
  Messages API call, and the reply -- whole or streamed -- back into
  ``chat.completion`` / ``chat.completion.chunk`` objects.
- Native ingress: ``/v1/messages`` and ``/v1/messages/count_tokens`` are
  relayed unchanged, only read on the way to meter them.  ``count_tokens``
  is answered locally when the provider cannot be reached, with the header
  ``x-dd0c-token-count: local`` saying so.

Upstream requests always carry the provider's key (``x-api-key``), never the
client's; everything else about relaying (backpressure, disconnects,
timeouts, exactly one record) is the :class:`~dd0c_route.relay.relay.Exchange`'s.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ..config import ProviderConfig
from ..metering.meter import Outcome
from ..metering.tokens import count_prompt_tokens
from ..providers.anthropic_translate import (
    AnthropicStreamError,
    AnthropicToOpenAIStream,
    TranslationError,
    anthropic_error_to_openai,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
)
from ..redaction import redact_sensitive
from ..relay.handlers import MAX_TEE_BYTES, BodyHandler, GenericStreamHandler, JSONBodyHandler
from ..relay.relay import Exchange
from ..relay.sse import SSEDecoder, SSEEvent
from ..relay.usage import UsageFacts
from .errors import ProxyError, anthropic_error_body

__all__ = ["install"]

log = Logger()

_JSON = [b"application/json"]
_SSE = b"text/event-stream"

#: Exchange errors meaning "the provider was never heard from": the cases
#: where ``count_tokens`` is answered locally instead.
_UNREACHABLE = frozenset({"upstream_unreachable", "upstream_timeout", "upstream_error"})

#: A native Messages call can only be served by Anthropic-kind providers.
_ANTHROPIC_ONLY = frozenset({"anthropic"})


def install(app: Any) -> None:
    """Wire the Anthropic translator and the native ``/v1/messages`` routes."""
    translators = getattr(app, "translators", None)
    if translators is None:
        translators = app.translators = {}
    translators["anthropic"] = translate_chat_completion
    app.extra_routes[b"/v1/messages"] = messages
    app.extra_routes[b"/v1/messages/count_tokens"] = count_tokens


def anthropic_headers(provider: ProviderConfig, call: Any, native: bool) -> dict[bytes, list[bytes]]:
    """
    Upstream headers: the provider's key, never the client's.  A native
    client's own ``anthropic-version`` wins (it knows the shapes it parses).
    """
    client = call.request.requestHeaders
    headers = {b"content-type": _JSON, b"accept": [b"application/json, text/event-stream"]}
    if provider.api_key:
        headers[b"x-api-key"] = [provider.api_key.reveal().encode("utf-8")]
    version = client.getRawHeaders(b"anthropic-version") if native else None
    headers[b"anthropic-version"] = version[:1] if version else [provider.anthropic_version.encode("ascii")]
    beta = client.getRawHeaders(b"anthropic-beta")
    if beta:
        headers[b"anthropic-beta"] = beta
    return headers


def _upstream_usage_in(usage: Any) -> Optional[dict[str, Any]]:
    """
    ``message_start`` usage without its placeholder ``output_tokens`` (1 or
    so): output comes from ``message_delta``, and a stream cut before that
    must be counted locally from what was delivered.
    """
    if not isinstance(usage, dict):
        return None
    return {k: v for k, v in usage.items() if k != "output_tokens"}


def _openai_error_event(message: str) -> bytes:
    return b"data: " + json.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": "upstream_error"}}
    ).encode("utf-8") + b"\n\n"


# -- OpenAI format in ---------------------------------------------------------


def translate_chat_completion(call: Any, provider: ProviderConfig, body: dict[str, Any]) -> None:
    """``app.translators["anthropic"]``: a chat completion sent as a Messages call."""
    try:
        request = openai_to_anthropic_request(body)
    except TranslationError as error:
        raise ProxyError(error.status, error.message, param=error.param, code=error.code) from None
    stream = bool(call.info.stream)
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    model = body["model"]
    created = int(call.app.reactor.seconds())
    facts = UsageFacts()

    def handler(response: Any) -> BodyHandler:
        if stream:
            return TranslatedStreamHandler(facts, model, created, include_usage)
        return TranslatedJSONHandler(facts, model, created)

    call.relay(
        provider,
        provider.base_url + "/v1/messages",
        anthropic_headers(provider, call, native=False),
        json.dumps(request).encode("utf-8"),
        facts,
        handler,
        translate_error=translate_anthropic_error,
    )


def translate_anthropic_error(
    status: int, body: bytes, headers: dict[bytes, list[bytes]]
) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """An Anthropic error response as the OpenAI error an OpenAI SDK parses."""
    text_headers = {
        name.decode("latin-1"): values[0].decode("latin-1") for name, values in headers.items() if values
    }
    new_status, payload, out = anthropic_error_to_openai(status, body, text_headers)
    data = redact_sensitive(json.dumps(payload)).encode("utf-8")
    out_headers = {b"content-type": _JSON}
    for name, value in out.items():
        out_headers[name.encode("latin-1")] = [value.encode("latin-1")]
    return new_status, data, out_headers


class TranslatedJSONHandler(BodyHandler):
    """
    A whole Anthropic ``message``, buffered (bounded) and answered as one
    ``chat.completion`` at the end.
    """

    content_type = b"application/json"

    def __init__(self, facts: UsageFacts, model: str, created: int) -> None:
        super().__init__(facts)
        self._model = model
        self._created = created
        self._buffer = bytearray()

    def data(self, data: bytes) -> bytes:
        if len(self._buffer) + len(data) > MAX_TEE_BYTES:
            # Raising makes the exchange cut the connection: a translated
            # reply cannot be relayed in part.
            raise ValueError("Anthropic reply larger than the translation limit")
        self._buffer += data
        return b""

    def end(self) -> bytes:
        message = json.loads(bytes(self._buffer))
        if not isinstance(message, dict):
            raise ValueError("Anthropic reply is not a JSON object")
        completion, _ = anthropic_to_openai_response(message, model=self._model, created=self._created)
        facts = self.facts
        facts.take_usage(message.get("usage"))
        facts.response_id = completion["id"]
        if not facts.usage_seen:
            for choice in completion["choices"]:
                content = choice["message"].get("content")
                if isinstance(content, str):
                    facts.delivered.append(content)
        return json.dumps(completion).encode("utf-8")


class TranslatedStreamHandler(BodyHandler):
    """
    Anthropic stream events in, ``chat.completion.chunk`` events out, each
    written as soon as its event arrives.  An ``error`` event ends the
    stream with an OpenAI error payload (the SDKs raise on it).
    """

    content_type = _SSE

    def __init__(self, facts: UsageFacts, model: str, created: int, include_usage: bool) -> None:
        super().__init__(facts)
        self._decoder = SSEDecoder()
        self._translator = AnthropicToOpenAIStream(model, created, include_usage)
        self._over = False

    @property
    def can_report_failure(self) -> bool:
        return True

    def data(self, data: bytes) -> bytes:
        return b"".join(self._event(event) for event in self._decoder.feed(data))

    def end(self) -> bytes:
        out = b"".join(self._event(event) for event in self._decoder.flush())
        if not self._over:
            self._over = True
            self.facts.error_type = "upstream_error"
            out += _openai_error_event("the upstream stream ended before message_stop")
        return out

    def failed(self, message: str) -> bytes:
        if self._over:
            return b""
        self._over = True
        return _openai_error_event(message)

    def _event(self, event: SSEEvent) -> bytes:
        if self._over or not event.data:
            return b""
        try:
            data = json.loads(event.data)
        except ValueError:
            return b""
        if not isinstance(data, dict):
            return b""
        kind = event.event or data.get("type")
        if not isinstance(kind, str):
            return b""
        facts = self.facts
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                facts.take_usage(_upstream_usage_in(message.get("usage")))
        elif kind == "message_delta":
            facts.take_usage(data.get("usage"))
        try:
            chunks = self._translator.feed(kind, data)
        except AnthropicStreamError as error:
            self._over = True
            inner = error.payload.get("error") or {}
            facts.error_type = str(inner.get("type") or inner.get("code") or "upstream_error")
            return b"data: " + json.dumps(error.payload).encode("utf-8") + b"\n\n"
        out = []
        for chunk in chunks:
            if facts.response_id is None:
                facts.response_id = chunk.get("id")
            facts.take_delivered_choices(chunk.get("choices") or ())
            out.append(b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n")
        if self._translator.finished:
            self._over = True
            out.append(b"data: [DONE]\n\n")
        return b"".join(out)


# -- native ingress -------------------------------------------------------------


def _native_request(call: Any, need_max_tokens: bool, route: bool = False) -> tuple[dict[str, Any], ProviderConfig]:
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
        decision = call.route(model, body, body["messages"], _ANTHROPIC_ONLY, system=body.get("system"))
        provider = decision.provider
    else:
        provider = call.resolve_model(model)
    if provider.kind != "anthropic":
        raise ProxyError(
            400,
            f"The model `{model[:200]}` is served by a {provider.kind} provider: "
            "use /v1/chat/completions for it",
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


def pass_anthropic_error(
    status: int, body: bytes, headers: dict[bytes, list[bytes]]
) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """
    An Anthropic error, relayed as is but scrubbed of anything key-like; a
    non-JSON body (a load balancer's page) becomes an Anthropic error.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        out = redact_sensitive(body.decode("utf-8", "replace")).encode("utf-8")
    else:
        out = anthropic_error_body(
            ProxyError(status, f"The upstream provider answered {status} without a JSON body", code="upstream_error")
        )
    headers = dict(headers)
    headers[b"content-type"] = _JSON
    return status, out, headers


def messages(call: Any) -> None:
    """
    ``POST /v1/messages``: relayed unchanged to the model's Anthropic
    provider -- or, when a routing rule says so, to another Anthropic model
    (only the ``model`` member of the body is rewritten).
    """
    body, _ = _native_request(call, need_max_tokens=True, route=True)
    stream = body.get("stream") is True
    call.info.stream = stream
    call.info.messages = _prompt_messages(body)
    call.serve(call.decision, lambda model, served_by: serve_messages(call, body, stream, model, served_by))


def serve_messages(call: Any, body: dict[str, Any], stream: bool, model: str, provider: ProviderConfig) -> None:
    """One attempt of a native Messages call: ``body`` served with ``model``."""
    raw = call.raw_body if body.get("model") == model else json.dumps(dict(body, model=model)).encode("utf-8")
    facts = UsageFacts()

    def handler(response: Any) -> BodyHandler:
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if ctype.startswith(_SSE):
            return NativeStreamHandler(facts)
        return JSONBodyHandler(facts)

    call.relay(
        provider,
        provider.base_url + "/v1/messages",
        anthropic_headers(provider, call, native=True),
        raw,
        facts,
        handler,
        translate_error=pass_anthropic_error,
    )


class NativeStreamHandler(GenericStreamHandler):
    """
    An Anthropic stream relayed byte for byte, read for its id, usage
    (input at ``message_start``, output at ``message_delta``) and the text
    delivered.
    """

    content_type = _SSE

    def event(self, event: SSEEvent) -> Optional[bytes]:
        kind = event.event
        if kind in ("ping", "content_block_stop", "message_stop") or not event.data:
            return event.raw
        try:
            data = json.loads(event.data)
        except ValueError:
            return event.raw
        if not isinstance(data, dict):
            return event.raw
        kind = kind or data.get("type")
        facts = self.facts
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                text = delta.get("text") if delta.get("type") == "text_delta" else delta.get("partial_json")
                if isinstance(text, str) and text:
                    facts.delivered.append(text)
        elif kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict):
                if block.get("type") == "tool_use" and isinstance(block.get("name"), str):
                    facts.delivered.append(block["name"])
                elif block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
                    facts.delivered.append(block["text"])
        elif kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                if facts.response_id is None and isinstance(message.get("id"), str):
                    facts.response_id = message["id"]
                facts.take_usage(_upstream_usage_in(message.get("usage")))
        elif kind == "message_delta":
            facts.take_usage(data.get("usage"))
        elif kind == "error":
            error = data.get("error")
            if isinstance(error, dict):
                facts.error_type = str(error.get("type") or "upstream_error")
        return event.raw

    def failed(self, message: str) -> bytes:
        return b"event: error\ndata: " + json.dumps(
            {"type": "error", "error": {"type": "api_error", "message": message}}
        ).encode("utf-8") + b"\n\n"


# -- count_tokens ---------------------------------------------------------------


def count_tokens(call: Any) -> None:
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
    reactor = call.app.reactor
    info = call.info
    facts = UsageFacts()
    facts.prompt_tokens = 0
    facts.completion_tokens = 0
    answered_locally: list[bool] = []

    def choose_handler(response: Any) -> BodyHandler:
        request.responseHeaders.setRawHeaders(b"x-dd0c-token-count", [b"provider"])
        return BodyHandler(facts)

    def respond_error(request: Any, error: ProxyError) -> None:
        if error.code not in _UNREACHABLE:
            call.write_error(request, error)
            return
        answered_locally.append(True)
        d = deferToThreadPool(reactor, reactor.getThreadPool(), count_prompt_tokens, model, prompt)
        d.addCallbacks(answer_locally, local_count_failed, errbackArgs=(error,))

    def answer_locally(tokens: int) -> None:
        if call.client_gone:
            return
        out = json.dumps({"input_tokens": tokens}).encode("utf-8")
        request.setResponseCode(200)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", _JSON)
        headers.setRawHeaders(b"content-length", [str(len(out)).encode()])
        for name, value in call.explain_headers():
            headers.setRawHeaders(name, [value])
        headers.setRawHeaders(b"x-dd0c-token-count", [b"local"])
        request.write(out)
        request.finish()

    def local_count_failed(failure: Any, error: ProxyError) -> None:
        log.failure("local token counting failed", failure)
        if not call.client_gone:
            call.write_error(request, error)

    def finalize(exchange: Exchange) -> None:
        local = bool(answered_locally)
        now = reactor.seconds()
        call.finish_record(
            Outcome(
                status=200 if local else exchange.status,
                ended=exchange.ended or now,
                ttfb=exchange.ttfb,
                disconnected=exchange.client_gone,
                error_type=None if local else exchange.error_type,
                truncated=False if local else exchange.upstream_failed,
            )
        )

    info.provider = provider.name
    timeouts = call.app.config.timeouts
    exchange = call.exchange = Exchange(
        request=request,
        reactor=reactor,
        facts=facts,
        respond_error=respond_error,
        translate_error=pass_anthropic_error,
        choose_handler=choose_handler,
        finalize=finalize,
        first_byte_timeout=timeouts.first_byte,
        idle_timeout=timeouts.idle,
        started=info.started,
        extra_headers=call.explain_headers(),
    )
    exchange.start(
        call.app.upstream.request(
            "POST",
            provider.base_url + "/v1/messages/count_tokens",
            anthropic_headers(provider, call, native=True),
            upstream_body,
        )
    )
