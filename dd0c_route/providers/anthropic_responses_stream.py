# Tests: tests/test_anthropic_responses.py, tests/test_live_responses.py
"""
An Anthropic Messages stream as a Responses API event stream, event by
event, and the body handlers that serve Claude models on ``/v1/responses``.

``message_start`` becomes ``response.created`` + ``response.in_progress``;
each text block one ``message`` output item (``output_item.added``,
``content_part.added``, ``output_text.delta``…, ``output_text.done``,
``content_part.done``, ``output_item.done``); each ``tool_use`` block one
``function_call`` item (``function_call_arguments.delta``… and ``.done``);
``message_stop`` ``response.completed`` (or ``response.incomplete``) with
the usage.  An Anthropic ``error`` event, or a stream that ends before
``message_stop``, becomes an ``error`` event (the SDKs raise on it).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from ..metering.usage import UsageFacts
from ..relay.handlers import MAX_TEE_BYTES, BodyHandler
from ..relay.responses_stream import delivered_output, responses_error_event
from ..relay.sse import SSEDecoder, SSEEvent
from .anthropic_errors import anthropic_error_to_openai_payload
from .anthropic_response import AnthropicUsage
from .anthropic_responses import ResponseShape, message_to_response, response_usage, status_of

__all__ = ["AnthropicToResponsesStream", "ResponsesTranslatedJSONHandler", "ResponsesTranslatedStreamHandler"]

Event = dict[str, Any]


class ResponsesStreamFailed(Exception):
    """The upstream stream failed; ``code`` and ``message`` go in the ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Block:
    __slots__ = ("arguments", "call_id", "item_id", "kind", "name", "output_index", "text")

    def __init__(self, kind: str, output_index: int, item_id: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.output_index = output_index
        self.item_id = item_id
        self.call_id = call_id
        self.name = name
        self.text: list[str] = []
        self.arguments: list[str] = []


class AnthropicToResponsesStream:
    """Translates one stream; see the module docstring.  ``feed`` returns the events to send."""

    def __init__(self, shape: ResponseShape) -> None:
        self.shape = shape
        self.response_id: Optional[str] = None
        self.finished = False
        self._seq = 0
        self._blocks: dict[int, _Block] = {}
        self._output: list[Optional[Event]] = []
        self._usage = AnthropicUsage()
        self._stop_reason: Optional[str] = None

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    @property
    def next_sequence(self) -> int:
        return self._seq

    def feed(self, kind: str, data: Mapping[str, Any]) -> list[Event]:
        if self.finished:
            return []
        if kind == "error":
            error = anthropic_error_to_openai_payload(data)["error"]
            raise ResponsesStreamFailed(str(error.get("code") or error.get("type") or "upstream_error"), str(error.get("message")))
        if kind == "message_start":
            return self._message_start(data)
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"):
            return []
        if self.response_id is None:
            raise ResponsesStreamFailed("upstream_error", f"The upstream stream was malformed ({kind} before message_start).")
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            usage = data.get("usage")
            self._usage = AnthropicUsage.from_anthropic(usage if isinstance(usage, dict) else None, self._usage)
            return []
        return self._message_stop()

    def _message_start(self, data: Mapping[str, Any]) -> list[Event]:
        message = data.get("message")
        message = message if isinstance(message, dict) else {}
        usage = message.get("usage")
        self._usage = AnthropicUsage.from_anthropic(usage if isinstance(usage, dict) else None)
        self.response_id = self.shape.response_id(message.get("id"))
        response = self.shape.response(self.response_id, "in_progress", [])
        return [self._event("response.created", response=response), self._event("response.in_progress", response=response)]

    def _block_start(self, data: Mapping[str, Any]) -> list[Event]:
        index = _index(data)
        block = data.get("content_block")
        block = block if isinstance(block, dict) else {}
        output_index = len(self._output)
        assert self.response_id is not None
        shape = self.shape
        if block.get("type") == "text":
            state = _Block("text", output_index, shape.message_item_id(self.response_id, index))
            self._blocks[index] = state
            self._output.append(None)
            events = [
                self._event("response.output_item.added", output_index=output_index, item=shape.message_item(state.item_id, "", "in_progress", with_part=False)),
                self._event("response.content_part.added", item_id=state.item_id, output_index=output_index, content_index=0, part=shape.text_part("")),
            ]
            if block.get("text"):
                events += self._text(state, str(block["text"]))
            return events
        if block.get("type") == "tool_use":
            call_id = str(block.get("id"))
            state = _Block("tool", output_index, shape.call_item_id(call_id), call_id, str(block.get("name")))
            self._blocks[index] = state
            self._output.append(None)
            item = shape.call_item(call_id, state.name, "", "in_progress")
            return [self._event("response.output_item.added", output_index=output_index, item=item)]
        return []  # thinking and other blocks: nothing a Responses client asked for

    def _text(self, state: _Block, text: str) -> list[Event]:
        state.text.append(text)
        return [self._event("response.output_text.delta", item_id=state.item_id, output_index=state.output_index, content_index=0, delta=text, logprobs=[])]

    def _block_delta(self, data: Mapping[str, Any]) -> list[Event]:
        state = self._blocks.get(_index(data))
        delta = data.get("delta")
        if state is None or not isinstance(delta, dict):
            return []
        if state.kind == "text" and delta.get("type") == "text_delta" and delta.get("text"):
            return self._text(state, str(delta["text"]))
        if state.kind == "tool" and delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            piece = str(delta["partial_json"])
            state.arguments.append(piece)
            return [self._event("response.function_call_arguments.delta", item_id=state.item_id, output_index=state.output_index, delta=piece)]
        return []

    def _block_stop(self, data: Mapping[str, Any]) -> list[Event]:
        state = self._blocks.pop(_index(data), None)
        if state is None:
            return []
        shape = self.shape
        if state.kind == "text":
            text = "".join(state.text)
            item = shape.message_item(state.item_id, text, "completed")
            self._output[state.output_index] = item
            return [
                self._event("response.output_text.done", item_id=state.item_id, output_index=state.output_index, content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=state.item_id, output_index=state.output_index, content_index=0, part=shape.text_part(text)),
                self._event("response.output_item.done", output_index=state.output_index, item=item),
            ]
        arguments = "".join(state.arguments) or "{}"
        item = shape.call_item(state.call_id, state.name, arguments, "completed")
        self._output[state.output_index] = item
        return [
            self._event("response.function_call_arguments.done", item_id=state.item_id, name=state.name, output_index=state.output_index, arguments=arguments),
            self._event("response.output_item.done", output_index=state.output_index, item=item),
        ]

    def _message_stop(self) -> list[Event]:
        self.finished = True
        assert self.response_id is not None
        status, incomplete = status_of(self._stop_reason)
        output = [item for item in self._output if item is not None]
        response = self.shape.response(self.response_id, status, output, response_usage(self._usage), incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [self._event(kind, response=response)]


def _index(data: Mapping[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) else 0


def _sse(event: Event) -> bytes:
    return b"event: " + event["type"].encode("ascii") + b"\ndata: " + json.dumps(event).encode("utf-8") + b"\n\n"


class ResponsesTranslatedJSONHandler(BodyHandler):
    """A whole Anthropic ``message``, buffered (bounded), answered as one ``response`` object."""

    content_type = b"application/json"

    def __init__(self, facts: UsageFacts, shape: ResponseShape) -> None:
        super().__init__(facts)
        self._shape = shape
        self._buffer = bytearray()

    def data(self, data: bytes) -> bytes:
        if len(self._buffer) + len(data) > MAX_TEE_BYTES:
            raise ValueError("Anthropic reply larger than the translation limit")
        self._buffer += data
        return b""

    def end(self) -> bytes:
        message = json.loads(bytes(self._buffer))
        if not isinstance(message, dict):
            raise ValueError("Anthropic reply is not a JSON object")
        response = message_to_response(message, self._shape)
        facts = self.facts
        facts.take_usage(message.get("usage"))
        facts.response_id = response["id"]
        if not facts.usage_seen:
            delivered_output(response, facts)
        return json.dumps(response).encode("utf-8")


class ResponsesTranslatedStreamHandler(BodyHandler):
    """Anthropic stream events in, Responses events out, each written as its event arrives."""

    content_type = b"text/event-stream"

    def __init__(self, facts: UsageFacts, shape: ResponseShape) -> None:
        super().__init__(facts)
        self._decoder = SSEDecoder()
        self._translator = AnthropicToResponsesStream(shape)
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
            out += responses_error_event("the upstream stream ended before message_stop", self._translator.next_sequence)
        return out

    def failed(self, message: str) -> bytes:
        if self._over:
            return b""
        self._over = True
        return responses_error_event(message, self._translator.next_sequence)

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
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                # Output comes from message_delta; a cut before it is counted locally.
                facts.take_usage({k: v for k, v in usage.items() if k != "output_tokens"})
        elif kind == "message_delta":
            facts.take_usage(data.get("usage"))
        try:
            events = self._translator.feed(kind, data)
        except ResponsesStreamFailed as error:
            self._over = True
            facts.error_type = error.code
            return responses_error_event(error.message, self._translator.next_sequence, error.code)
        out = []
        delivered = facts.delivered
        for item in events:
            kind = item["type"]
            if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
                delivered.append(item["delta"])
            elif kind == "response.output_item.added" and item["item"]["type"] == "function_call":
                delivered.append(item["item"]["name"])
            elif kind == "response.created":
                facts.response_id = item["response"]["id"]
            out.append(_sse(item))
        if self._translator.finished:
            self._over = True
        return b"".join(out)
