"""
Backpressure end to end: a client that stops reading makes the proxy pause
the provider's socket, and the proxy's own buffer for that stream stays
small however long the provider's stream is.
"""

from __future__ import annotations

import json
import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy


def open_stream_without_reading(port: int, key: str) -> socket.socket:
    """Send a stream request with a tiny receive buffer, then read nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "go"}]}).encode()
    sock.sendall(
        (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    )
    return sock


class BackpressureLiveTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_slow_reader_pauses_provider(self):
        """
        A 100,000-chunk stream to a client that reads nothing: the fake
        provider is paused (it stops producing), the proxy holds only a
        bounded amount for the stream, and closing the client closes the
        provider connection.
        """
        live = yield start_live_proxy(self)
        live.openai.state.push(Scenario(chunk_count=100_000, words_per_chunk=3))
        paused = live.openai.state.wait_for_stream_pause()
        sock = yield in_thread(open_stream_without_reading, live.port, live.key)
        self.addCleanup(sock.close)
        yield paused
        self.assertGreater(live.openai.state.stream_pauses, 0)
        # Give an unpaused relay time to read megabytes, then look at what
        # the proxy holds for this client: twisted.web pauses the producer
        # once 64 KiB are queued, so a paused relay holds little more.
        yield deferLater(reactor, 1.5, lambda: None)
        (channel,) = list(live.built.site.channels)
        transport = getattr(channel, "transport", None) or channel._channel.transport
        buffered = len(transport.dataBuffer) + sum(len(piece) for piece in transport._tempDataBuffer)
        self.assertLess(buffered, 512 * 1024, "the proxy kept reading a stream its client does not read")
        sock.close()
        yield live.openai.state.wait_for_open_connections(0)
        records = yield live.records()
        self.assertTrue(records[0].disconnected)
        self.assertEqual(live.app.upstream.counter.open, 0)
