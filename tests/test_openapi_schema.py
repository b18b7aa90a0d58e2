"""Tests for tests/openapi_schema.py: OpenAI response shapes, validated offline."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from jsonschema import ValidationError

try:
    from openapi_schema import (
        SUBSET_PATH,
        _nullable_to_2020_12,
        component,
        schema_names,
        validate,
        validate_sse_stream,
    )
except ImportError:  # tests/ collected as a package
    from tests.openapi_schema import (
        SUBSET_PATH,
        _nullable_to_2020_12,
        component,
        schema_names,
        validate,
        validate_sse_stream,
    )

CHUNK = "CreateChatCompletionStreamResponse"
COMPLETION = "CreateChatCompletionResponse"
ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
CREATED = 1741569952
MODEL = "gpt-4o-mini-2024-07-18"
FP = "fp_06737a9306"


def usage() -> dict[str, Any]:
    return {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion() -> dict[str, Any]:
    """A non-streamed chat.completion as api.openai.com returns it."""
    return {
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I assist you today?",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(),
        "service_tier": "default",
        "system_fingerprint": FP,
    }


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A chat.completion.chunk as sent with stream_options.include_usage (usage: null)."""
    return {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FP,
        "choices": choices,
        "usage": None,
        "obfuscation": "Xq3",
        **extra,
    }


def role_chunk() -> dict[str, Any]:
    return chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                   "logprobs": None, "finish_reason": None}])


def content_chunk(text: str) -> dict[str, Any]:
    return chunk([{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])


def finish_chunk(reason: str = "stop") -> dict[str, Any]:
    return chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])


def usage_chunk() -> dict[str, Any]:
    return chunk([], usage=usage())


def tool_call_chunks() -> list[dict[str, Any]]:
    return [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}], "refusal": None},
            "logprobs": None, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"lo"}}]},
                "logprobs": None, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "cation\":\"Paris\"}"}}]},
                "logprobs": None, "finish_reason": None}]),
        finish_chunk("tool_calls"),
    ]


def error_response() -> dict[str, Any]:
    return {"error": {
        "message": "Incorrect API key provided: sk-proj-****. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


def models_list() -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
        {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
    ]}


def embeddings(vector: Any) -> dict[str, Any]:
    return {"object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}


def rejects(schema: str, instance: object, *fragments: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(schema, instance)
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


# --- the checked-in subset -----------------------------------------------------------

def test_subset_is_checked_in_with_provenance() -> None:
    """The subset lives under tests/ and records the spec's sha256, version, commit and licence."""
    assert SUBSET_PATH.parent.parent.name == "tests"
    source = json.loads(SUBSET_PATH.read_text(encoding="utf-8"))["x-dd0c-source"]
    assert source["sha256"] == "db5d7478feae10b4d331834c60d9765a8aa042e38419f9b1694288c11aa8ebc8"
    assert source["info_version"] == "2.3.0"
    assert source["commit"] == "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
    assert source["repository"] == "https://github.com/openai/openai-openapi"
    assert source["license"] == "MIT" and "Copyright (c) OpenAI" in source["license_notice"]


def test_subset_holds_every_root_schema() -> None:
    """Every schema the extractor was asked for can be validated against."""
    source = json.loads(SUBSET_PATH.read_text(encoding="utf-8"))["x-dd0c-source"]
    assert set(source["roots"]) <= schema_names()


def test_unknown_schema_name_is_a_key_error() -> None:
    """Asking for a schema not in the subset fails loudly instead of validating nothing."""
    with pytest.raises(KeyError, match="CreateResponse"):
        validate("CreateResponse", {})


# --- nullable conversion -------------------------------------------------------------

def test_nullable_string_type_gains_null() -> None:
    """`type: string, nullable: true` becomes `type: [string, null]`."""
    assert _nullable_to_2020_12({"type": "string", "nullable": True}) == {"type": ["string", "null"]}


def test_nullable_type_list_gains_null_once() -> None:
    """A `type` list gets `null` appended, and not twice."""
    assert _nullable_to_2020_12({"type": ["string", "integer"], "nullable": True}) == {
        "type": ["string", "integer", "null"]}
    assert _nullable_to_2020_12({"type": ["string", "null"], "nullable": True}) == {"type": ["string", "null"]}


def test_nullable_enum_gains_null_member() -> None:
    """An enum must list null too, else `type` alone would let null in but enum would reject it."""
    assert _nullable_to_2020_12({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"], "enum": ["a", None]}
    assert _nullable_to_2020_12({"enum": ["a"], "nullable": True}) == {"enum": ["a", None]}


def test_nullable_ref_and_combinators_are_wrapped() -> None:
    """`$ref`/`oneOf` siblings cannot take a null `type`, so the schema is wrapped in anyOf."""
    ref = {"$ref": "#/components/schemas/CompletionUsage"}
    assert _nullable_to_2020_12({**ref, "nullable": True}) == {"anyOf": [ref, {"type": "null"}]}
    one = {"oneOf": [{"type": "string"}, {"type": "array"}]}
    assert _nullable_to_2020_12({**one, "nullable": True}) == {"anyOf": [one, {"type": "null"}]}


def test_nullable_false_and_property_names_are_left_alone() -> None:
    """`nullable: false` is dropped; a property *named* nullable or an enum value is not touched."""
    schema = {"type": "object", "nullable": False,
              "properties": {"nullable": {"type": "boolean"}}, "default": {"nullable": True}}
    assert _nullable_to_2020_12(schema) == {
        "type": "object", "properties": {"nullable": {"type": "boolean"}}, "default": {"nullable": True}}


def test_no_nullable_keyword_survives_loading() -> None:
    """After loading, no component still carries the OpenAPI 3.0 keyword."""
    for name in schema_names():
        assert '"nullable": true' not in json.dumps(component(name)), name


# --- chat.completion -----------------------------------------------------------------

def test_chat_completion_passes() -> None:
    """A real-world chat.completion (refusal and logprobs null, annotations empty) is accepted."""
    validate(COMPLETION, completion())


def test_chat_completion_with_tool_calls_passes() -> None:
    """A tool-calling completion (content null, finish_reason tool_calls) is accepted."""
    body = completion()
    body["choices"][0]["message"].update(content=None, tool_calls=[{
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}])
    body["choices"][0]["finish_reason"] = "tool_calls"
    validate(COMPLETION, body)


def test_chat_completion_with_logprobs_passes() -> None:
    """Token logprobs in the shape OpenAI returns them are accepted."""
    body = completion()
    body["choices"][0]["logprobs"] = {"content": [{
        "token": "Hello", "logprob": -0.31, "bytes": [72, 101, 108, 108, 111],
        "top_logprobs": [{"token": "Hello", "logprob": -0.31, "bytes": [72, 101, 108, 108, 111]}]}],
        "refusal": None}
    validate(COMPLETION, body)


def test_completion_without_message_refusal_fails() -> None:
    """message.refusal is required even though its value is null."""
    body = completion()
    del body["choices"][0]["message"]["refusal"]
    rejects(COMPLETION, body, COMPLETION, "$.choices[0].message", "'refusal' is a required property")


def test_completion_without_logprobs_fails() -> None:
    """choices[].logprobs is required even though its value is null."""
    body = completion()
    del body["choices"][0]["logprobs"]
    rejects(COMPLETION, body, "$.choices[0]", "'logprobs' is a required property")


def test_completion_finish_reason_null_fails() -> None:
    """A finished (non-streamed) completion must say why it stopped: finish_reason is not nullable."""
    body = completion()
    body["choices"][0]["finish_reason"] = None
    rejects(COMPLETION, body, "$.choices[0].finish_reason")


def test_completion_with_chunk_object_type_fails() -> None:
    """A chat.completion labelled as a chunk has the wrong `object`."""
    body = completion()
    body["object"] = "chat.completion.chunk"
    rejects(COMPLETION, body, "$.object", "chat.completion")


def test_completion_with_anthropic_stop_reason_fails() -> None:
    """A provider's native stop reason leaking through (end_turn) is rejected."""
    body = completion()
    body["choices"][0]["finish_reason"] = "end_turn"
    rejects(COMPLETION, body, "$.choices[0].finish_reason", "'end_turn'")


# --- stream chunks -------------------------------------------------------------------

def test_first_role_chunk_passes() -> None:
    """The first chunk (role assistant, empty content, refusal null, usage null) is accepted."""
    validate(CHUNK, role_chunk())


def test_tool_call_delta_chunks_pass() -> None:
    """Tool-call deltas (id/name first, then argument fragments with only index) are accepted."""
    for event in tool_call_chunks():
        validate(CHUNK, event)


def test_usage_only_final_chunk_passes() -> None:
    """The include_usage final chunk with `choices: []` and a full usage object is accepted."""
    validate(CHUNK, usage_chunk())


def test_chunk_without_optional_fields_passes() -> None:
    """Chunks without usage, obfuscation, service_tier or system_fingerprint are accepted."""
    event = content_chunk("Hi")
    for key in ("usage", "obfuscation", "service_tier", "system_fingerprint"):
        del event[key]
    validate(CHUNK, event)


def test_chunk_without_finish_reason_fails() -> None:
    """finish_reason must be present (as null) on every chunk, not only the last."""
    event = content_chunk("Hi")
    del event["choices"][0]["finish_reason"]
    error = rejects(CHUNK, event, CHUNK, "$.choices[0]", "'finish_reason' is a required property")
    assert list(error.path) == ["choices", 0]


def test_chunk_with_completion_object_type_fails() -> None:
    """A chunk labelled `chat.completion` has the wrong `object`."""
    event = content_chunk("Hi")
    event["object"] = "chat.completion"
    rejects(CHUNK, event, "$.object")


def test_chunk_with_null_model_fails() -> None:
    """Fields that are not nullable in the spec reject null."""
    event = content_chunk("Hi")
    event["model"] = None
    rejects(CHUNK, event, "$.model", "None is not of type 'string'")


def test_chunk_with_message_instead_of_delta_fails() -> None:
    """A chunk carrying `message` (the non-stream shape) instead of `delta` is rejected."""
    event = content_chunk("Hi")
    event["choices"][0]["message"] = event["choices"][0].pop("delta")
    rejects(CHUNK, event, "'delta' is a required property")


def test_tool_call_delta_without_index_fails() -> None:
    """Each tool_calls delta needs its index, which clients use to stitch fragments."""
    event = tool_call_chunks()[1]
    del event["choices"][0]["delta"]["tool_calls"][0]["index"]
    rejects(CHUNK, event, "$.choices[0].delta.tool_calls[0]", "'index' is a required property")


def test_usage_chunk_missing_total_tokens_fails() -> None:
    """A usage object must carry total_tokens; the error points at it despite the nullable wrapper."""
    event = usage_chunk()
    del event["usage"]["total_tokens"]
    error = rejects(CHUNK, event, "$.usage", "'total_tokens' is a required property")
    assert list(error.path) == ["usage"]
    assert list(error.schema_path) == ["properties", "usage", "anyOf", 0, "required"]


# --- whole streams -------------------------------------------------------------------

def test_full_text_stream_passes() -> None:
    """role chunk, content chunks, finish chunk and usage chunk make a valid stream."""
    validate_sse_stream([role_chunk(), content_chunk("Hel"), content_chunk("lo"), finish_chunk(), usage_chunk()])


def test_tool_call_stream_without_usage_passes() -> None:
    """A stream without include_usage ends at the finish chunk and is valid."""
    validate_sse_stream(tool_call_chunks())


def test_stream_error_names_the_chunk() -> None:
    """A bad chunk in a stream is reported with its position and the schema name."""
    bad = content_chunk("lo")
    del bad["choices"][0]["finish_reason"]
    with pytest.raises(ValidationError, match=r"chunk 2 of 4: does not match OpenAI schema "
                                              r"CreateChatCompletionStreamResponse at \$\.choices\[0\]"):
        validate_sse_stream([role_chunk(), content_chunk("Hel"), bad, finish_chunk()])


def test_stream_with_changing_id_fails() -> None:
    """Every chunk of a stream carries the same id."""
    other = content_chunk("lo")
    other["id"] = "chatcmpl-other"
    with pytest.raises(ValidationError, match="same id"):
        validate_sse_stream([role_chunk(), other, finish_chunk()])


def test_empty_choices_before_the_end_fails() -> None:
    """Empty choices is only the final usage chunk; chunks after it are rejected."""
    with pytest.raises(ValidationError, match="only allowed in the final usage chunk"):
        validate_sse_stream([role_chunk(), usage_chunk(), finish_chunk()])


def test_empty_choices_without_usage_fails() -> None:
    """A final chunk with empty choices must carry usage."""
    with pytest.raises(ValidationError, match="no usage"):
        validate_sse_stream([role_chunk(), finish_chunk(), chunk([])])


def test_empty_stream_and_done_sentinel_fail() -> None:
    """An empty stream is invalid, and the [DONE] sentinel must be stripped before validating."""
    with pytest.raises(ValidationError, match="no chunks"):
        validate_sse_stream([])
    with pytest.raises(ValidationError, match=r"\[DONE\]"):
        validate_sse_stream([role_chunk(), finish_chunk(), "[DONE]"])  # type: ignore[list-item]


# --- errors, models, embeddings, legacy completions ----------------------------------

def test_error_response_passes() -> None:
    """An OpenAI error body with param null and a string code is accepted."""
    validate("ErrorResponse", error_response())
    body = error_response()
    body["error"].update(type="server_error", code=None)
    validate("ErrorResponse", body)


def test_error_response_without_param_and_code_fails() -> None:
    """param and code are required in an error, even when null."""
    rejects("ErrorResponse", {"error": {"message": "boom", "type": "server_error"}},
            "ErrorResponse", "$.error")


def test_bare_error_string_fails() -> None:
    """A top-level error string (a common non-OpenAI shape) is rejected."""
    rejects("ErrorResponse", {"error": "Invalid API key"}, "$.error")


def test_models_list_passes() -> None:
    """A /v1/models list of model objects is accepted."""
    validate("ListModelsResponse", models_list())


def test_model_without_owned_by_fails() -> None:
    """Each model object must carry owned_by."""
    body = models_list()
    del body["data"][1]["owned_by"]
    rejects("ListModelsResponse", body, "$.data[1]", "'owned_by' is a required property")


def test_embeddings_float_passes() -> None:
    """An embeddings response with a float vector is accepted."""
    validate("CreateEmbeddingResponse", embeddings([0.0023064255, -0.009327292, -0.0028842222]))


def test_embeddings_base64_passes() -> None:
    """With encoding_format base64 the vector is a base64 string of float32s; that is accepted."""
    vector = base64.b64encode(struct.pack("<3f", 0.0023064255, -0.009327292, -0.0028842222)).decode()
    validate("CreateEmbeddingResponse", embeddings(vector))


def test_embeddings_non_base64_string_fails() -> None:
    """A string that is not base64 is not an embedding."""
    rejects("CreateEmbeddingResponse", embeddings("not base64!"), "$.data[0].embedding")


def test_embeddings_string_numbers_fail() -> None:
    """A vector of numeric strings is rejected."""
    rejects("CreateEmbeddingResponse", embeddings(["0.1", "0.2"]), "$.data[0].embedding")


def test_legacy_completion_passes() -> None:
    """A /v1/completions text_completion is accepted."""
    validate("CreateCompletionResponse", {
        "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7", "object": "text_completion", "created": 1589478378,
        "model": "gpt-3.5-turbo-instruct", "system_fingerprint": FP,
        "choices": [{"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})


# --- requests ------------------------------------------------------------------------

def test_chat_request_passes_with_nulls() -> None:
    """A chat request, with the nullable fields clients send as null, is accepted."""
    validate("CreateChatCompletionRequest", {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "stream": True, "stream_options": {"include_usage": True},
        "stop": None, "max_completion_tokens": None, "temperature": 0.2, "n": None,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}],
    })


def test_chat_request_stop_accepts_string_and_list() -> None:
    """stop, a nullable oneOf with a nullable branch, still takes a string or a list."""
    base = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    validate("CreateChatCompletionRequest", {**base, "stop": "\n"})
    validate("CreateChatCompletionRequest", {**base, "stop": ["\n", "END"]})


def test_chat_request_without_messages_fails() -> None:
    """model and messages are required in a chat request."""
    rejects("CreateChatCompletionRequest", {"model": "gpt-4o-mini"}, "'messages' is a required property")


def test_chat_request_with_unknown_role_fails() -> None:
    """A message with a role OpenAI does not know is rejected."""
    rejects("CreateChatCompletionRequest",
            {"model": "gpt-4o-mini", "messages": [{"role": "human", "content": "Hi"}]}, "$.messages[0]")
