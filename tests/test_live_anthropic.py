"""
Anthropic upstreams, live: the tap's service on loopback with the fake
Anthropic provider behind it, and the official ``openai`` (translated path)
and ``anthropic`` (native ``/v1/messages``) SDKs as clients.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario, reply_text_for

from .live import in_thread, start_live_proxy
from .openapi_schema import validate, validate_sse_stream

MODEL = "claude-sonnet-4-5"
#: The anthropic SDK warns about claude-sonnet-4-5 (deprecated), and warnings are errors.
NATIVE_MODEL = "claude-haiku-4-5"
PROMPT = "Say hello to the relay please"
MESSAGES = [{"role": "user", "content": PROMPT}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]
TOOL_CALLS = [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("get_time", '{"city": "Tokyo"}')]


def expected_text() -> str:
    """What the fake answers to ``PROMPT`` by default."""
    return reply_text_for(Scenario(), PROMPT)


def provider_usage(live: Any, text: str) -> tuple[int, int]:
    """The (input, output) tokens the fake reported for its last request."""
    sent = json.loads(live.anthropic.state.requests[-1].body)
    counter = live.anthropic.state.counter
    messages = list(sent["messages"])
    if sent.get("system"):
        messages.insert(0, {"role": "system", "content": sent["system"]})
    return counter.count_prompt(sent["model"], messages), counter.count_text(sent["model"], text)


def issued_tool_ids(live: Any) -> list[str]:
    """The ids the fake gave its last two tool_use blocks."""
    return [i for i in live.anthropic.state.issued_ids if i.startswith("toolu_")][-2:]


@inlineCallbacks
def wait_for_records(live: Any, count: int) -> Any:
    """The records, once ``count`` exist (local counting runs in a thread)."""
    for _ in range(200):
        yield live.app.meter.drain()
        records = yield live.records()
        if len(records) >= count:
            return records
        yield deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"expected {count} records, got {len(records)}")


class TranslatedNonStreamTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_completion_equals_provider_reply(self):
        """
        A chat completion for a Claude model is the provider's reply as a
        schema-valid ``chat.completion`` with its usage mapped; the provider
        got its own key as ``x-api-key`` and never the client's key; the
        record holds the provider's usage, model and provider.
        """
        live = yield start_live_proxy(self)
        client = live.openai_client()
        raw = yield in_thread(
            lambda: client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        )
        validate("CreateChatCompletionResponse", json.loads(raw.text))
        completion = raw.parse()
        text = expected_text()
        self.assertEqual(completion.choices[0].message.content, text)
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        self.assertEqual(completion.model, MODEL)
        self.assertEqual(raw.headers["x-dd0c-provider"], "anthropic")
        prompt, output = provider_usage(live, text)
        self.assertEqual(completion.usage.prompt_tokens, prompt)
        self.assertEqual(completion.usage.completion_tokens, output)
        self.assertEqual(completion.usage.total_tokens, prompt + output)
        received = live.anthropic.state.requests[-1]
        self.assertEqual(received.path, "/v1/messages")
        self.assertEqual(received.headers["x-api-key"], [live.provider_keys["anthropic"]])
        self.assertIn("anthropic-version", received.headers)
        self.assertNotIn("authorization", received.headers)
        self.assertNotIn(live.key, repr(received.headers))
        self.assertNotIn(live.key.encode(), received.body)
        sent = json.loads(received.body)
        self.assertEqual(sent["model"], MODEL)
        self.assertIsInstance(sent["max_tokens"], int)
        records = yield wait_for_records(live, 1)
        record = records[0]
        self.assertEqual(record.response_id, completion.id)
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (prompt, output))
        self.assertEqual(record.tokens_counted_locally, "")
        self.assertEqual((record.model, record.provider, record.status), (MODEL, "anthropic", 200))
        self.assertFalse(record.stream)

    @inlineCallbacks
    def test_parallel_tool_calls(self):
        """
        Two parallel tool_use blocks become two tool calls with the
        provider's ids, full JSON arguments and ``finish_reason`` tool_calls.
        """
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(tool_calls=TOOL_CALLS))
        client = live.openai_client()
        raw = yield in_thread(
            lambda: client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, tools=TOOLS)
        )
        validate("CreateChatCompletionResponse", json.loads(raw.text))
        completion = raw.parse()
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        calls = choice.message.tool_calls
        self.assertEqual([c.id for c in calls], issued_tool_ids(live))
        self.assertEqual(
            [(c.function.name, json.loads(c.function.arguments)) for c in calls],
            [(name, json.loads(args)) for name, args in TOOL_CALLS],
        )
        sent = json.loads(live.anthropic.state.requests[-1].body)
        self.assertEqual([t["name"] for t in sent["tools"]], ["get_weather", "get_time"])

    @inlineCallbacks
    def test_rate_limit_keeps_retry_after(self):
        """
        Anthropic's 429 reaches the OpenAI SDK as ``RateLimitError`` with
        the provider's ``retry-after``, and is recorded as a 429.
        """
        import openai

        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(status=429, headers={"retry-after": "7"}))
        client = live.openai_client()
        d = in_thread(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES))
        error = yield self.assertFailure(d, openai.RateLimitError)
        self.assertEqual(error.status_code, 429)
        self.assertEqual(error.response.headers["retry-after"], "7")
        self.assertEqual(error.body["type"], "rate_limit_error")
        records = yield wait_for_records(live, 1)
        self.assertEqual(records[0].status, 429)

    @inlineCallbacks
    def test_overloaded_is_529(self):
        """
        Anthropic's 529 stays 529 (``overloaded_error``), so a client can
        tell an overloaded provider from a broken one.
        """
        import openai

        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(status=529))
        client = live.openai_client()
        d = in_thread(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES))
        error = yield self.assertFailure(d, openai.APIStatusError)
        self.assertEqual(error.status_code, 529)
        self.assertEqual(error.body["type"], "overloaded_error")

    @inlineCallbacks
    def test_untranslatable_request_is_400(self):
        """A request Anthropic cannot honour (``n=2``) is refused before it is sent."""
        import openai

        live = yield start_live_proxy(self)
        client = live.openai_client()
        d = in_thread(lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2))
        error = yield self.assertFailure(d, openai.BadRequestError)
        self.assertEqual(error.body["param"], "n")
        self.assertEqual(live.anthropic.state.requests, [])


class TranslatedStreamTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_stream_content_and_usage(self):
        """
        A streamed completion's text equals the provider's; every chunk is
        schema-valid; the usage chunk the client asked for holds the
        provider's usage, as does the record.
        """
        live = yield start_live_proxy(self)
        client = live.openai_client()

        def run():
            return list(
                client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )

        chunks = yield in_thread(run)
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])
        text = expected_text()
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), text)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, ["stop"])
        prompt, output = provider_usage(live, text)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual((chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens), (prompt, output))
        received = live.anthropic.state.requests[-1]
        self.assertEqual(received.headers["x-api-key"], [live.provider_keys["anthropic"]])
        self.assertTrue(json.loads(received.body)["stream"])
        records = yield wait_for_records(live, 1)
        record = records[0]
        self.assertTrue(record.stream)
        self.assertEqual(record.response_id, chunks[0].id)
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (prompt, output))
        self.assertEqual(record.tokens_counted_locally, "")
        self.assertEqual((record.model, record.provider), (MODEL, "anthropic"))

    @inlineCallbacks
    def test_stream_without_usage_chunk(self):
        """A client that did not ask for usage gets no usage-only chunk."""
        live = yield start_live_proxy(self)
        client = live.openai_client()
        chunks = yield in_thread(
            lambda: list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        )
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])
        self.assertTrue(all(c.choices for c in chunks))
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), expected_text())
        records = yield wait_for_records(live, 1)
        self.assertGreater(records[0].completion_tokens, 0)

    @inlineCallbacks
    def test_stream_parallel_tool_calls(self):
        """
        Streamed tool calls arrive at indexes 0 and 1 with the provider's
        ids, and their argument fragments join into the full arguments.
        """
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(tool_calls=TOOL_CALLS))
        client = live.openai_client()
        chunks = yield in_thread(
            lambda: list(client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, stream=True))
        )
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for call in chunk.choices[0].delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    self.assertEqual(entry["id"], "", "a tool call id was sent twice")
                    entry["id"] = call.id
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
        self.assertEqual(sorted(calls), [0, 1])
        self.assertEqual([calls[0]["id"], calls[1]["id"]], issued_tool_ids(live))
        self.assertEqual([(calls[i]["name"], calls[i]["arguments"]) for i in (0, 1)], TOOL_CALLS)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "tool_calls")

    @inlineCallbacks
    def test_mid_stream_error_raises(self):
        """
        An ``error`` event in the middle of the stream ends it with an
        error payload the OpenAI SDK raises on; the record says so.
        """
        import openai

        live = yield start_live_proxy(self)
        live.anthropic.state.push(
            Scenario(mid_stream_error={"type": "overloaded_error", "message": "Overloaded"})
        )
        client = live.openai_client()
        seen: list[str] = []

        def run():
            for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    seen.append(chunk.choices[0].delta.content)

        error = yield self.assertFailure(in_thread(run), openai.APIError)
        self.assertIn("Overloaded", str(error))
        self.assertEqual("".join(seen), expected_text())
        records = yield wait_for_records(live, 1)
        self.assertEqual(records[0].error_type, "overloaded_error")


class NativeMessagesTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_messages_equal_provider_reply(self):
        """
        ``/v1/messages`` with the anthropic SDK: the provider's message and
        usage unchanged; the provider got its key, not the client's; the
        record holds that usage, model and provider.
        """
        live = yield start_live_proxy(self)
        client = live.anthropic_client()
        message = yield in_thread(lambda: client.messages.create(model=NATIVE_MODEL, max_tokens=100, messages=MESSAGES))
        text = expected_text()
        self.assertEqual(message.content[0].text, text)
        prompt, output = provider_usage(live, text)
        self.assertEqual((message.usage.input_tokens, message.usage.output_tokens), (prompt, output))
        received = live.anthropic.state.requests[-1]
        self.assertEqual(received.headers["x-api-key"], [live.provider_keys["anthropic"]])
        self.assertNotIn("authorization", received.headers)
        self.assertNotIn(live.key, repr(received.headers))
        records = yield wait_for_records(live, 1)
        record = records[0]
        self.assertEqual(record.response_id, message.id)
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (prompt, output))
        self.assertEqual((record.model, record.provider, record.status), (NATIVE_MODEL, "anthropic", 200))
        self.assertEqual(record.endpoint, "/v1/messages")
        self.assertEqual(record.tokens_counted_locally, "")

    @inlineCallbacks
    def test_messages_stream(self):
        """
        A native stream is relayed event for event: the SDK assembles the
        provider's text and usage, and the record has input from
        ``message_start`` and output from ``message_delta``.
        """
        live = yield start_live_proxy(self)
        client = live.anthropic_client()

        def run():
            with client.messages.stream(model=NATIVE_MODEL, max_tokens=100, messages=MESSAGES) as stream:
                text = "".join(stream.text_stream)
                return text, stream.get_final_message()

        text, final = yield in_thread(run)
        self.assertEqual(text, expected_text())
        prompt, output = provider_usage(live, text)
        self.assertEqual((final.usage.input_tokens, final.usage.output_tokens), (prompt, output))
        records = yield wait_for_records(live, 1)
        record = records[0]
        self.assertTrue(record.stream)
        self.assertEqual(record.response_id, final.id)
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (prompt, output))
        self.assertEqual((record.model, record.provider), (NATIVE_MODEL, "anthropic"))
        self.assertEqual(record.tokens_counted_locally, "")

    @inlineCallbacks
    def test_wrong_key_is_anthropic_401(self):
        """A wrong proxy key is an Anthropic-shaped 401, recorded, never sent upstream."""
        import anthropic

        live = yield start_live_proxy(self)
        client = live.anthropic_client(api_key="dd0c-wrong-key")
        d = in_thread(lambda: client.messages.create(model=NATIVE_MODEL, max_tokens=10, messages=MESSAGES))
        error = yield self.assertFailure(d, anthropic.AuthenticationError)
        self.assertEqual(error.body["type"], "error")
        self.assertEqual(error.body["error"]["type"], "authentication_error")
        self.assertEqual(live.anthropic.state.requests, [])
        records = yield wait_for_records(live, 1)
        self.assertEqual(records[0].status, 401)

    @inlineCallbacks
    def test_unknown_model_and_openai_model(self):
        """
        An unknown model is an Anthropic 404; an OpenAI model on
        ``/v1/messages`` is an Anthropic 400.
        """
        import anthropic

        live = yield start_live_proxy(self)
        client = live.anthropic_client()
        d = in_thread(lambda: client.messages.create(model="nope-1", max_tokens=10, messages=MESSAGES))
        yield self.assertFailure(d, anthropic.NotFoundError)
        d = in_thread(lambda: client.messages.create(model="gpt-4o", max_tokens=10, messages=MESSAGES))
        error = yield self.assertFailure(d, anthropic.BadRequestError)
        self.assertEqual(error.body["error"]["type"], "invalid_request_error")

    @inlineCallbacks
    def test_provider_error_passes_through(self):
        """A provider 429 reaches the anthropic SDK unchanged, retry-after included."""
        import anthropic

        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(status=429, headers={"retry-after": "3"}))
        client = live.anthropic_client()
        d = in_thread(lambda: client.messages.create(model=NATIVE_MODEL, max_tokens=10, messages=MESSAGES))
        error = yield self.assertFailure(d, anthropic.RateLimitError)
        self.assertEqual(error.response.headers["retry-after"], "3")
        self.assertEqual(error.body["error"]["type"], "rate_limit_error")

    @inlineCallbacks
    def test_count_tokens_provider_then_local(self):
        """
        ``count_tokens`` is the provider's answer while it is reachable
        (``x-dd0c-token-count: provider``), and our own count once it is
        gone (``x-dd0c-token-count: local``).
        """
        live = yield start_live_proxy(self)
        client = live.anthropic_client()

        def count():
            return client.messages.with_raw_response.count_tokens(
                model=NATIVE_MODEL, messages=MESSAGES, system="Be brief."
            )

        raw = yield in_thread(count)
        self.assertEqual(raw.headers["x-dd0c-token-count"], "provider")
        expected = live.anthropic.state.counter.count_prompt(
            NATIVE_MODEL, [{"role": "system", "content": "Be brief."}, *MESSAGES]
        )
        self.assertEqual(raw.parse().input_tokens, expected)
        received = live.anthropic.state.requests[-1]
        self.assertEqual(received.path, "/v1/messages/count_tokens")
        self.assertEqual(received.headers["x-api-key"], [live.provider_keys["anthropic"]])

        yield live.anthropic.stop()
        raw = yield in_thread(count)
        self.assertEqual(raw.headers["x-dd0c-token-count"], "local")
        self.assertGreater(raw.parse().input_tokens, 0)
        records = yield wait_for_records(live, 2)
        self.assertEqual([r.status for r in records], [200, 200])
        self.assertEqual({r.endpoint for r in records}, {"/v1/messages/count_tokens"})

    @inlineCallbacks
    def test_disconnect_mid_stream(self):
        """
        A client that leaves after two events: the provider connection is
        closed (open count back to 0) and the record says disconnected, with
        the input from ``message_start``.
        """
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(chunk_count=20, chunk_delay=0.5))
        body = json.dumps(
            {"model": NATIVE_MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
        ).encode()
        request = (
            b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"x-api-key: " + live.key.encode() + b"\r\n"
            b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

        def read_two_events():
            with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
                sock.sendall(request)
                received = b""
                while True:
                    data = sock.recv(4096)
                    if not data:
                        raise AssertionError("stream ended early")
                    received += data
                    head, _, events = received.partition(b"\r\n\r\n")
                    if events.count(b"\n\n") >= 2:
                        return head, events

        head, events = yield in_thread(read_two_events)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        self.assertIn(b"event: message_start", events)
        yield live.anthropic.state.wait_for_open_connections(0)
        records = yield wait_for_records(live, 1)
        record = records[0]
        self.assertTrue(record.disconnected)
        self.assertTrue(record.stream)
        self.assertEqual(record.prompt_tokens, provider_usage(live, "")[0])
        self.assertEqual(live.app.upstream.counter.open, 0)
