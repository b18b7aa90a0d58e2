"""
An upstream 200 that is no usable answer never reaches the client as a 200
(issue #17, items 3 and 4): a truncated JSON body, a body cut short by the
provider's close, an HTML page, a non-stream answer to a stream request —
each is a 502 ``upstream_invalid_response`` (or ``upstream_error``) in the
client's shape, recorded as a 502 with the provider billed nothing; a
non-JSON ``data:`` line inside a stream is never forwarded and ends the
stream with an error event, and the record is an upstream error billed on
what was delivered.  Live: the tap's service, the fake providers, the
official SDKs.
"""

from __future__ import annotations

import json

import anthropic
import openai
import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy
from .openapi_schema import validate

MESSAGES = [{"role": "user", "content": "hello there"}]


class NonStreamTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def _broken_chat(self, fault: str, code: str):
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(fault=fault))
        client = live.openai_client()
        with self.assertRaises(openai.APIStatusError) as ctx:
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        response = ctx.exception.response
        self.assertEqual(response.status_code, 502)
        validate("ErrorResponse", response.json())
        self.assertEqual(response.json()["error"]["code"], code)
        # The proxy keeps serving.
        reply = yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        self.assertTrue(reply.choices[0].message.content)
        first, second = sorted((yield live.records()), key=lambda r: r.created_at)
        self.assertEqual((first.status, first.error_type), (502, code))
        self.assertIsNone(first.cost_usd or None, "the provider is billed nothing")
        self.assertIsNone(first.completion_tokens)
        self.assertEqual(second.status, 200)

    def test_truncated_json_with_a_correct_content_length(self):
        return self._broken_chat("truncated_json", "upstream_invalid_response")

    def test_content_length_longer_than_the_body_then_fin(self):
        return self._broken_chat("short_body", "upstream_error")

    def test_html_page_from_a_load_balancer(self):
        return self._broken_chat("html", "upstream_invalid_response")

    @inlineCallbacks
    def test_stream_request_answered_with_an_html_200(self):
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(fault="html"))
        response = yield treq.post(
            live.base_url + "/v1/chat/completions",
            headers={"authorization": "Bearer " + live.key},
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
            persistent=False,
        )
        self.assertEqual(response.code, 502)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        body = yield response.json()
        self.assertEqual(body["error"]["code"], "upstream_invalid_response")
        (record,) = yield live.records()
        self.assertEqual((record.status, record.completion_tokens), (502, None))

    @inlineCallbacks
    def test_native_messages_get_an_anthropic_shaped_502(self):
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(fault="truncated_json"))
        client = live.anthropic_client()
        with self.assertRaises(anthropic.APIStatusError) as ctx:
            yield in_thread(
                lambda: client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
            )
        self.assertEqual(ctx.exception.status_code, 502)
        body = ctx.exception.response.json()
        self.assertEqual(body["type"], "error")
        self.assertEqual(body["error"]["type"], "api_error")


class StreamTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_non_json_data_line_ends_a_chat_stream_with_an_error_event(self):
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(fault="bad_sse_line", chunk_count=5))
        client = live.openai_client()
        seen: list[str] = []

        def consume() -> None:
            stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            for chunk in stream:
                validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
                for choice in chunk.choices:
                    if choice.delta.content:
                        seen.append(choice.delta.content)

        with self.assertRaises(openai.APIError) as ctx:
            yield in_thread(consume)
        self.assertNotIn("<html>", str(ctx.exception))
        self.assertEqual(len(seen), 2, "the two chunks before the bad line were delivered, nothing after")
        (record,) = yield live.records()
        self.assertEqual(record.status, 200)
        self.assertEqual(record.error_type, "upstream_invalid_response")
        self.assertIn("completion", record.tokens_counted_locally, "billed on what was delivered")
        self.assertGreater(record.completion_tokens, 0)
        yield live.openai.state.wait_for_open_connections(0)

    @inlineCallbacks
    def test_raw_stream_never_forwards_the_bad_line(self):
        live = yield start_live_proxy(self)
        live.anthropic.state.push(Scenario(fault="bad_sse_line", chunk_count=4))
        response = yield treq.post(
            live.base_url + "/v1/messages",
            headers={"x-api-key": live.key, "anthropic-version": "2023-06-01"},
            json={"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": MESSAGES, "stream": True},
            persistent=False,
        )
        self.assertEqual(response.code, 200)
        text = yield response.text()
        self.assertNotIn("<html>", text)
        events = [block for block in text.split("\n\n") if block.strip()]
        last = events[-1]
        self.assertTrue(last.startswith("event: error"), last)
        payload = json.loads(last.split("data: ", 1)[1])
        self.assertEqual(payload["type"], "error")
        (record,) = yield live.records()
        self.assertEqual(record.error_type, "upstream_invalid_response")
