"""
``POST /v1/responses``, live: the tap's service on loopback, the fake
providers upstream, the official ``openai`` SDK (``client.responses``) as
the client.  Relayed to OpenAI and translated for Claude; routed, fallen
back, metered and cut like chat completions.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.metering.tokens import count_text_tokens
from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy
from .openapi_schema import validate, validate_responses_stream

PROMPT = "Say hello to the relay please"
TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": True,
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}},
    {"type": "function", "name": "get_time", "description": "Time in a zone", "strict": True,
     "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"], "additionalProperties": False}},
]
TWO_CALLS = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "Europe/Paris"}')]
CHEAP_RULE = {
    "name": "cheap",
    "match": {"model": "gpt-4o", "complexity": ["simple"]},
    "action": {"model": "gpt-4o-mini"},
    "fallbacks": ["claude-haiku-4-5"],
}


def post(live: Any, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=20)
    try:
        conn.request("POST", "/v1/responses", json.dumps(body).encode(),
                     {"authorization": "Bearer " + live.key, "content-type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sse_events(data: bytes) -> list[dict[str, Any]]:
    """The parsed ``data:`` payloads of an SSE body; each ``event:`` line must name its type."""
    events = []
    for raw in data.split(b"\n\n"):
        lines = raw.split(b"\n")
        names = [line[7:].decode() for line in lines if line.startswith(b"event: ")]
        for line in lines:
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                assert names == [event["type"]], (names, event["type"])
                events.append(event)
    return events


def stream_request(key: str, model: str = "gpt-4o") -> bytes:
    body = json.dumps({"model": model, "stream": True, "input": "tell me a long story"}).encode()
    return (
        "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_deltas_then_close(port: int, key: str, deltas: int, model: str = "gpt-4o") -> list[str]:
    """Read ``deltas`` output_text.delta events, then drop the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(stream_request(key, model))
    buffer = b""
    got: list[str] = []
    while len(got) < deltas:
        data = sock.recv(4096)
        if not data:
            break
        buffer += data
        while b"\n\n" in buffer and len(got) < deltas:
            raw, buffer = buffer.split(b"\n\n", 1)
            for line in raw.split(b"\n"):
                if line.startswith(b"data: {"):
                    event = json.loads(line[6:])
                    if event["type"] == "response.output_text.delta":
                        got.append(event["delta"])
    sock.close()
    return got


class OpenAIRelayTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_create_equals_provider_reply_and_record_is_exact(self):
        """
        ``client.responses.create`` gets the provider's response unchanged;
        the one record has endpoint /v1/responses and the provider's usage,
        with cached and reasoning tokens kept apart.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(cached_tokens=3, reasoning_tokens=5))
        client = live.openai_client()
        raw = yield in_thread(lambda: client.responses.with_raw_response.create(model="gpt-4o", input=PROMPT))
        response = raw.parse()
        self.assertTrue(response.output_text.startswith("Echo: Say hello"))
        self.assertEqual(raw.headers["x-dd0c-provider"], "openai")
        self.assertEqual(raw.headers["x-dd0c-route"], "default")
        self.assertTrue(raw.headers["x-dd0c-request-id"].startswith("req_"))
        self.assertEqual(json.loads(live.openai.state.requests[-1].body)["input"], PROMPT)
        (record,) = yield live.records()
        self.assertEqual(record.endpoint, "/v1/responses")
        self.assertEqual(record.response_id, response.id)
        usage = response.usage
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (usage.input_tokens, usage.output_tokens))
        self.assertEqual((record.cached_tokens, record.reasoning_tokens), (3, 5))
        self.assertEqual(record.tokens_counted_locally, "")
        self.assertFalse(record.stream)
        self.assertGreater(record.cost_usd, 0)

    @inlineCallbacks
    def test_stream_content_equals_provider_and_usage_recorded(self):
        """``client.responses.stream``: the text is the provider's, the final usage is the record's."""
        live = yield start_live_proxy(self)
        client = live.openai_client()

        def run() -> tuple[str, Any]:
            with client.responses.stream(model="gpt-4o", input=PROMPT) as stream:
                text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
                return text, stream.get_final_response()

        text, final = yield in_thread(run)
        self.assertEqual(text, final.output_text)
        self.assertTrue(text.startswith("Echo: Say hello"))
        (record,) = yield live.records()
        self.assertTrue(record.stream)
        self.assertEqual(record.endpoint, "/v1/responses")
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (final.usage.input_tokens, final.usage.output_tokens))
        self.assertEqual(record.response_id, final.id)
        self.assertEqual(record.tokens_counted_locally, "")

    @inlineCallbacks
    def test_client_cut_after_three_deltas_bills_what_it_read(self):
        """
        A client that reads 3 text deltas and leaves: the provider
        connection closes within 1 s, none is left in the pool, and the
        output billed is the delivered text's (+ at most a chunk or two in
        flight), counted locally.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(chunk_count=50, chunk_delay=0.05, words_per_chunk=2))
        deltas = yield in_thread(read_deltas_then_close, live.port, live.key, 3)
        left = time.monotonic()
        yield live.openai.state.wait_for_open_connections(0)
        self.assertLess(time.monotonic() - left, 1.0)
        self.assertEqual(live.app.upstream.counter.open, 0)
        (record,) = yield live.records()
        self.assertTrue(record.disconnected)
        # No usage before response.completed: prompt and output are both counted locally.
        self.assertEqual(record.tokens_counted_locally, "prompt,completion")
        delivered = count_text_tokens("gpt-4o", "".join(deltas))
        self.assertEqual(len(deltas), 3)
        self.assertGreaterEqual(record.completion_tokens, delivered)
        self.assertLess(record.completion_tokens, delivered + 12)
        self.assertGreater(record.prompt_tokens, 0)

    @inlineCallbacks
    def test_cut_before_first_delta_bills_no_output(self):
        """Headers sent, no delta yet: the client leaves, 0 output tokens, the prompt is billed."""
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(first_token_delay=30.0))

        def connect_send_close() -> None:
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
            sock.sendall(stream_request(live.key))
            time.sleep(0.3)  # in the client thread: the reactor keeps running
            sock.close()

        yield in_thread(connect_send_close)
        left = time.monotonic()
        yield live.openai.state.wait_for_open_connections(0)
        self.assertLess(time.monotonic() - left, 1.0)
        (record,) = yield live.records()
        self.assertTrue(record.disconnected)
        self.assertEqual(record.completion_tokens, 0)
        self.assertGreater(record.prompt_tokens, 0)

    @inlineCallbacks
    def test_provider_cut_bills_delivered_output(self):
        """The provider resets the stream after 4 deltas: the 4 delivered deltas are billed."""
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(chunk_count=20, words_per_chunk=1, reset_after_chunks=4))
        status, _, data = yield in_thread(post, live, {"model": "gpt-4o", "input": PROMPT, "stream": True})
        self.assertEqual(status, 200)
        events = sse_events(data)
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        self.assertEqual(events[-1]["type"], "error")
        (record,) = yield live.records()
        self.assertEqual(record.completion_tokens, count_text_tokens("gpt-4o", text))
        self.assertEqual(record.tokens_counted_locally, "prompt,completion")


class RoutingTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_rule_rewrites_a_responses_request(self):
        """A simple prompt for gpt-4o is served by gpt-4o-mini; the headers and record say so."""
        live = yield start_live_proxy(self, {"routing": {"mode": "enforce", "rules": [CHEAP_RULE]}})
        client = live.openai_client()
        raw = yield in_thread(lambda: client.responses.with_raw_response.create(model="gpt-4o", input="Hi there, how are you?"))
        self.assertEqual(raw.headers["x-dd0c-route"], "cheap")
        self.assertEqual(raw.headers["x-dd0c-model"], "gpt-4o-mini")
        self.assertEqual(json.loads(live.openai.state.requests[-1].body)["model"], "gpt-4o-mini")
        (record,) = yield live.records()
        self.assertEqual((record.route_rule, record.model_requested, record.model), ("cheap", "gpt-4o", "gpt-4o-mini"))
        self.assertEqual(record.endpoint, "/v1/responses")

    @inlineCallbacks
    def test_match_keys_read_the_responses_shape(self):
        """
        Rules matching ``tools``, ``json_mode`` (``text.format``) and
        ``images`` (``input_image`` parts) fire for Responses requests that
        have them, and not for one that has none.
        """
        rules = [
            {"name": "tooling", "match": {"tools": True}, "action": {"model": "gpt-4o-mini"}},
            {"name": "json", "match": {"json_mode": True}, "action": {"model": "gpt-4o-mini"}},
            {"name": "vision", "match": {"images": True}, "action": {"model": "gpt-4o-mini"}},
        ]
        live = yield start_live_proxy(self, {"routing": {"mode": "enforce", "rules": rules}})
        image = [{"role": "user", "content": [{"type": "input_text", "text": "what is it?"},
                                              {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]
        cases = [
            ({"tools": TOOLS}, "tooling"),
            ({"text": {"format": {"type": "json_object"}}}, "json"),
            ({"input": image}, "vision"),
            ({}, "default"),
        ]
        for extra, route in cases:
            _, headers, _ = yield in_thread(post, live, dict({"model": "gpt-4o", "input": PROMPT}, **extra))
            self.assertEqual(headers["x-dd0c-route"], route, extra)

    @inlineCallbacks
    def test_429_falls_back_before_the_first_byte(self):
        """The routed provider answers 429: the client gets the Claude fallback's response, translated."""
        live = yield start_live_proxy(self, {"routing": {"mode": "enforce", "rules": [CHEAP_RULE]}})
        live.openai.state.push(Scenario(status=429, headers={"retry-after": "7"}))
        status, headers, data = yield in_thread(post, live, {"model": "gpt-4o", "input": "Hi there, how are you?"})
        self.assertEqual(status, 200)
        self.assertEqual((headers["x-dd0c-provider"], headers["x-dd0c-model"]), ("anthropic", "claude-haiku-4-5"))
        response = json.loads(data)
        validate("Response", response)
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "gpt-4o-mini@openai:429,claude-haiku-4-5@anthropic:200")
        self.assertEqual(record.completion_tokens, response["usage"]["output_tokens"])

    @inlineCallbacks
    def test_shadow_mode_records_the_model_a_rule_would_use(self):
        live = yield start_live_proxy(self, {"routing": {"mode": "shadow", "rules": [CHEAP_RULE]}})
        status, headers, _ = yield in_thread(post, live, {"model": "gpt-4o", "input": "Hi there, how are you?"})
        self.assertEqual((status, headers["x-dd0c-route"]), (200, "shadow:cheap"))
        (record,) = yield live.records()
        self.assertEqual((record.model, record.shadow_model), ("gpt-4o", "gpt-4o-mini"))
        self.assertIsNotNone(record.cost_shadow_usd)


class ClaudeTranslationTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_non_stream_round_trip_with_two_parallel_calls(self):
        """
        A claude-* Responses request is a Messages call (instructions ->
        system, max_output_tokens -> max_tokens, tools translated); two
        parallel tool calls come back as two function_call items with
        distinct, stable ids; the object validates against the schema.
        """
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(tool_calls=TWO_CALLS))
        client = live.openai_client()
        raw = yield in_thread(lambda: client.responses.with_raw_response.create(
            model="claude-sonnet-4-5", instructions="Be brief.", input=PROMPT, tools=TOOLS, max_output_tokens=300))
        body = json.loads(raw.text)
        validate("Response", body)
        response = raw.parse()
        sent = json.loads(live.anthropic.state.requests[-1].body)
        self.assertEqual((sent["system"], sent["max_tokens"]), ("Be brief.", 300))
        self.assertEqual([t["name"] for t in sent["tools"]], ["get_weather", "get_time"])
        calls = [item for item in response.output if item.type == "function_call"]
        self.assertEqual([(c.name, json.loads(c.arguments)) for c in calls], [(n, json.loads(a)) for n, a in TWO_CALLS])
        self.assertEqual(len({c.call_id for c in calls}), 2)
        self.assertEqual(len({c.id for c in calls}), 2)
        self.assertTrue(all(c.call_id.startswith("toolu_") for c in calls))
        (record,) = yield live.records()
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (response.usage.input_tokens, response.usage.output_tokens))
        self.assertEqual((record.endpoint, record.provider), ("/v1/responses", "anthropic"))

    @inlineCallbacks
    def test_stream_round_trip_validates_every_event(self):
        """A streamed claude-* text answer: every event validates, the SDK parses it, the text matches."""
        live = yield start_live_proxy(self)
        status, _, data = yield in_thread(post, live, {"model": "claude-sonnet-4-5", "input": PROMPT, "stream": True})
        self.assertEqual(status, 200)
        events = sse_events(data)
        validate_responses_stream(events)
        kinds = [e["type"] for e in events]
        self.assertEqual(kinds[:4], ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"])
        self.assertEqual(kinds[-1], "response.completed")
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        self.assertTrue(text.startswith("Echo: Say hello"))
        client = live.openai_client()

        def run() -> tuple[str, Any]:
            with client.responses.stream(model="claude-sonnet-4-5", input=PROMPT) as stream:
                streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
                return streamed, stream.get_final_response()

        streamed, final = yield in_thread(run)
        self.assertEqual(streamed, final.output_text)
        self.assertEqual(streamed, text)
        records = yield live.records()
        self.assertEqual(records[0].completion_tokens, events[-1]["response"]["usage"]["output_tokens"])

    @inlineCallbacks
    def test_stream_two_parallel_calls_keep_ids_and_indexes(self):
        """Two streamed tool calls: distinct call ids and output indexes, arguments reassembled, schema-valid."""
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(tool_calls=TWO_CALLS))
        status, _, data = yield in_thread(post, live, {"model": "claude-sonnet-4-5", "input": PROMPT, "tools": TOOLS, "stream": True})
        self.assertEqual(status, 200)
        events = sse_events(data)
        validate_responses_stream(events)
        added = [e for e in events if e["type"] == "response.output_item.added"]
        self.assertEqual([e["output_index"] for e in added], [0, 1])
        self.assertEqual(len({e["item"]["call_id"] for e in added}), 2)
        for e in added:
            pieces = "".join(d["delta"] for d in events if d["type"] == "response.function_call_arguments.delta" and d["item_id"] == e["item"]["id"])
            self.assertEqual(json.loads(pieces), json.loads(dict(TWO_CALLS)[e["item"]["name"]]))
        final = events[-1]["response"]
        self.assertEqual([o["call_id"] for o in final["output"]], [e["item"]["call_id"] for e in added])

    @inlineCallbacks
    def test_stateful_and_builtin_parameters_are_refused_by_name(self):
        """previous_response_id, reasoning, store and built-in tools: a 400 naming the parameter, nothing sent."""
        live = yield start_live_proxy(self)
        cases = [
            ({"previous_response_id": "resp_1"}, "previous_response_id"),
            ({"reasoning": {"effort": "high"}}, "reasoning"),
            ({"store": True}, "store"),
            ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ]
        for extra, param in cases:
            status, _, data = yield in_thread(post, live, dict({"model": "claude-sonnet-4-5", "input": PROMPT}, **extra))
            self.assertEqual(status, 400, data)
            error = json.loads(data)["error"]
            self.assertEqual(error["param"], param)
            self.assertIn(param.partition("[")[0], error["message"])
        self.assertEqual(live.anthropic.state.requests, [])
        records = yield live.records()
        self.assertEqual([r.status for r in records], [400] * 4)
