# Tests: tests/test_anthropic_response.py
"""
An Anthropic Messages reply, rewritten as an OpenAI ``chat.completion``.

The OpenAI view folds cache reads and writes into ``prompt_tokens``, because
that is what OpenAI clients sum.  Billing must not: cache reads and cache
writes are priced differently from plain input, so ``AnthropicUsage`` keeps
all four figures apart and is returned beside the OpenAI body.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import attrs

__all__ = [
    "AnthropicUsage",
    "anthropic_to_openai_response",
    "completion_id",
    "map_stop_reason",
]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@attrs.frozen(kw_only=True)
class AnthropicUsage:
    """
    Anthropic's token figures, kept apart for pricing.

    ``input_tokens`` excludes the cached parts: the prompt the model saw is
    ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @classmethod
    def from_anthropic(
        cls, usage: Optional[Mapping[str, Any]], base: Optional[AnthropicUsage] = None
    ) -> AnthropicUsage:
        """
        Read an Anthropic ``usage`` object.  Figures it lacks (or sets to
        null) keep their value from ``base``: a stream's ``message_delta``
        reports cumulative output but not always the input again.
        """
        base = base or cls()
        usage = usage or {}
        fields: dict[str, int] = {}
        for field in attrs.fields(cls):
            value = usage.get(field.name)
            fields[field.name] = _count(value) if value is not None else getattr(base, field.name)
        return cls(**fields)

    @property
    def prompt_tokens(self) -> int:
        """
        Everything the model read, cached or not, as OpenAI counts it.
        """
        return (
            self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
        )

    def to_openai(self) -> dict[str, Any]:
        """
        OpenAI's ``CompletionUsage`` for these figures.
        """
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_input_tokens},
        }


_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def map_stop_reason(stop_reason: Optional[str]) -> str:
    """
    Anthropic's ``stop_reason`` as an OpenAI ``finish_reason``; anything
    unknown or missing reads as ``"stop"``, the one value every client
    handles.
    """
    return _STOP_REASONS.get(stop_reason or "", "stop")


def completion_id(message_id: Any) -> str:
    """
    The OpenAI completion id for an Anthropic message id: the Anthropic id
    is kept so that a support request can be traced upstream.
    """
    return f"chatcmpl-{message_id}" if isinstance(message_id, str) and message_id else (
        "chatcmpl-anthropic"
    )


def anthropic_to_openai_response(
    message: Mapping[str, Any], *, model: str, created: int
) -> tuple[dict[str, Any], AnthropicUsage]:
    """
    The ``chat.completion`` for an Anthropic ``message``, and its usage.

    ``model`` is the name the client should see; ``created`` the Unix time
    to report.  Thinking blocks and server-tool blocks are not part of the
    OpenAI reply and are left out.  ``content`` is null only when the model
    answered with tool calls alone.
    """
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    usage = AnthropicUsage.from_anthropic(message.get("usage"))
    body = {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": map_stop_reason(message.get("stop_reason")),
            }
        ],
        "usage": usage.to_openai(),
    }
    return body, usage
