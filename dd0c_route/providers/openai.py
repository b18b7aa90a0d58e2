# Tests: tests/test_provider_contract.py, tests/test_live_openai.py
"""
The OpenAI adapter: OpenAI and every OpenAI-compatible upstream.

Chat completions are relayed as the client sent them, with two rewrites
only: the routed ``model``, and ``stream_options.include_usage`` on every
stream (so the provider reports usage; the extra usage chunk is hidden from
a client that did not ask for it).  When only the second is needed the
member is prepended to the raw body instead of re-serializing it.

Responses API requests are relayed with the routed ``model`` only: their
streams always end in an event carrying usage.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from ..config import ProviderConfig
from ..metering.usage import UsageFacts
from ..relay.chat_stream import OpenAIChatStreamHandler
from ..relay.handlers import BodyHandler, JSONBodyHandler, chat_completion_or_error
from ..relay.plan import UpstreamCall
from ..relay.responses_stream import ResponsesJSONHandler, ResponsesStreamHandler
from .errors import pass_openai_error
from .interfaces import IProvider
from .wire import base_headers

__all__ = ["OpenAIProvider"]



@implementer(IProvider)
@attrs.frozen
class OpenAIProvider:
    """:class:`IProvider` for ``kind = "openai"``."""

    kind: str = "openai"

    def url(self, provider: ProviderConfig, endpoint: str) -> str:
        # base_url ends in /v1; client endpoints start with it.
        return provider.base_url + endpoint[len("/v1"):]

    def headers(self, provider: ProviderConfig, client_headers: Headers, native: bool) -> dict[bytes, list[bytes]]:
        headers = base_headers()
        if provider.api_key:
            headers[b"authorization"] = [b"Bearer " + provider.api_key.reveal().encode("utf-8")]
        beta = client_headers.getRawHeaders(b"openai-beta")
        if beta:
            headers[b"openai-beta"] = list(beta)
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
        options = body.get("stream_options")
        client_wants_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        if body.get("model") == model:
            if stream and not client_wants_usage:
                if options is None and raw.lstrip()[:1] == b"{":
                    # The client sent no stream_options: prepend the member.
                    raw = b'{"stream_options":{"include_usage":true},' + raw.lstrip()[1:]
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

        def choose_handler(response: IResponse) -> BodyHandler:
            if stream:
                return OpenAIChatStreamHandler(facts, client_wants_usage)
            return JSONBodyHandler(facts, chat_completion_or_error)

        return UpstreamCall(
            url=self.url(provider, "/v1/chat/completions"),
            headers=self.headers(provider, client_headers, native=True),
            body=raw,
            facts=facts,
            choose_handler=choose_handler,
            translate_error=pass_openai_error,
        )

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
        if body.get("model") != model:
            raw = json.dumps(dict(body, model=model)).encode("utf-8")
        facts = UsageFacts()

        def choose_handler(response: IResponse) -> BodyHandler:
            if stream:
                return ResponsesStreamHandler(facts)
            return ResponsesJSONHandler(facts)

        return UpstreamCall(
            url=self.url(provider, "/v1/responses"),
            headers=self.headers(provider, client_headers, native=True),
            body=raw,
            facts=facts,
            choose_handler=choose_handler,
            translate_error=pass_openai_error,
        )

    def translate_error(
        self, status: int, body: bytes, headers: dict[bytes, list[bytes]]
    ) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
        return pass_openai_error(status, body, headers)
