"""
Tests for dd0c_route.providers.anthropic_request: OpenAI chat completion
requests rewritten as Anthropic Messages requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from dd0c_route.providers.anthropic_translate import (
    FALLBACK_MAX_TOKENS,
    TranslationError,
    default_max_tokens,
    openai_to_anthropic_request,
)

MODEL = "claude-sonnet-4-20250514"
HI = {"role": "user", "content": "hi"}


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("model", MODEL)
    body.setdefault("messages", [HI])
    return openai_to_anthropic_request(body)


def refused(**body: Any) -> TranslationError:
    with pytest.raises(TranslationError) as info:
        translate(**body)
    return info.value


def test_minimal_request() -> None:
    """
    A one-message request becomes model + messages + the model's default
    max_tokens, and nothing else.
    """
    assert translate() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16384,
    }


def test_model_override() -> None:
    """
    The model chosen by routing replaces the one the client named.
    """
    out = openai_to_anthropic_request(
        {"model": "smart", "messages": [HI]}, model="claude-3-5-haiku-20241022"
    )
    assert out["model"] == "claude-3-5-haiku-20241022"
    assert out["max_tokens"] == 8192


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-3-opus-20240229", 4096),
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-5-sonnet-20241022", 8192),
        ("claude-3-5-haiku-latest", 8192),
        ("claude-3-7-sonnet-20250219", 8192),
        ("claude-sonnet-4-20250514", 16384),
        ("claude-sonnet-4-5", 16384),
        ("claude-opus-4-1-20250805", 16384),
        ("claude-haiku-4-5", 16384),
        ("claude-future-9", FALLBACK_MAX_TOKENS),
    ],
)
def test_default_max_tokens_table(model: str, expected: int) -> None:
    """
    The default max_tokens comes from the longest matching model prefix,
    with a fallback for unknown models.
    """
    assert default_max_tokens(model) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 100, "max_completion_tokens": 200}, 200),
        ({"max_tokens": None}, 16384),
    ],
)
def test_max_tokens_from_client(fields: dict[str, Any], expected: int) -> None:
    """
    max_completion_tokens wins over the legacy max_tokens; either wins over
    the default.
    """
    assert translate(**fields)["max_tokens"] == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_max_tokens_invalid(bad: Any) -> None:
    """
    A non-positive or non-integer max_tokens is a 400 naming the field.
    """
    error = refused(max_tokens=bad)
    assert (error.status, error.param) == (400, "max_tokens")


def test_system_and_developer_hoisted_to_string() -> None:
    """
    A single system message becomes the top-level system string and leaves
    the conversation.
    """
    out = translate(messages=[{"role": "system", "content": "be brief"}, HI])
    assert out["system"] == "be brief"
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_several_system_messages_become_blocks() -> None:
    """
    Several system/developer messages (wherever they appear) become a list
    of text blocks, in order.
    """
    out = translate(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
            HI,
            {"role": "system", "content": "three"},
        ]
    )
    assert out["system"] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two"},
        {"type": "text", "text": "three"},
    ]


def test_system_cache_control_kept() -> None:
    """
    A system part with cache_control keeps it, which forces the block form.
    """
    cache = {"type": "ephemeral"}
    out = translate(
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "long", "cache_control": cache}],
            },
            HI,
        ]
    )
    assert out["system"] == [{"type": "text", "text": "long", "cache_control": cache}]


def test_consecutive_same_role_merged() -> None:
    """
    Consecutive user turns are merged into one turn whose content blocks
    are concatenated.
    """
    out = translate(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
    ]


def test_empty_text_dropped() -> None:
    """
    Empty text (which Anthropic rejects) is dropped, and a turn left empty
    disappears so its neighbours merge.
    """
    out = translate(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_only_system_messages_refused() -> None:
    """
    A conversation with nothing but system messages is a 400: Anthropic
    needs at least one turn.
    """
    error = refused(messages=[{"role": "system", "content": "x"}])
    assert error.param == "messages"


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, None), ([], None)],
)
def test_stop_sequences(stop: Any, expected: Any) -> None:
    """
    stop (a string or a list) becomes stop_sequences; absent or empty stop
    sends none.
    """
    assert translate(stop=stop).get("stop_sequences") == expected


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0, 0), (0.7, 0.7), (1, 1), (1.5, 1), (2, 1)]
)
def test_temperature_clamped(temperature: float, expected: float) -> None:
    """
    OpenAI temperatures 0..1 pass unchanged; 1..2 are clamped to
    Anthropic's maximum of 1.
    """
    assert translate(temperature=temperature)["temperature"] == expected


@pytest.mark.parametrize(("field", "value"), [("temperature", 2.5), ("temperature", -1), ("top_p", 1.5)])
def test_sampling_out_of_range(field: str, value: float) -> None:
    """
    Sampling values outside OpenAI's own range are a 400 naming the field.
    """
    assert refused(**{field: value}).param == field


def test_top_p_user_stream() -> None:
    """
    top_p passes through, user becomes metadata.user_id, stream is passed.
    """
    out = translate(top_p=0.9, user="u-1", stream=True)
    assert out["top_p"] == 0.9
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["stream"] is True


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_translated() -> None:
    """
    Function tools become {name, description, input_schema}; a tool
    without parameters gets an empty object schema.
    """
    out = translate(tools=[WEATHER, {"type": "function", "function": {"name": "now"}}])
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    """
    tool_choice maps auto/required/none/named function to Anthropic's
    auto/any/none/tool, and parallel_tool_calls false disables parallel use.
    """
    out = translate(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    """
    Requiring a tool without giving any is a 400; "auto"/"none" without
    tools are harmless and dropped.
    """
    assert refused(tool_choice="required").param == "tool_choice"
    assert "tool_choice" not in translate(tool_choice="none")


@pytest.mark.parametrize(
    "tool",
    [{"type": "custom", "custom": {"name": "x"}}, {"type": "function", "function": {}}],
)
def test_bad_tools_refused(tool: Any) -> None:
    """
    Non-function tools and nameless functions are 400s naming the tool.
    """
    assert refused(tools=[tool]).param.startswith("tools[0]")


def test_tool_round_trip_messages() -> None:
    """
    An assistant turn with tool_calls becomes tool_use blocks (arguments
    parsed into input) and consecutive tool messages become one user turn
    of tool_result blocks, placed before any following user text.
    """
    out = translate(
        messages=[
            HI,
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "noon"}],
            },
            {"role": "user", "content": "thanks"},
        ],
        tools=[WEATHER],
    )
    assert out["messages"] == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "noon"}],
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_tool_results_sorted_before_text() -> None:
    """
    In a merged user turn, tool_result blocks come first, as Anthropic
    requires, whatever the original order.
    """
    out = translate(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "t1", "content": "r"},
        ]
    )
    assert [b["type"] for b in out["messages"][0]["content"]] == ["tool_result", "text"]


def test_assistant_tool_calls_only() -> None:
    """
    An assistant message with null content and tool calls becomes a turn of
    tool_use blocks alone.
    """
    out = translate(
        messages=[
            HI,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ]
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
    }


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_invalid_tool_arguments(arguments: str) -> None:
    """
    Tool call arguments that are not a JSON object are a 400 pointing at
    the exact argument string.
    """
    error = refused(
        messages=[
            HI,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": arguments}}
                ],
            },
        ]
    )
    assert (error.status, error.param, error.code) == (
        400,
        "messages[1].tool_calls[0].function.arguments",
        "invalid_tool_call_arguments",
    )


def test_tool_message_needs_id() -> None:
    """
    A tool message without tool_call_id is a 400: the result could not be
    matched to its call.
    """
    error = refused(messages=[HI, {"role": "tool", "content": "x"}])
    assert error.param == "messages[1].tool_call_id"


@pytest.mark.parametrize(
    ("image_url", "source"),
    [
        (
            {"url": "data:image/png;base64,iVBORw0KGgo="},
            {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        ),
        (
            "data:image/JPEG;base64,/9j/4AAQ",
            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
        ),
        (
            {"url": "https://example.com/cat.png", "detail": "high"},
            {"type": "url", "url": "https://example.com/cat.png"},
        ),
    ],
)
def test_images(image_url: Any, source: dict[str, str]) -> None:
    """
    image_url parts become image blocks: data URLs as base64 sources,
    http(s) URLs as url sources.
    """
    out = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": image_url},
                ],
            }
        ]
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": source},
    ]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png,rawbytes", "invalid_image_url"),
        ("data:image/bmp;base64,Qk0=", "invalid_image_format"),
        ("ftp://example.com/x.png", "invalid_image_url"),
    ],
)
def test_bad_images(url: str, code: str) -> None:
    """
    Non-base64 data URLs, unsupported image types and other schemes are
    400s pointing at the part.
    """
    error = refused(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )
    assert (error.param, error.code) == ("messages[0].content[0]", code)


def test_pdf_file_part() -> None:
    """
    An inline PDF file part becomes a base64 document block.
    """
    out = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
                ],
            }
        ]
    )
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        }
    ]


def test_audio_part_refused() -> None:
    """
    An input_audio part is a 400: Anthropic models take no audio.
    """
    error = refused(
        messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
        ]
    )
    assert error.param == "messages[0].content[0]"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
            "response_format",
        ),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_unsupported_parameters(fields: dict[str, Any], param: str) -> None:
    """
    Parameters Anthropic cannot honour are a 400 that names the parameter
    and says it is not supported for Anthropic models.
    """
    error = refused(**fields)
    assert (error.status, error.param, error.code) == (400, param, "unsupported_parameter")
    assert "not supported for Anthropic models" in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 1},
        {"logprobs": False},
        {"logit_bias": {}},
        {"modalities": ["text"]},
        {"response_format": {"type": "text"}},
        {"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.1},
        {"stream_options": {"include_usage": True}},
    ],
)
def test_harmless_parameters_accepted(fields: dict[str, Any]) -> None:
    """
    Defaults of unsupported features and hints with no Anthropic equivalent
    are accepted and not forwarded.
    """
    out = translate(**fields)
    assert set(out) == {"model", "messages", "max_tokens"}


def test_error_body_shape() -> None:
    """
    A TranslationError renders as OpenAI's error body.
    """
    assert refused(n=3).to_openai() == {
        "error": {
            "message": "'n' is not supported for Anthropic models: "
            "Anthropic returns one choice per request",
            "type": "invalid_request_error",
            "param": "n",
            "code": "unsupported_parameter",
        }
    }


@pytest.mark.parametrize(
    "messages",
    [[], "hi", [{"role": "wizard", "content": "x"}], [{"role": "user", "content": 5}]],
)
def test_malformed_messages(messages: Any) -> None:
    """
    Missing, non-list or malformed messages are 400s, never a crash.
    """
    assert refused(messages=messages).status == 400
