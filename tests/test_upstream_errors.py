"""
Provider errors pass through transparently; an unreachable provider is a
502 and a silent one a 504, each OpenAI-shaped; keys are never echoed.
"""

from __future__ import annotations

import json

import openai
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy
from .openapi_schema import validate

MESSAGES = [{"role": "user", "content": "hello"}]


class PassThroughTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_429_with_headers(self):
        """
        A provider 429 reaches the SDK as RateLimitError with the provider's
        error JSON, retry-after, x-ratelimit-* and request id intact.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(
            Scenario(
                status=429,
                headers={
                    "retry-after": "7",
                    "x-ratelimit-remaining-requests": "0",
                    "x-request-id": "req_provider_123",
                },
            )
        )
        client = live.openai_client()
        with self.assertRaises(openai.RateLimitError) as ctx:
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        response = ctx.exception.response
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.headers["retry-after"], "7")
        self.assertEqual(response.headers["x-ratelimit-remaining-requests"], "0")
        self.assertEqual(response.headers["x-request-id"], "req_provider_123")
        validate("ErrorResponse", response.json())
        records = yield live.records()
        self.assertEqual(records[0].status, 429)
        self.assertIsNone(records[0].completion_tokens)

    @inlineCallbacks
    def test_500_and_400(self):
        """A 500 becomes InternalServerError, a 400 BadRequestError, as from the provider."""
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(status=500), Scenario(status=400))
        client = live.openai_client()
        with self.assertRaises(openai.InternalServerError):
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        with self.assertRaises(openai.BadRequestError):
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))

    @inlineCallbacks
    def test_error_body_echoing_key_is_scrubbed(self):
        """
        A provider error body that echoes a key (as invalid-key errors do)
        reaches the client without it.
        """
        live = yield start_live_proxy(self)
        leaked = live.provider_keys["openai"]
        live.openai.state.push(
            Scenario(
                status=401,
                error_body={"error": {"message": f"Incorrect API key provided: {leaked}", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
            )
        )
        client = live.openai_client()
        with self.assertRaises(openai.AuthenticationError) as ctx:
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        text = ctx.exception.response.text
        self.assertNotIn(leaked, text)
        self.assertNotIn(live.key, text)
        self.assertIn("Incorrect API key provided", text)

    @inlineCallbacks
    def test_unreachable_provider_is_502(self):
        """A provider that refuses connections: 502, OpenAI-shaped, recorded."""
        live = yield start_live_proxy(self)
        yield live.openai.stop()
        live.openai = None
        client = live.openai_client()
        with self.assertRaises(openai.InternalServerError) as ctx:
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        self.assertEqual(ctx.exception.response.status_code, 502)
        body = ctx.exception.response.json()
        validate("ErrorResponse", body)
        self.assertEqual(body["error"]["code"], "upstream_unreachable")
        records = yield live.records()
        self.assertEqual(records[0].status, 502)
        # Never reached, never billed.
        self.assertIsNone(records[0].prompt_tokens)
        self.assertEqual(records[0].cost_usd, 0)

    @inlineCallbacks
    def test_silent_provider_is_504(self):
        """A provider that never answers: 504 after the first-byte timeout."""
        live = yield start_live_proxy(self, extra_config={"timeouts": {"first_byte": 0.5}})
        live.openai.state.push(Scenario(hang=True))
        client = live.openai_client()
        with self.assertRaises(openai.APIStatusError) as ctx:
            yield in_thread(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        self.assertEqual(ctx.exception.response.status_code, 504)
        self.assertEqual(ctx.exception.response.json()["error"]["code"], "upstream_timeout")
        yield live.openai.state.wait_for_open_connections(0)
        records = yield live.records()
        self.assertEqual(records[0].status, 504)

    @inlineCallbacks
    def test_idle_stream_timeout_ends_stream_with_error(self):
        """
        A stream that goes silent longer than the idle timeout ends with an
        error event the SDK raises, and the provider connection is closed.
        """
        live = yield start_live_proxy(self, extra_config={"timeouts": {"idle": 0.5}})
        live.openai.state.push(Scenario(chunk_delay=5.0, chunk_count=3))
        client = live.openai_client()

        def run():
            return list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))

        with self.assertRaises(openai.APIError):
            yield in_thread(run)
        yield live.openai.state.wait_for_open_connections(0)
        records = yield live.records()
        self.assertEqual(records[0].error_type, "upstream_timeout")
        self.assertEqual(live.app.upstream.counter.open, 0)

    @inlineCallbacks
    def test_reset_mid_stream(self):
        """
        A provider that resets the connection mid-stream: the client gets the
        chunks so far and then an error; the record bills what was delivered.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(reset_after_chunks=2, chunk_count=6))
        client = live.openai_client()
        seen = []

        def run():
            for chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
                seen.append(chunk)

        with self.assertRaises(openai.APIError):
            yield in_thread(run)
        records = yield live.records()
        self.assertEqual(records[0].tokens_counted_locally, "prompt,completion")
        self.assertGreater(records[0].completion_tokens, 0)
        self.assertTrue(any(c.choices and c.choices[0].delta.content for c in seen))

    @inlineCallbacks
    def test_embeddings_passthrough_metered(self):
        """Other /v1 endpoints are relayed and metered from the provider's usage."""
        live = yield start_live_proxy(self)
        client = live.openai_client()
        raw = yield in_thread(lambda: client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello world"))
        body = json.loads(raw.text)
        validate("CreateEmbeddingResponse", body)
        records = yield live.records()
        self.assertEqual(records[0].endpoint, "/v1/embeddings")
        self.assertEqual(records[0].prompt_tokens, body["usage"]["prompt_tokens"])
