# Tests: tests/test_provider_contract.py, tests/test_live_anthropic.py
"""
The Anthropic adapter: Claude models behind ``/v1/chat/completions``, and
the native Messages API.

A chat completion is translated (``providers.anthropic_translate``) to a
Messages call and the reply -- whole or streamed -- back into
``chat.completion`` / ``chat.completion.chunk`` objects; Anthropic errors
become the OpenAI errors an OpenAI SDK parses.  Upstream requests always
carry the provider's key (``x-api-key``), never the client's; a native
client's own ``anthropic-version`` wins (it knows the shapes it parses).
A Responses API request is translated the same way
(``providers.anthropic_responses``), its stream event by event.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import attrs
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from ..config import ProviderConfig
from ..metering.usage import UsageFacts
from ..redaction import redact_sensitive
from ..relay.handlers import BodyHandler
from ..relay.plan import UpstreamCall
from .anthropic_handlers import TranslatedJSONHandler, TranslatedStreamHandler
from .anthropic_responses import ResponseShape, responses_to_anthropic_request
from .anthropic_responses_stream import ResponsesTranslatedJSONHandler, ResponsesTranslatedStreamHandler
from .anthropic_translate import anthropic_error_to_openai, openai_to_anthropic_request
from .interfaces import IProvider
from .wire import JSON, base_headers

__all__ = ["AnthropicProvider"]



@implementer(IProvider)
@attrs.frozen
class AnthropicProvider:
    """:class:`IProvider` for ``kind = "anthropic"``."""

    kind: str = "anthropic"

    def url(self, provider: ProviderConfig, endpoint: str) -> str:
        # base_url is the API root, without /v1.
        return provider.base_url + endpoint

    def headers(self, provider: ProviderConfig, client_headers: Headers, native: bool) -> dict[bytes, list[bytes]]:
        headers = base_headers()
        if provider.api_key:
            headers[b"x-api-key"] = [provider.api_key.reveal().encode("utf-8")]
        version = client_headers.getRawHeaders(b"anthropic-version") if native else None
        headers[b"anthropic-version"] = list(version[:1]) if version else [provider.anthropic_version.encode("ascii")]
        beta = client_headers.getRawHeaders(b"anthropic-beta")
        if beta:
            headers[b"anthropic-beta"] = list(beta)
        return headers

    def chat_completion(
        self,
        provider: ProviderConfig,
        client_headers: Headers,
        body: dict[str, Any],
        raw: bytes,
        model: str,
        stream: bool,
        created: int,
    ) -> UpstreamCall:
        if body.get("model") != model:
            body = dict(body, model=model)
        request = openai_to_anthropic_request(body)  # raises TranslationError (a CannotServe)
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        facts = UsageFacts()

        def choose_handler(response: IResponse) -> BodyHandler:
            if stream:
                return TranslatedStreamHandler(facts, model, created, include_usage)
            return TranslatedJSONHandler(facts, model, created)

        return self._messages_call(provider, client_headers, request, facts, choose_handler)

    def responses(
        self,
        provider: ProviderConfig,
        client_headers: Headers,
        body: dict[str, Any],
        raw: bytes,
        model: str,
        stream: bool,
        created: int,
    ) -> UpstreamCall:
        request = responses_to_anthropic_request(body, model, stream)  # raises TranslationError
        shape = ResponseShape(model=model, created=created, request=body)
        facts = UsageFacts()

        def choose_handler(response: IResponse) -> BodyHandler:
            if stream:
                return ResponsesTranslatedStreamHandler(facts, shape)
            return ResponsesTranslatedJSONHandler(facts, shape)

        return self._messages_call(provider, client_headers, request, facts, choose_handler)

    def _messages_call(
        self,
        provider: ProviderConfig,
        client_headers: Headers,
        request: dict[str, Any],
        facts: UsageFacts,
        choose_handler: Callable[[IResponse], BodyHandler],
    ) -> UpstreamCall:
        """A translated request sent as a Messages API call, its errors made OpenAI-shaped."""
        return UpstreamCall(
            url=self.url(provider, "/v1/messages"),
            headers=self.headers(provider, client_headers, native=False),
            body=json.dumps(request).encode("utf-8"),
            facts=facts,
            choose_handler=choose_handler,
            translate_error=self.translate_error,
        )

    def translate_error(
        self, status: int, body: bytes, headers: dict[bytes, list[bytes]]
    ) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
        """An Anthropic error response as the OpenAI error an OpenAI SDK parses."""
        text_headers = {
            name.decode("latin-1"): values[0].decode("latin-1") for name, values in headers.items() if values
        }
        new_status, payload, out = anthropic_error_to_openai(status, body, text_headers)
        data = redact_sensitive(json.dumps(payload)).encode("utf-8")
        out_headers = {b"content-type": JSON}
        for name, value in out.items():
            out_headers[name.encode("latin-1")] = [value.encode("latin-1")]
        return new_status, data, out_headers
