# Tests: tests/test_handlers.py
"""
What the relay does with an upstream body, per kind of response.

A handler sees the upstream bytes (or SSE events) and returns the bytes to
send to the client, recording on the way what the meter needs: the
response id, the provider's usage, and the text actually delivered.  The
relay calls a handler only while the client is still there, so everything
a handler records as delivered was handed to the client's transport.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .sse import SSEDecoder, SSEEvent
from .usage import UsageFacts

__all__ = [
    "BodyHandler",
    "GenericStreamHandler",
    "JSONBodyHandler",
    "OpenAIChatStreamHandler",
]

#: Non-stream bodies are teed up to this size to read their usage; larger
#: ones are relayed without being parsed (and counted as unknown usage).
MAX_TEE_BYTES = 8 * 1024 * 1024


class BodyHandler:
    """Base: relay bytes unchanged."""

    content_type: Optional[bytes] = None

    def __init__(self, facts: UsageFacts) -> None:
        self.facts = facts

    def data(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""

    def failed(self, message: str) -> bytes:
        """Bytes to send when the upstream breaks mid-body (none: abort)."""
        return b""

    @property
    def can_report_failure(self) -> bool:
        return False


class JSONBodyHandler(BodyHandler):
    """
    A non-stream JSON body: relayed as it arrives, with a bounded copy kept
    to read ``id`` and ``usage`` at the end.
    """

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        self._tee: Optional[bytearray] = bytearray()

    def data(self, data: bytes) -> bytes:
        tee = self._tee
        if tee is not None:
            if len(tee) + len(data) > MAX_TEE_BYTES:
                self._tee = None
            else:
                tee += data
        return data

    def end(self) -> bytes:
        if self._tee:
            try:
                body = json.loads(bytes(self._tee))
            except ValueError:
                body = None
            if isinstance(body, dict):
                self.facts.take_body(body)
                if not self.facts.usage_seen:
                    # No usage reported: keep the reply text for a local count.
                    for choice in body.get("choices") or ():
                        message = choice.get("message") if isinstance(choice, dict) else None
                        if isinstance(message, dict) and isinstance(message.get("content"), str):
                            self.facts.delivered.append(message["content"])
        return b""


class GenericStreamHandler(BodyHandler):
    """
    An SSE stream relayed unchanged (other ``/v1/*`` endpoints): events are
    parsed only to find usage (``usage`` at the top or under ``response``).
    """

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        self.decoder = SSEDecoder()

    def data(self, data: bytes) -> bytes:
        out = []
        for event in self.decoder.feed(data):
            raw = self.event(event)
            if raw:
                out.append(raw)
        return b"".join(out)

    def end(self) -> bytes:
        return b"".join(self.event(e) or b"" for e in self.decoder.flush())

    def event(self, event: SSEEvent) -> Optional[bytes]:
        if '"usage"' in event.data:
            try:
                obj = json.loads(event.data)
            except ValueError:
                return event.raw
            if isinstance(obj, dict):
                inner = obj.get("response")
                self.facts.take_body(inner if isinstance(inner, dict) else obj)
        return event.raw

    def failed(self, message: str) -> bytes:
        return b"event: error\ndata: " + json.dumps(
            {"error": {"message": message, "type": "server_error", "param": None, "code": "upstream_error"}}
        ).encode() + b"\n\n"

    @property
    def can_report_failure(self) -> bool:
        return True


class OpenAIChatStreamHandler(GenericStreamHandler):
    """
    An OpenAI ``chat.completion.chunk`` stream.

    The proxy asks for usage (``stream_options.include_usage``) on every
    stream; when the client did not, the extra usage-only chunk is hidden
    from it.  Delivered text (content and tool-call arguments) is kept so a
    stream cut short can be billed for what the client received.
    """

    def __init__(self, facts: UsageFacts, client_wants_usage: bool) -> None:
        super().__init__(facts)
        self.client_wants_usage = client_wants_usage

    def event(self, event: SSEEvent) -> Optional[bytes]:
        data = event.data
        if data == "[DONE]" or not data:
            return event.raw
        try:
            chunk = json.loads(data)
        except ValueError:
            return event.raw
        if not isinstance(chunk, dict):
            return event.raw
        facts = self.facts
        if facts.response_id is None:
            facts.response_id = chunk.get("id")
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if usage:
            facts.take_usage(usage)
            facts.take_service_tier(chunk.get("service_tier"))
            if not choices and not self.client_wants_usage:
                return None
        if choices:
            facts.take_delivered_choices(choices)
        elif "error" in chunk:
            facts.error_type = _error_type(chunk["error"])
        return event.raw

    def failed(self, message: str) -> bytes:
        return b"data: " + json.dumps(
            {"error": {"message": message, "type": "server_error", "param": None, "code": "upstream_error"}}
        ).encode() + b"\n\n"


def _error_type(error: Any) -> Optional[str]:
    if isinstance(error, dict):
        value = error.get("type") or error.get("code")
        return str(value) if value is not None else None
    return None
