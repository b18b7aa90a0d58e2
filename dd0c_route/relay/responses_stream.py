# Tests: tests/test_live_responses.py, tests/test_provider_contract.py
"""
Body handlers for the Responses API (``POST /v1/responses``), relayed.

The stream is relayed event for event, unchanged; on the way the handler
keeps what the meter needs: the response id (``response.created``), the
provider's usage (on ``response.completed``, ``response.incomplete`` or
``response.failed``), and every piece of output the client was handed --
text, refusal and function-call argument deltas, and function names -- so
that a stream cut by either side before its final event is billed on what
was delivered, counted locally.  Before the first delta nothing was
delivered, so such a cut bills 0 output tokens.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..metering.usage import EscapedText, UsageFacts
from .event_blocks import EventBlockHandler
from .handlers import JSONBodyHandler
from .sse import SSEEvent

__all__ = ["ResponsesJSONHandler", "ResponsesStreamHandler", "delivered_output", "response_or_error", "responses_error_event"]

#: Events whose ``delta`` is output handed to the client.
_DELTAS = frozenset({
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
})
#: Events that end a response and carry its usage.
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Events read for nothing: relayed without parsing.
_SKIP = frozenset({
    "response.in_progress",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.refusal.done",
    "response.function_call_arguments.done",
    "response.output_item.done",
})


def responses_error_event(message: str, sequence_number: int, code: str = "upstream_error") -> bytes:
    """An SSE ``error`` event (``ResponseErrorEvent``) the SDKs raise on."""
    payload = {"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number}
    return b"event: error\ndata: " + json.dumps(payload).encode("utf-8") + b"\n\n"


def delivered_output(response: Any, facts: UsageFacts) -> None:
    """Keep a whole Response object's output (text, refusals, function calls) for a local count."""
    if not isinstance(response, dict):
        return
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            for key in ("name", "arguments"):
                if isinstance(item.get(key), str) and item[key]:
                    facts.delivered.append(item[key])
            continue
        for part in item.get("content") or ():
            if isinstance(part, dict):
                text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                if isinstance(text, str) and text:
                    facts.delivered.append(text)


def response_or_error(body: dict[str, Any]) -> bool:
    """A ``response`` object or an error object."""
    return body.get("object") == "response" or isinstance(body.get("error"), dict)


class ResponsesJSONHandler(JSONBodyHandler):
    """
    A whole ``response`` object: checked before the status goes out (see
    :class:`JSONBodyHandler`), read for id and usage (its output when usage
    is missing).
    """

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts, response_or_error)

    def end(self) -> bytes:
        raw = super().end()
        if raw and not self.facts.usage_seen:
            delivered_output(json.loads(raw), self.facts)
        return raw


#: The bulk of a stream: one text delta, ``event:`` then one ``data:`` line.
_TEXT_DELTA = b"event: response.output_text.delta\ndata: {"
_TEXT_DELTA_SIZE = len(_TEXT_DELTA)
_DELTA = re.compile(rb'"delta"\s*:\s*"((?:[^"\\]|\\.)*)"')
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)[\s,}]')


class ResponsesStreamHandler(EventBlockHandler):
    """
    A Responses event stream relayed unchanged; see the module docstring.

    Text deltas, most of a stream, are read without a parse (issue #18):
    each TCP read is cut at its last event boundary, and an event that is
    exactly ``event: response.output_text.delta`` and one ``data: {...}``
    line with one ``"delta"`` string and one ``"sequence_number"`` gives
    both by a byte scan, the delta kept JSON-escaped
    (:class:`~dd0c_route.metering.usage.EscapedText`) and decoded only if
    the meter needs it.  The scan trusts the event's documented flat shape
    (``ResponseTextDeltaEvent``: its only ``"delta"`` key is the top one;
    ``logprobs`` entries have none).  Every other event, and every stream with CR line
    ends, takes :meth:`event` (a full parse), with the same results.
    """

    expects_sse = True

    def __init__(self, facts: UsageFacts) -> None:
        super().__init__(facts)
        self.sequence = -1
        self._escaped = EscapedText()
        facts.delivered = self._escaped

    def scan(self, event: bytes) -> bool:
        if event[:_TEXT_DELTA_SIZE] != _TEXT_DELTA or event[-1:] != b"}" or event.count(b"\n") != 1:
            return False
        deltas = _DELTA.findall(event)
        numbers = _SEQUENCE.findall(event)
        if len(deltas) != 1 or len(numbers) != 1 or event.count(b'"delta"') != 1 or event.count(b'"sequence_number"') != 1:
            return False
        self.sequence = int(numbers[0])
        self._escaped.extend_escaped(deltas)
        return True

    def event(self, event: SSEEvent) -> Optional[bytes]:
        kind = event.event
        if kind in _SKIP or not event.data:
            return event.raw
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            # Never forwarded: the SDK would raise on it (issue #17).
            self.invalid = "an event that is not a JSON object"
            return None
        kind = kind or data.get("type")
        number = data.get("sequence_number")
        if isinstance(number, int):
            self.sequence = number
        facts = self.facts
        if kind in _DELTAS:
            delta = data.get("delta")
            if isinstance(delta, str) and delta:
                facts.delivered.append(delta)
        elif kind == "response.output_item.added":
            item = data.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call" and isinstance(item.get("name"), str):
                facts.delivered.append(item["name"])
        elif kind == "response.created":
            response = data.get("response")
            if isinstance(response, dict) and facts.response_id is None and isinstance(response.get("id"), str):
                facts.response_id = response["id"]
        elif kind in _FINAL:
            response = data.get("response")
            if isinstance(response, dict):
                facts.take_usage(response.get("usage"))
                error = response.get("error")
                if kind == "response.failed":
                    code = error.get("code") if isinstance(error, dict) else None
                    facts.error_type = str(code or "response_failed")
        elif kind == "error":
            facts.error_type = str(data.get("code") or data.get("type") or "upstream_error")
        return event.raw

    def failed(self, message: str) -> bytes:
        return responses_error_event(message, self.sequence + 1)
