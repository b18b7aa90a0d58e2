"""
The provider adapter contract, checked on every adapter the proxy ships.

Each adapter must provide :class:`IProvider` (``verifyObject``) and keep the
shared rules: the client's credentials never reach the provider, provider
error bodies are scrubbed of anything key-like, and reading a successful
answer fills the request's usage facts.  A new adapter added to
``default_adapters()`` is held to the same rules without a new test.
"""

from __future__ import annotations

import json
import secrets

import pytest
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from dd0c_route.config import ProviderConfig
from dd0c_route.metering.usage import UsageFacts
from dd0c_route.providers.adapters import default_adapters
from dd0c_route.providers.errors import CannotServe
from dd0c_route.providers.interfaces import IProvider
from dd0c_route.relay.plan import UpstreamCall
from dd0c_route.secret import Secret

ADAPTERS = default_adapters()

#: What one successful, non-streamed answer looks like in each kind's wire
#: format, with the usage it reports.
ANSWERS = {
    "openai": {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    },
    "anthropic": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 3},
    },
}

STREAMS = {
    "openai": [
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}},
    ],
    "anthropic": [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 11, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ],
}


def fake_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def provider_for(kind: str) -> tuple[ProviderConfig, str]:
    key = fake_key("sk-")
    base = "http://127.0.0.1:9/v1" if kind == "openai" else "http://127.0.0.1:9"
    return ProviderConfig(name=f"p-{kind}", kind=kind, base_url=base, api_key=Secret(key), models=("m",)), key


def client_headers() -> tuple[Headers, list[str]]:
    keys = [fake_key("dd0c-"), fake_key("sk-")]
    headers = Headers({
        b"authorization": [b"Bearer " + keys[0].encode()],
        b"x-api-key": [keys[1].encode()],
        b"openai-beta": [b"assistants=v2"],
        b"anthropic-beta": [b"tools-2024-04-04"],
        b"anthropic-version": [b"2023-06-01"],
    })
    return headers, keys


class FakeResponse:
    def __init__(self, ctype: bytes) -> None:
        self.code = 200
        self.headers = Headers({b"content-type": [ctype]})


def chat_plan(adapter: IProvider, stream: bool) -> tuple[UpstreamCall, str, list[str]]:
    provider, provider_key = provider_for(adapter.kind)
    headers, client_keys = client_headers()
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": stream, "max_tokens": 16}
    plan = adapter.chat_completion(provider, headers, body, json.dumps(body).encode(), "m", stream, 1)
    return plan, provider_key, client_keys


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_adapter_provides_the_interface(kind: str) -> None:
    adapter = ADAPTERS[kind]
    assert verifyObject(IProvider, adapter)
    assert adapter.kind == kind


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_client_credentials_never_forwarded(kind: str, native: bool) -> None:
    """Upstream headers carry the provider's key and none of the client's."""
    adapter = ADAPTERS[kind]
    provider, provider_key = provider_for(kind)
    headers, client_keys = client_headers()
    sent = adapter.headers(provider, headers, native)
    flat = b"\n".join(b"%s: %s" % (name, value) for name, values in sent.items() for value in values).decode()
    assert provider_key in flat
    for key in client_keys:
        assert key not in flat


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_chat_plan_carries_only_the_provider_key(kind: str, stream: bool) -> None:
    plan, provider_key, client_keys = chat_plan(ADAPTERS[kind], stream)
    everything = repr(plan.headers) + repr(plan.body) + plan.url
    assert provider_key in repr(plan.headers)
    for key in client_keys:
        assert key not in everything
    assert plan.url.startswith("http://127.0.0.1:9/")


@pytest.mark.parametrize("status", [400, 401, 429, 500])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_provider_error_bodies_are_scrubbed(kind: str, status: int) -> None:
    """A provider error that echoes a key reaches the client without it."""
    leaked = fake_key("sk-proj-")
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {leaked}", "type": "invalid_request_error"}}).encode()
    if kind == "anthropic":
        body = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": f"bad key {leaked}"}}).encode()
    new_status, out, _headers = ADAPTERS[kind].translate_error(status, body, {b"content-type": [b"application/json"]})
    assert leaked not in out.decode()
    assert isinstance(json.loads(out), dict)
    assert new_status >= 400
    plan, _, _ = chat_plan(ADAPTERS[kind], stream=False)
    _, planned_out, _ = plan.translate_error(status, body, {})
    assert leaked not in planned_out.decode()


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_reading_an_answer_fills_usage_facts(kind: str) -> None:
    plan, _, _ = chat_plan(ADAPTERS[kind], stream=False)
    handler = plan.choose_handler(FakeResponse(b"application/json"))
    raw = json.dumps(ANSWERS[kind]).encode()
    out = handler.data(raw[:7]) + handler.data(raw[7:]) + handler.end()
    facts: UsageFacts = plan.facts
    assert (facts.prompt_tokens, facts.completion_tokens) == (11, 3)
    assert facts.response_id
    assert b"hi" in (out or raw)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_reading_a_stream_fills_usage_facts(kind: str) -> None:
    plan, _, _ = chat_plan(ADAPTERS[kind], stream=True)
    handler = plan.choose_handler(FakeResponse(b"text/event-stream"))
    wire = b"".join(
        (b"event: " + event["type"].encode() + b"\n" if kind == "anthropic" else b"")
        + b"data: " + json.dumps(event).encode() + b"\n\n"
        for event in STREAMS[kind]
    )
    if kind == "openai":
        wire += b"data: [DONE]\n\n"
    out = b"".join(handler.data(wire[i:i + 5]) for i in range(0, len(wire), 5)) + handler.end()
    facts: UsageFacts = plan.facts
    assert (facts.prompt_tokens, facts.completion_tokens) == (11, 3)
    assert "".join(facts.delivered) == "hi"
    assert b"[DONE]" in out


def test_untranslatable_request_is_refused_before_sending() -> None:
    """An adapter refuses what it cannot serve with CannotServe (the chain falls back on it)."""
    provider, _ = provider_for("anthropic")
    headers, _ = client_headers()
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}
    with pytest.raises(CannotServe) as info:
        ADAPTERS["anthropic"].chat_completion(provider, headers, body, json.dumps(body).encode(), "m", False, 1)
    assert info.value.param == "n"


#: A Responses API answer in each kind's wire format (Anthropic answers a
#: translated Responses request with a Messages reply).
RESPONSES_ANSWERS = {
    "openai": {
        "id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m",
        "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]}],
        "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14},
    },
    "anthropic": ANSWERS["anthropic"],
}

RESPONSES_STREAMS = {
    "openai": [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "hi", "logprobs": []},
        {"type": "response.completed", "sequence_number": 2, "response": RESPONSES_ANSWERS["openai"]},
    ],
    "anthropic": STREAMS["anthropic"],
}


def responses_plan(adapter: IProvider, stream: bool) -> tuple[UpstreamCall, str, list[str]]:
    provider, provider_key = provider_for(adapter.kind)
    headers, client_keys = client_headers()
    body = {"model": "m", "input": "hello", "stream": stream, "max_output_tokens": 16}
    plan = adapter.responses(provider, headers, body, json.dumps(body).encode(), "m", stream, 1)
    return plan, provider_key, client_keys


def _wire(kind: str, events: list[dict]) -> bytes:
    return b"".join(
        b"event: " + event["type"].encode() + b"\n" + b"data: " + json.dumps(event).encode() + b"\n\n"
        for event in events
    )


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_responses_plan_carries_only_the_provider_key(kind: str, stream: bool) -> None:
    plan, provider_key, client_keys = responses_plan(ADAPTERS[kind], stream)
    everything = repr(plan.headers) + repr(plan.body) + plan.url
    assert provider_key in repr(plan.headers)
    for key in client_keys:
        assert key not in everything
    assert plan.url.startswith("http://127.0.0.1:9/")


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_reading_a_responses_answer_fills_usage_facts(kind: str) -> None:
    plan, _, _ = responses_plan(ADAPTERS[kind], stream=False)
    handler = plan.choose_handler(FakeResponse(b"application/json"))
    raw = json.dumps(RESPONSES_ANSWERS[kind]).encode()
    out = handler.data(raw[:7]) + handler.data(raw[7:]) + handler.end()
    facts: UsageFacts = plan.facts
    assert (facts.prompt_tokens, facts.completion_tokens) == (11, 3)
    assert facts.response_id
    assert json.loads(out or raw)["object"] == "response"


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_reading_a_responses_stream_fills_usage_facts(kind: str) -> None:
    plan, _, _ = responses_plan(ADAPTERS[kind], stream=True)
    handler = plan.choose_handler(FakeResponse(b"text/event-stream"))
    wire = _wire(kind, RESPONSES_STREAMS[kind])
    out = b"".join(handler.data(wire[i:i + 5]) for i in range(0, len(wire), 5)) + handler.end()
    facts: UsageFacts = plan.facts
    assert (facts.prompt_tokens, facts.completion_tokens) == (11, 3)
    assert "".join(facts.delivered) == "hi"
    assert b"event: response.completed" in out


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_responses_stream_cut_keeps_what_was_delivered(kind: str) -> None:
    """Cut before the final event: no output usage, the delivered delta kept for a local count."""
    plan, _, _ = responses_plan(ADAPTERS[kind], stream=True)
    handler = plan.choose_handler(FakeResponse(b"text/event-stream"))
    events = RESPONSES_STREAMS[kind]
    upto = 2 if kind == "openai" else 3
    handler.data(_wire(kind, events[:upto]))
    handler.failed("the provider went away")
    facts: UsageFacts = plan.facts
    assert facts.completion_tokens is None
    assert "".join(facts.delivered) == "hi"


def test_translated_responses_refuse_server_state() -> None:
    """A translated model refuses previous_response_id with CannotServe naming it."""
    provider, _ = provider_for("anthropic")
    headers, _ = client_headers()
    body = {"model": "m", "input": "x", "previous_response_id": "resp_1"}
    with pytest.raises(CannotServe) as info:
        ADAPTERS["anthropic"].responses(provider, headers, body, json.dumps(body).encode(), "m", False, 1)
    assert info.value.param == "previous_response_id"
