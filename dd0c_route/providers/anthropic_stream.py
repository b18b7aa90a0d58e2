# Tests: tests/test_anthropic_stream.py
"""
Anthropic stream events, rewritten as OpenAI ``chat.completion.chunk`` dicts.

The translator is a small state machine fed one parsed SSE event at a time;
it never buffers text, so the client sees each token as soon as Anthropic
sends it.  Tool calls get their own ``index`` counter (0, 1, ... in order of
tool blocks) because OpenAI clients accumulate tool call fragments by that
index, and Anthropic's content block index also counts text blocks.

Framing, in order: one role chunk (at ``message_start``), the content
chunks, one chunk with the ``finish_reason`` (at ``message_delta``), and --
when the client asked for ``stream_options.include_usage`` -- one usage chunk
with empty ``choices`` (at ``message_stop``).  The caller then writes
``data: [DONE]``.  An ``error`` event raises ``AnthropicStreamError`` carrying
the payload the caller writes instead.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from dd0c_route.providers.anthropic_errors import anthropic_error_to_openai_payload
from dd0c_route.providers.anthropic_response import (
    AnthropicUsage,
    completion_id,
    map_stop_reason,
)

__all__ = ["AnthropicStreamError", "AnthropicToOpenAIStream"]


class AnthropicStreamError(Exception):
    """
    The upstream stream failed (an ``error`` event, or events out of
    order).  ``payload`` is the OpenAI ``{"error": {...}}`` object to send
    as the last ``data:`` line, in place of ``[DONE]``.
    """

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["error"]["message"])
        self.payload = payload


class AnthropicToOpenAIStream:
    """
    Translate one Anthropic message stream for one client.

    Not thread-safe and not reusable: one instance per response.
    """

    def __init__(self, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id: Optional[str] = None
        self._usage = AnthropicUsage()
        self._tool_index_by_block: dict[int, int] = {}
        self._finish_reason: Optional[str] = None
        self._finished = False
        self._failed = False

    @property
    def usage(self) -> AnthropicUsage:
        """
        The usage reported so far: input at ``message_start``, cumulative
        output at each ``message_delta``.  What to bill after a cut stream.
        """
        return self._usage

    @property
    def finished(self) -> bool:
        """
        True once ``message_stop`` was translated: the stream is complete.
        """
        return self._finished

    @property
    def finish_reason(self) -> Optional[str]:
        """
        The OpenAI ``finish_reason`` sent, or None before ``message_delta``.
        """
        return self._finish_reason

    def feed(self, event_type: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """
        The chunks to send for one Anthropic event (often none).

        Raises ``AnthropicStreamError`` on an ``error`` event or on a content
        event before ``message_start``.  Unknown event types are ignored, as
        Anthropic's versioning policy asks.  Nothing is produced once the
        stream has finished or failed.
        """
        if self._finished or self._failed:
            return []
        if event_type == "error":
            self._failed = True
            raise AnthropicStreamError(anthropic_error_to_openai_payload(data))
        if event_type == "message_start":
            return self._message_start(data)
        handler = self._HANDLERS.get(event_type)
        if handler is None:
            return []
        if self._id is None:
            self._failed = True
            raise AnthropicStreamError(
                anthropic_error_to_openai_payload(
                    {
                        "type": "api_error",
                        "message": "The upstream stream was malformed "
                        f"({event_type} before message_start).",
                    }
                )
            )
        return handler(self, data)

    def _chunk(
        self, delta: dict[str, Any], finish_reason: Optional[str] = None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _message_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self._id is not None:
            return []
        message = data.get("message")
        message = message if isinstance(message, Mapping) else {}
        self._id = completion_id(message.get("id"))
        self._usage = AnthropicUsage.from_anthropic(message.get("usage"), self._usage)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block")
        if not isinstance(block, Mapping):
            return []
        if block.get("type") == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if block.get("type") != "tool_use":
            return []
        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[_block_index(data)] = tool_index
        return [
            self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": tool_index,
                            "id": str(block.get("id", "")),
                            "type": "function",
                            "function": {"name": str(block.get("name", "")), "arguments": ""},
                        }
                    ]
                }
            )
        ]

    def _block_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text if isinstance(text, str) else ""})]
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool_index = self._tool_index_by_block.get(_block_index(data))
            if tool_index is None or not isinstance(fragment, str) or not fragment:
                return []
            return [
                self._chunk(
                    {"tool_calls": [{"index": tool_index, "function": {"arguments": fragment}}]}
                )
            ]
        # thinking_delta, signature_delta, citations_delta: not in OpenAI's view.
        return []

    def _message_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self._usage = AnthropicUsage.from_anthropic(usage, self._usage)
        if self._finish_reason is not None:
            return []
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        self._finish_reason = map_stop_reason(stop_reason)
        return [self._chunk({}, self._finish_reason)]

    def _block_stop(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        return []

    def _message_stop(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        if self._finish_reason is None:
            self._finish_reason = map_stop_reason(None)
            chunks.append(self._chunk({}, self._finish_reason))
        if self._include_usage:
            chunks.append(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": self._usage.to_openai(),
                }
            )
        self._finished = True
        return chunks

    _HANDLERS: Mapping[
        str, Callable[[AnthropicToOpenAIStream, Mapping[str, Any]], list[dict[str, Any]]]
    ] = {
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
    }


def _block_index(data: Mapping[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) else -1
