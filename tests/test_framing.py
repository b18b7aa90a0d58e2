"""
The proxy's HTTP channel, driven byte by byte over a ``StringTransport``
with a ``Clock``: framing refusals, JSON head errors, client timeouts.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dd0c_route.web.site import ProxySite


class _Recorder(Resource):
    """Answers each request with its body (or holds it open: a long stream)."""

    isLeaf = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes]] = []
        self.hold = hold

    def render(self, request):
        body = request.content.read()
        self.seen.append((request.path, body))
        if self.hold:
            request.write(b"data: first\n\n")
            return NOT_DONE_YET
        return b"ok:" + body


class ChannelTests(SynchronousTestCase):
    def connect(self, hold: bool = False, header: float = 30.0, body: float = 30.0):
        self.clock = Clock()
        self.resource = _Recorder(hold)
        self.site = ProxySite(self.resource, 1024, reactor=self.clock, client_header_timeout=header, client_body_timeout=body)
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def assertJSONError(self, transport, status):
        raw = transport.value()
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), raw[:200])
        self.assertIn(b"content-type: application/json", head.lower())
        self.assertIn("error", json.loads(body))
        self.assertTrue(transport.disconnecting)

    def test_normal_requests_served(self):
        """Content-Length and chunked bodies, keep-alive: both served."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        channel.dataReceived(b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n")
        self.assertEqual(self.resource.seen, [(b"/a", b"abc"), (b"/b", b"xyz")])
        self.assertFalse(transport.disconnecting)

    def test_smuggling_framings_refused(self):
        """
        Every framing but one exact 'chunked' or one Content-Length gets a
        JSON 400 and a close, and nothing -- neither the request nor the
        bytes after its body -- is dispatched.
        """
        smuggled = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        framings = [
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked, identity\r\n",
            b"Transfer-Encoding: identity\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: 5\r\nContent-Length: 6\r\n",
            b"Content-Length: 5\r\nContent-Length: 5\r\n",
            b"Transfer-Encoding : chunked\r\n",
        ]
        for framing in framings:
            channel, transport = self.connect()
            channel.dataReceived(b"POST /v1/x HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + smuggled)
            self.assertJSONError(transport, 400)
            self.assertEqual(self.resource.seen, [], framing)

    def test_long_header_line_431(self):
        """A header line over 16 KiB, or a head over 16 KiB in all, is a JSON 431."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n")
        self.assertJSONError(transport, 431)
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(20)) + b"\r\n")
        self.assertJSONError(transport, 431)
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000)  # no end of line yet
        self.assertJSONError(transport, 431)
        self.assertEqual(self.resource.seen, [])

    def test_bad_request_line_json(self):
        """twisted.web's own 400s (bad request line) carry a JSON body too."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET\r\n\r\n")
        self.assertJSONError(transport, 400)

    def test_header_timeout_trickle(self):
        """A head trickled a byte a second is cut at the header timeout with a 408, and counted."""
        channel, transport = self.connect(header=30.0)
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20:
            channel.dataReceived(bytes([byte]))
            self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertJSONError(transport, 408)
        self.assertEqual(self.site.client_timeouts, 1)
        self.assertEqual(self.resource.seen, [])

    def test_idle_connection_closed_silently(self):
        """A connection that sends nothing is closed at the header timeout, without an answer."""
        _channel, transport = self.connect(header=5.0)
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.site.client_timeouts, 1)

    def test_body_timeout(self):
        """A declared body that stops arriving is cut after the body timeout between reads."""
        channel, transport = self.connect(body=10.0)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(5):
            self.clock.advance(9)
            channel.dataReceived(b"x" * 10)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10.1)
        self.assertJSONError(transport, 408)
        self.assertEqual(self.site.client_timeouts, 1)
        self.assertEqual(self.resource.seen, [])

    def test_streaming_response_not_timed_out(self):
        """While a request is answered (a long stream), no client timeout runs."""
        channel, transport = self.connect(hold=True, header=5.0, body=5.0)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.site.client_timeouts, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_keepalive_rearms_header_timeout(self):
        """After a response, the next head has its own header timeout; closing cancels timers."""
        channel, transport = self.connect(header=5.0)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(self.resource.seen), 1)
        self.clock.advance(4)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
