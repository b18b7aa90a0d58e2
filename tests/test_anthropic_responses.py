"""
Claude behind ``/v1/responses``: the request translation, the whole reply
and the stream, event by event; every object and event the translation
produces is validated against OpenAI's published schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dd0c_route.metering.usage import UsageFacts
from dd0c_route.providers.anthropic_errors import TranslationError
from dd0c_route.providers.anthropic_responses import ResponseShape, message_to_response, responses_to_anthropic_request
from dd0c_route.providers.anthropic_responses_stream import (
    ResponsesTranslatedJSONHandler,
    ResponsesTranslatedStreamHandler,
)

from .openapi_schema import validate, validate_responses_stream

TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}]
REQUEST = {"model": "claude-sonnet-4-5", "input": "weather?", "tools": TOOLS, "instructions": "Be brief."}
START = {"type": "message_start", "message": {"id": "msg_01A", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
         "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1,
         "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0}}}


def tool_block(index: int, call_id: str, name: str, parts: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}},
        {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}},
        *({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}} for p in parts),
        {"type": "content_block_stop", "index": index},
    ]


def stream_events(stop_reason: str = "tool_use") -> list[dict[str, Any]]:
    return [
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "both."}},
        {"type": "content_block_stop", "index": 0},
        *tool_block(1, "toolu_01", "get_weather", ['{"city":', ' "Paris"}']),
        *tool_block(2, "toolu_02", "get_weather", ['{"city": "Oslo"}']),
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": 42}},
        {"type": "message_stop"},
    ]


def wire(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)


def parse(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]


def run_stream(events: list[dict[str, Any]], cut: bool = False) -> tuple[list[dict[str, Any]], UsageFacts]:
    facts = UsageFacts()
    handler = ResponsesTranslatedStreamHandler(facts, ResponseShape("claude-sonnet-4-5", 7, REQUEST))
    raw = wire(events)
    out = b"".join(handler.data(raw[i:i + 9]) for i in range(0, len(raw), 9))
    out += handler.failed("cut") if cut else handler.end()
    return parse(out), facts


def test_stream_events_validate_and_keep_ids_and_indexes() -> None:
    """Text then two parallel calls: schema-valid events, distinct ids and output indexes, usage at the end."""
    events, facts = run_stream(stream_events())
    validate_responses_stream(events)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [(0, "message"), (1, "function_call"), (2, "function_call")]
    assert [e["item"].get("call_id") for e in added[1:]] == ["toolu_01", "toolu_02"]
    done = {e["item_id"]: e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"}
    assert done == {"fc_toolu_01": '{"city": "Paris"}', "fc_toolu_02": '{"city": "Oslo"}'}
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [item["type"] for item in final["response"]["output"]] == ["message", "function_call", "function_call"]
    assert final["response"]["usage"]["input_tokens"] == 25
    assert final["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 5
    assert (facts.prompt_tokens, facts.completion_tokens, facts.cached_tokens) == (20, 42, 5)
    assert facts.response_id == "resp_msg_01A"


def test_max_tokens_is_an_incomplete_response() -> None:
    events, _ = run_stream(stream_events("max_tokens"))
    validate_responses_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_error_event_and_cut_stream_end_in_a_valid_error_event() -> None:
    """An Anthropic error, a stream without message_stop, a cut: each ends in a schema-valid error event."""
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    for events, cut in (([*stream_events()[:3], error], False), (stream_events()[:4], False), (stream_events()[:6], True)):
        out, facts = run_stream(events, cut)
        validate_responses_stream(out)
        assert out[-1]["type"] == "error"
        assert facts.completion_tokens is None
        assert "".join(facts.delivered).startswith("Checking")


def test_cut_before_the_first_delta_delivers_nothing() -> None:
    out, facts = run_stream(stream_events()[:2], cut=True)
    validate_responses_stream(out)
    assert "".join(facts.delivered) == ""


def test_whole_message_is_a_valid_response() -> None:
    message = {"id": "msg_01B", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
               "content": [{"type": "text", "text": "Sure."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                           {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}}],
               "usage": {"input_tokens": 10, "output_tokens": 8}}
    response = message_to_response(message, ResponseShape("claude-sonnet-4-5", 7, REQUEST))
    validate("Response", response)
    assert response["instructions"] == "Be brief."
    assert [o.get("call_id") for o in response["output"]] == [None, "toolu_1", "toolu_2"]
    facts = UsageFacts()
    handler = ResponsesTranslatedJSONHandler(facts, ResponseShape("claude-sonnet-4-5", 7, REQUEST))
    handler.data(json.dumps(message).encode())
    assert json.loads(handler.end()) == response
    assert (facts.prompt_tokens, facts.completion_tokens) == (10, 8)


def test_request_translation() -> None:
    """instructions -> system, max_output_tokens -> max_tokens, calls and outputs keep their ids."""
    body = {
        "model": "claude-sonnet-4-5", "instructions": "Be brief.", "max_output_tokens": 99, "tools": TOOLS,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}, {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call", "call_id": "toolu_2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "toolu_2", "output": "rain"},
        ],
    }
    out = responses_to_anthropic_request(body, "claude-sonnet-4-5", stream=True)
    assert (out["system"], out["max_tokens"], out["stream"]) == ("Be brief.", 99, True)
    assert out["tool_choice"]["name"] == "get_weather"
    assert [t["name"] for t in out["tools"]] == ["get_weather"]
    user, assistant, results = out["messages"]
    assert [b["type"] for b in user["content"]] == ["text", "image"]
    assert [(b["id"], b["input"]) for b in assistant["content"]] == [("toolu_1", {"city": "Paris"}), ("toolu_2", {"city": "Oslo"})]
    assert [b["tool_use_id"] for b in results["content"]] == ["toolu_1", "toolu_2"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"store": True}, "store"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0]"),
    ],
)
def test_untranslatable_requests_name_the_parameter(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as info:
        responses_to_anthropic_request(dict({"model": "claude-sonnet-4-5", "input": "hi"}, **extra), "claude-sonnet-4-5", False)
    assert info.value.status == 400
    assert info.value.param == param
    assert param.partition("[")[0].partition(".")[0] in info.value.message


def test_store_false_is_accepted() -> None:
    out = responses_to_anthropic_request({"model": "c", "input": "hi", "store": False}, "claude-sonnet-4-5", False)
    assert out["messages"] == [{"role": "user", "content": "hi"}]
