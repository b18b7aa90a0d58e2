"""
Tests for dd0c_route.providers.anthropic_response: Anthropic replies
rewritten as OpenAI chat completions, with usage kept apart for billing.
"""

from __future__ import annotations

from typing import Any

import pytest

from dd0c_route.providers.anthropic_translate import (
    AnthropicUsage,
    anthropic_to_openai_response,
    map_stop_reason,
)

try:
    from openapi_schema import validate
except ImportError:  # tests/ collected as a package
    from tests.openapi_schema import validate

CREATED = 1741569952
SHOWN = "claude-sonnet-4"


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **usage},
    }


def translate(msg: dict[str, Any]) -> tuple[dict[str, Any], AnthropicUsage]:
    body, usage = anthropic_to_openai_response(msg, model=SHOWN, created=CREATED)
    validate("CreateChatCompletionResponse", body)
    return body, usage


def test_text_reply() -> None:
    """
    A text reply becomes a complete, schema-valid chat.completion with the
    Anthropic id kept behind the chatcmpl- prefix.
    """
    body, usage = translate(message([{"type": "text", "text": "Hello!"}]))
    assert body == {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": CREATED,
        "model": SHOWN,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 6,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    assert usage == AnthropicUsage(input_tokens=12, output_tokens=6)


def test_text_blocks_joined_thinking_skipped() -> None:
    """
    Several text blocks are joined; thinking blocks are not shown.
    """
    body, _ = translate(
        message(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
            ]
        )
    )
    assert body["choices"][0]["message"]["content"] == "ab"


def test_tool_calls_only() -> None:
    """
    A reply of tool_use blocks alone has null content, tool_calls with the
    tool_use ids and JSON-encoded inputs, and finish_reason tool_calls.
    """
    body, _ = translate(
        message(
            [
                {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}},
            ],
            stop_reason="tool_use",
        )
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "toolu_B", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }


def test_text_and_tool_call() -> None:
    """
    Text before a tool call stays as content beside the tool call.
    """
    body, _ = translate(
        message(
            [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}},
            ],
            stop_reason="tool_use",
        )
    )
    assert body["choices"][0]["message"]["content"] == "Checking."
    assert len(body["choices"][0]["message"]["tool_calls"]) == 1


def test_empty_reply_has_empty_content() -> None:
    """
    A reply with no blocks (e.g. max_tokens hit at once) has content ""
    rather than null, since there are no tool calls to carry it.
    """
    body, _ = translate(message([], stop_reason="max_tokens"))
    assert body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons(stop_reason: Any, finish_reason: str) -> None:
    """
    Every Anthropic stop_reason maps to a valid OpenAI finish_reason.
    """
    assert map_stop_reason(stop_reason) == finish_reason


def test_cache_usage() -> None:
    """
    Cache reads and writes count in prompt_tokens (cache reads also as
    cached_tokens) while AnthropicUsage keeps all four figures apart.
    """
    body, usage = translate(
        message(
            [{"type": "text", "text": "ok"}],
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=200,
        )
    )
    assert body["usage"] == {
        "prompt_tokens": 1212,
        "completion_tokens": 6,
        "total_tokens": 1218,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert usage == AnthropicUsage(
        input_tokens=12,
        output_tokens=6,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=200,
    )


def test_null_cache_fields() -> None:
    """
    Cache fields reported as null count as zero.
    """
    usage = AnthropicUsage.from_anthropic(
        {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": None}
    )
    assert usage == AnthropicUsage(input_tokens=3, output_tokens=4)


def test_usage_update_keeps_base() -> None:
    """
    A partial usage object (a stream's message_delta) updates only the
    figures it carries.
    """
    base = AnthropicUsage(input_tokens=10, output_tokens=1, cache_read_input_tokens=5)
    assert AnthropicUsage.from_anthropic({"output_tokens": 40}, base) == AnthropicUsage(
        input_tokens=10, output_tokens=40, cache_read_input_tokens=5
    )
