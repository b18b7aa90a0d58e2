# Tests: tests/test_relay.py, tests/test_disconnect.py
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
from typing import Any, Callable, Optional

from ..metering.usage import UsageFacts
from ..shapes import openai_error, sse_error_frame
from .failures import InvalidAnswer
from .sse import SSEDecoder, SSEEvent

__all__ = [
    "BodyHandler",
    "GenericStreamHandler",
    "JSONBodyHandler",
    "any_object",
    "chat_completion_or_error",
    "stream_error_type",
]

#: Non-stream bodies are teed up to this size to read their usage; larger
#: ones are relayed without being parsed (and counted as unknown usage).
MAX_TEE_BYTES = 8 * 1024 * 1024


class BodyHandler:
    """
    Base: relay bytes unchanged.

    A handler that is :attr:`buffered` sees the whole answer before the
    status goes out (``end`` may then raise
    :class:`~dd0c_route.relay.failures.InvalidAnswer`, and the client gets
    a 502 instead of a broken 200); one that :attr:`expects_sse` refuses a
    response that is not ``text/event-stream``; a stream handler sets
    :attr:`invalid` when an event is unusable, and the exchange ends the
    stream with an error event there.
    """

    content_type: Optional[bytes] = None
    expects_sse = False

    def __init__(self, facts: UsageFacts) -> None:
        self.facts = facts
        self.buffered = False
        self.invalid: Optional[str] = None

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


def any_object(body: dict[str, Any]) -> bool:
    """Any JSON object is a usable answer (other ``/v1/*`` endpoints)."""
    return True


class JSONBodyHandler(BodyHandler):
    """
    A non-stream JSON body, buffered (up to :data:`MAX_TEE_BYTES`) and
    checked before the status goes out: it must parse as a JSON object that
    ``expect`` accepts (a completion, a message, an error shape).  ``id``
    and ``usage`` are read from it.  A larger body is relayed as it
    arrives, unchecked and unmetered.
    """

    def __init__(self, facts: UsageFacts, expect: Callable[[dict[str, Any]], bool] = any_object) -> None:
        super().__init__(facts)
        self.buffered = True
        self._expect = expect
        self._buffer = bytearray()

    def data(self, data: bytes) -> bytes:
        if not self.buffered:
            return data
        buffer = self._buffer
        if len(buffer) + len(data) > MAX_TEE_BYTES:
            self.buffered = False
            out = bytes(buffer) + data
            self._buffer = bytearray()
            return out
        buffer += data
        return b""

    def end(self) -> bytes:
        if not self.buffered:
            return b""
        raw = bytes(self._buffer)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidAnswer("the body is not JSON") from None
        if not isinstance(body, dict) or not self._expect(body):
            raise InvalidAnswer("the body is not the JSON object expected")
        self.facts.take_body(body)
        if not self.facts.usage_seen:
            # No usage reported: keep the reply text for a local count.
            for choice in body.get("choices") or ():
                message = choice.get("message") if isinstance(choice, dict) else None
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    self.facts.delivered.append(message["content"])
        return raw


def chat_completion_or_error(body: dict[str, Any]) -> bool:
    """A ``chat.completion`` (it has ``choices``) or an error object."""
    return isinstance(body.get("choices"), list) or isinstance(body.get("error"), dict)


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
            if self.invalid is not None:
                break
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
        return sse_error_frame(openai_error(message, "server_error", None, "upstream_error"), event="error")

    @property
    def can_report_failure(self) -> bool:
        return True


def stream_error_type(error: Any) -> Optional[str]:
    if isinstance(error, dict):
        value = error.get("type") or error.get("code")
        return str(value) if value is not None else None
    return None
