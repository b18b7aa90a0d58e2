# Tests: tests/test_live_anthropic.py, tests/test_anthropic_stream.py
"""
Body handlers for Anthropic upstreams.

- :class:`TranslatedJSONHandler` / :class:`TranslatedStreamHandler`: a
  Messages API answer read back as an OpenAI ``chat.completion`` or
  ``chat.completion.chunk`` stream (``providers.anthropic_translate``).
- :class:`NativeStreamHandler`: a native ``/v1/messages`` stream relayed
  byte for byte, read for its id, usage and the text delivered.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..metering.usage import EscapedText, UsageFacts
from ..relay.event_blocks import EventBlockHandler
from ..relay.failures import InvalidAnswer
from ..relay.handlers import MAX_TEE_BYTES, BodyHandler
from ..relay.sse import SSEDecoder, SSEEvent
from ..shapes import anthropic_error, openai_error, sse_error_frame
from .anthropic_translate import AnthropicStreamError, AnthropicToOpenAIStream, anthropic_to_openai_response

__all__ = ["NativeStreamHandler", "TranslatedJSONHandler", "TranslatedStreamHandler"]

_SSE = b"text/event-stream"


def _openai_error_event(message: str) -> bytes:
    return sse_error_frame(openai_error(message, "server_error", None, "upstream_error"))


def _upstream_usage_in(usage: Any) -> Optional[dict[str, Any]]:
    """
    ``message_start`` usage without its placeholder ``output_tokens`` (1 or
    so): output comes from ``message_delta``, and a stream cut before that
    must be counted locally from what was delivered.
    """
    if not isinstance(usage, dict):
        return None
    return {k: v for k, v in usage.items() if k != "output_tokens"}



class TranslatedJSONHandler(BodyHandler):
    """
    A whole Anthropic ``message``, buffered (bounded) and answered as one
    ``chat.completion`` at the end.
    """

    content_type = b"application/json"

    def __init__(self, facts: UsageFacts, model: str, created: int) -> None:
        super().__init__(facts)
        self.buffered = True
        self._model = model
        self._created = created
        self._buffer = bytearray()

    def data(self, data: bytes) -> bytes:
        if len(self._buffer) + len(data) > MAX_TEE_BYTES:
            # A translated reply cannot be relayed in part.
            raise InvalidAnswer("the Anthropic reply is larger than the translation limit")
        self._buffer += data
        return b""

    def end(self) -> bytes:
        try:
            message = json.loads(bytes(self._buffer))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidAnswer("the Anthropic reply is not JSON") from None
        if not isinstance(message, dict) or message.get("type") != "message":
            raise InvalidAnswer("the Anthropic reply is not a message")
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
    expects_sse = True

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
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self.invalid = "an event that is not a JSON object"
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
            return sse_error_frame(error.payload)
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



#: A text or tool-input delta exactly as Anthropic writes it: the whole
#: event, so a match is the parse's answer (issue #18).
_NATIVE_DELTA = re.compile(
    rb'event: content_block_delta\ndata: \{\s*"type"\s*:\s*"content_block_delta"\s*,\s*"index"\s*:\s*\d+\s*,'
    rb'\s*"delta"\s*:\s*\{\s*"type"\s*:\s*"(?:text_delta"\s*,\s*"text|input_json_delta"\s*,\s*"partial_json)"'
    rb'\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}\s*\}'
)


class NativeStreamHandler(EventBlockHandler):
    """
    An Anthropic stream relayed byte for byte, read for its id, usage
    (input at ``message_start``, output at ``message_delta``) and the text
    delivered.  Text and tool-input deltas, most of a stream, are read by
    one regular expression over the whole event (:data:`_NATIVE_DELTA`),
    their text kept JSON-escaped and decoded only if the meter needs it;
    every other event is parsed (:meth:`event`).
    """

    content_type = _SSE
    expects_sse = True

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        self._escaped = EscapedText()
        facts.delivered = self._escaped

    def scan(self, event: bytes) -> bool:
        match = _NATIVE_DELTA.fullmatch(event)
        if match is None:
            return False
        self._escaped.extend_escaped([match.group(1)])
        return True

    def event(self, event: SSEEvent) -> Optional[bytes]:
        kind = event.event
        if kind in ("ping", "content_block_stop", "message_stop") or not event.data:
            return event.raw
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self.invalid = "an event that is not a JSON object"
            return None
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
        return sse_error_frame(anthropic_error(message), event="error")

