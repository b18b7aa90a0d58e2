"""
Tests for dd0c_route.providers.anthropic_stream: Anthropic stream events
rewritten as OpenAI chat.completion.chunk dicts.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from dd0c_route.providers.anthropic_translate import (
    AnthropicStreamError,
    AnthropicToOpenAIStream,
    AnthropicUsage,
)

try:
    from openapi_schema import validate_sse_stream
except ImportError:  # tests/ collected as a package
    from tests.openapi_schema import validate_sse_stream

CREATED = 1741569952
SHOWN = "claude-sonnet-4"
ID = "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U"

Event = tuple[str, dict[str, Any]]


def message_start(input_tokens: int = 25, **cache: int) -> Event:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1, **cache},
            },
        },
    )


def text_block(index: int, pieces: list[str]) -> list[Event]:
    events: list[Event] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
    ]
    for piece in pieces:
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def tool_block(index: int, tool_id: str, name: str, fragments: list[str]) -> list[Event]:
    events: list[Event] = [
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
            },
        )
    ]
    for fragment in fragments:
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                },
            )
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def message_end(stop_reason: str = "end_turn", output_tokens: int = 15) -> list[Event]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


PING: Event = ("ping", {"type": "ping"})


def run(events: list[Event], include_usage: bool = False) -> tuple[list[dict[str, Any]], AnthropicToOpenAIStream]:
    """
    Feed every event, validate the whole stream against OpenAI's schema,
    and check the official SDK parses every chunk.
    """
    stream = AnthropicToOpenAIStream(SHOWN, CREATED, include_usage)
    chunks: list[dict[str, Any]] = []
    for event_type, data in events:
        chunks.extend(stream.feed(event_type, data))
    validate_sse_stream(chunks)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks, stream


def test_text_stream() -> None:
    """
    A text stream becomes a role chunk, one chunk per text delta, and a
    finish chunk with an empty delta; pings produce nothing.
    """
    events = [message_start(), PING, *text_block(0, ["Hello", " world"]), *message_end()]
    chunks, stream = run(events)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " world"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert chunks[0] == {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": SHOWN,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        ],
    }
    assert stream.finished
    assert stream.finish_reason == "stop"


def test_include_usage() -> None:
    """
    With include_usage every chunk carries usage null, and a last chunk
    with empty choices carries the usage from message_start and the
    cumulative output from message_delta.
    """
    events = [
        message_start(25, cache_read_input_tokens=100, cache_creation_input_tokens=7),
        *text_block(0, ["Hi"]),
        *message_end(output_tokens=15),
    ]
    chunks, stream = run(events, include_usage=True)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1] == {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": SHOWN,
        "choices": [],
        "usage": {
            "prompt_tokens": 132,
            "completion_tokens": 15,
            "total_tokens": 147,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }
    assert stream.usage == AnthropicUsage(
        input_tokens=25, output_tokens=15, cache_read_input_tokens=100, cache_creation_input_tokens=7
    )


def test_usage_while_streaming() -> None:
    """
    usage is available before the end: input after message_start, output
    after message_delta, for billing a stream cut short.
    """
    stream = AnthropicToOpenAIStream(SHOWN, CREATED, False)
    stream.feed(*message_start(40))
    assert stream.usage == AnthropicUsage(input_tokens=40, output_tokens=1)
    assert not stream.finished
    stream.feed(*message_end(output_tokens=9)[0])
    assert stream.usage == AnthropicUsage(input_tokens=40, output_tokens=9)
    assert not stream.finished


def test_parallel_tool_calls_after_text() -> None:
    """
    Two tool_use blocks after a text block get tool call indexes 0 and 1
    (not their block indexes 1 and 2); each first delta carries id, type,
    name and empty arguments, and the fragments concatenate to the JSON.
    """
    events = [
        message_start(),
        *text_block(0, ["Let me check both."]),
        *tool_block(1, "toolu_A", "get_weather", ["", '{"city":', ' "Paris"}']),
        *tool_block(2, "toolu_B", "get_weather", ['{"city": "Oslo"}']),
        *message_end("tool_use"),
    ]
    chunks, _ = run(events)
    tool_deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert tool_deltas == [
        {"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city":'}},
        {"index": 0, "function": {"arguments": ' "Paris"}'}},
        {"index": 1, "id": "toolu_B", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "function": {"arguments": '{"city": "Oslo"}'}},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    final = state.get_final_completion().choices[0]
    assert final.message.content == "Let me check both."
    assert [(t.id, json.loads(t.function.arguments)) for t in final.message.tool_calls or []] == [
        ("toolu_A", {"city": "Paris"}),
        ("toolu_B", {"city": "Oslo"}),
    ]


def test_thinking_skipped() -> None:
    """
    Thinking blocks and their deltas produce no chunks.
    """
    thinking: list[Event] = [
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "x"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]
    chunks, _ = run([message_start(), *thinking, *text_block(1, ["ok"]), *message_end()])
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "ok"}, {}]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    """
    The stop_reason in message_delta becomes the final chunk's finish_reason.
    """
    chunks, _ = run([message_start(), *text_block(0, ["x"]), *message_end(stop_reason)])
    assert chunks[-1]["choices"][0]["finish_reason"] == finish_reason


def test_error_event() -> None:
    """
    An error event raises AnthropicStreamError carrying the OpenAI error
    payload; the stream then produces nothing more.
    """
    stream = AnthropicToOpenAIStream(SHOWN, CREATED, True)
    stream.feed(*message_start())
    stream.feed(*text_block(0, ["partial"])[1])
    with pytest.raises(AnthropicStreamError) as info:
        stream.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert info.value.payload == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": "overloaded"}
    }
    assert not stream.finished
    assert stream.feed(*message_end()[1]) == []


def test_content_before_start() -> None:
    """
    A content event before message_start is a malformed stream: it raises
    with a server_error payload instead of emitting chunks without an id.
    """
    stream = AnthropicToOpenAIStream(SHOWN, CREATED, False)
    with pytest.raises(AnthropicStreamError) as info:
        stream.feed(*text_block(0, ["x"])[1])
    assert info.value.payload["error"]["type"] == "server_error"


def test_unknown_events_ignored() -> None:
    """
    Unknown event types and unknown block types are ignored, as Anthropic's
    versioning policy asks.
    """
    events = [
        message_start(),
        ("future_event", {"type": "future_event"}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *text_block(1, ["x"]),
        *message_end(),
    ]
    chunks, _ = run(events)
    assert len(chunks) == 3


def test_message_stop_without_delta() -> None:
    """
    A message_stop without a message_delta still ends the stream with a
    finish chunk (and the usage chunk when asked).
    """
    chunks, stream = run([message_start(), *text_block(0, ["x"]), ("message_stop", {"type": "message_stop"})], include_usage=True)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert stream.finished


@given(text=st.text(), cuts=st.lists(st.integers(min_value=0), max_size=20), include_usage=st.booleans())
def test_any_split_of_text(text: str, cuts: list[int], include_usage: bool) -> None:
    """
    For any split of a text into deltas, the concatenated OpenAI content
    equals the text, and there is exactly one chunk per delta plus the
    framing (role, finish, and usage when asked).
    """
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]
    chunks, _ = run([message_start(), *text_block(0, pieces), *message_end()], include_usage)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == text
    assert len(chunks) == len(pieces) + 2 + (1 if include_usage else 0)
