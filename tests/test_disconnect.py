"""
Client disconnects: the upstream is closed within a second — before the
first byte, during the headers, or mid-body — never returned to the pool,
and the record bills what was delivered.
"""

from __future__ import annotations

import json
import socket
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy


def stream_request(key: str, model: str = "gpt-4o") -> bytes:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "tell me a long story"}]}
    ).encode()
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_events_then_close(port: int, key: str, events: int) -> list[dict]:
    """Read ``events`` SSE data events with content, then drop the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(stream_request(key))
    buffer = b""
    got: list[dict] = []
    while len(got) < events:
        data = sock.recv(4096)
        if not data:
            break
        buffer += data
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            for line in raw.split(b"\n"):
                if line.startswith(b"data: {"):
                    chunk = json.loads(line[6:])
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        got.append(chunk)
    sock.close()
    return got


def connect_send_close(port: int, key: str, wait: float) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(stream_request(key))
    time.sleep(wait)  # in the client thread: the reactor keeps running
    sock.close()


class DisconnectTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_mid_stream_disconnect_bills_delivered_chunks(self):
        """
        A client that reads 3 content chunks and leaves: the provider
        connection closes within 1 s, the pool holds no connection, and the
        record's completion tokens are those of the 3 delivered chunks.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(chunk_count=50, chunk_delay=0.05, words_per_chunk=2))
        chunks = yield in_thread(read_events_then_close, live.port, live.key, 3)
        left = time.monotonic()
        yield live.openai.state.wait_for_open_connections(0)
        self.assertLess(time.monotonic() - left, 1.0)
        self.assertEqual(live.app.upstream.counter.open, 0)
        records = yield live.records()
        self.assertEqual(len(records), 1)
        record = records[0]
        self.assertTrue(record.disconnected)
        self.assertIn("completion", record.tokens_counted_locally)
        from dd0c_route.metering.tokens import count_text_tokens

        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
        delivered = count_text_tokens("gpt-4o", text)
        # The client may have been handed a chunk or two more than it read
        # before the close was noticed: bounded, never the whole reply.
        self.assertGreaterEqual(record.completion_tokens, delivered)
        self.assertLess(record.completion_tokens, delivered + 12)
        self.assertGreater(record.prompt_tokens, 0)

    @inlineCallbacks
    def test_disconnect_before_first_byte(self):
        """
        A client that leaves while the provider is still processing the
        prompt: upstream request cancelled and its connection closed within
        1 s; 0 completion tokens; the prompt is still billed.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(header_delay=30.0))
        yield in_thread(connect_send_close, live.port, live.key, 0.3)
        left = time.monotonic()
        yield live.openai.state.wait_for_open_connections(0)
        self.assertLess(time.monotonic() - left, 1.0)
        records = yield live.records()
        record = records[0]
        self.assertTrue(record.disconnected)
        self.assertEqual(record.completion_tokens, 0)
        self.assertGreater(record.prompt_tokens, 0)
        self.assertEqual(record.status, 499)
        self.assertEqual(live.app.upstream.counter.open, 0)

    @inlineCallbacks
    def test_disconnect_during_first_token_delay(self):
        """
        Headers sent, no token yet: closing the client closes the provider
        connection; 0 completion tokens.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(first_token_delay=30.0))
        yield in_thread(connect_send_close, live.port, live.key, 0.3)
        yield live.openai.state.wait_for_open_connections(0)
        records = yield live.records()
        self.assertEqual(records[0].completion_tokens, 0)
        self.assertTrue(records[0].disconnected)

    @inlineCallbacks
    def test_many_disconnects_leave_no_connection(self):
        """Twenty streams cut at once: every provider connection closes, 20 records."""
        live = yield start_live_proxy(self)
        live.openai.state.default_scenario = Scenario(chunk_count=200, chunk_delay=0.02)
        from twisted.internet.defer import gatherResults

        yield gatherResults([in_thread(read_events_then_close, live.port, live.key, 2) for _ in range(20)])
        yield live.openai.state.wait_for_open_connections(0)
        yield deferLater(reactor, 0.1, lambda: None)
        records = yield live.records()
        self.assertEqual(len(records), 20)
        self.assertTrue(all(r.disconnected for r in records))
        self.assertEqual(live.app.upstream.counter.open, 0)
