"""
The proxy core, live: the tap's service on loopback, the fake OpenAI
provider upstream, the official ``openai`` SDK as the client.
"""

from __future__ import annotations

import json

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy
from .openapi_schema import validate, validate_sse_stream

MESSAGES = [{"role": "user", "content": "Say hello to the relay please"}]


class NonStreamingTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_completion_equals_provider_reply(self):
        """
        A non-stream completion comes back exactly as the provider sent it
        (schema-valid), the provider got the proxy's provider key and never
        the client's key, and one usage record holds the provider's usage.
        """
        live = yield start_live_proxy(self)
        client = live.openai_client()
        raw = yield in_thread(
            lambda: client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        )
        body = json.loads(raw.text)
        validate("CreateChatCompletionResponse", body)
        completion = raw.parse()
        self.assertTrue(completion.choices[0].message.content.startswith("Echo:"))
        received = live.openai.state.requests[-1]
        self.assertEqual(received.headers["authorization"], ["Bearer " + live.provider_keys["openai"]])
        self.assertNotIn(live.key, repr(received.headers))
        self.assertNotIn(live.key.encode(), received.body)
        self.assertEqual(raw.headers["x-dd0c-provider"], "openai")
        records = yield live.records()
        self.assertEqual(len(records), 1)
        record = records[0]
        self.assertEqual(record.response_id, completion.id)
        self.assertEqual(record.key_id, live.key_id)
        self.assertEqual(record.prompt_tokens, completion.usage.prompt_tokens)
        self.assertEqual(record.completion_tokens, completion.usage.completion_tokens)
        self.assertEqual(record.tokens_counted_locally, "")
        self.assertEqual(record.status, 200)
        self.assertFalse(record.stream)
        self.assertIsNotNone(record.cost_usd)
        self.assertGreater(record.cost_usd, 0)


class StreamingTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_stream_content_and_hidden_usage_chunk(self):
        """
        A stream's text equals the provider's; every chunk is schema-valid;
        the proxy asked the provider for usage but the client, who did not,
        never sees the usage-only chunk, while the record has the usage.
        """
        live = yield start_live_proxy(self)
        client = live.openai_client()

        def run():
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
            return chunks

        chunks = yield in_thread(run)
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])
        self.assertTrue(all(c.choices for c in chunks), "usage chunk leaked to a client that did not ask")
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertTrue(text.startswith("Echo:"))
        sent = json.loads(live.openai.state.requests[-1].body)
        self.assertEqual(sent["stream_options"], {"include_usage": True})
        records = yield live.records()
        self.assertEqual(len(records), 1)
        self.assertTrue(records[0].stream)
        self.assertEqual(records[0].tokens_counted_locally, "")
        self.assertGreater(records[0].completion_tokens, 0)

    @inlineCallbacks
    def test_stream_usage_when_asked(self):
        """A client that asks for usage gets the final usage chunk."""
        live = yield start_live_proxy(self)
        client = live.openai_client()

        def run():
            return list(
                client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )

        chunks = yield in_thread(run)
        self.assertEqual(chunks[-1].choices, [])
        self.assertGreater(chunks[-1].usage.completion_tokens, 0)
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])

    @inlineCallbacks
    def test_first_chunk_before_provider_sends_second(self):
        """
        The client reads chunk 1 while the provider is still waiting to send
        chunk 2: nothing is buffered.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(chunk_delay=3.0, chunk_count=3))
        client = live.openai_client()

        def first():
            stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            iterator = iter(stream)
            chunk = next(iterator)
            while not (chunk.choices and chunk.choices[0].delta.content):
                chunk = next(iterator)
            stream.close()
            return chunk

        import time

        started = time.monotonic()
        chunk = yield in_thread(first)
        elapsed = time.monotonic() - started
        self.assertTrue(chunk.choices[0].delta.content)
        # The second chunk would come 3 s later: we got the first long before.
        self.assertLess(elapsed, 2.5)
