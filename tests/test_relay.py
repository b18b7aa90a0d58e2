"""
The relay's producer/consumer wiring and its exactly-once meter, proved
deterministically: a real twisted.web request on a StringTransport client
side, a StringTransport as the upstream body transport, and a Clock.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dd0c_route.metering.usage import UsageFacts
from dd0c_route.relay.chat_stream import OpenAIChatStreamHandler
from dd0c_route.relay.failures import UpstreamFailure
from dd0c_route.relay.relay import Exchange
from dd0c_route.web.errors import error_for, openai_error_body


class FakeResponse:
    """Enough of an IResponse: code, headers and deliverBody."""

    def __init__(self, code: int = 200, ctype: bytes = b"text/event-stream") -> None:
        self.code = code
        self.headers = Headers({b"content-type": [ctype], b"x-request-id": [b"req_up_1"], b"content-length": [b"999"]})
        self.transport = StringTransport()
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self.transport)


class Harness:
    def __init__(self, testcase, first_byte=10.0, idle=5.0):
        self.clock = Clock()
        self.client = StringTransport()
        captured = []

        class Capture(Resource):
            isLeaf = True

            def render(self, request):
                captured.append(request)
                return NOT_DONE_YET

        # No idle timeout: its timer would land on the global reactor.
        site = Site(Capture(), timeout=None, reactor=self.clock)
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.client)
        self.channel.dataReceived(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        )
        self.request = captured[0]
        self.finalized = []
        self.facts = UsageFacts()
        self.upstream_d: Deferred = Deferred()
        self.cancelled = []
        self.upstream_d = Deferred(lambda d: self.cancelled.append(True))

        def respond_error(request, failure: UpstreamFailure) -> int:
            error = error_for(failure)
            request.setResponseCode(error.status)
            request.write(openai_error_body(error))
            request.finish()
            return error.status

        self.exchange = Exchange(
            request=self.request,
            reactor=self.clock,
            facts=self.facts,
            respond_error=respond_error,
            translate_error=lambda s, b, h: (s, b, h),
            choose_handler=lambda response: OpenAIChatStreamHandler(self.facts, False),
            finalize=self.finalized.append,
            first_byte_timeout=first_byte,
            idle_timeout=idle,
            started=0.0,
        )
        self.request.notifyFinish().addErrback(self.exchange.client_lost)
        self.exchange.start(self.upstream_d)

    def client_disconnects(self):
        self.channel.connectionLost(Failure(ConnectionLost()))


CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi "},"logprobs":null,"finish_reason":null}]}\n\n'
USAGE = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'


class BackpressureTests(SynchronousTestCase):
    def test_paused_client_pauses_provider(self):
        """
        When the client's transport pauses the channel (its buffer is full),
        the upstream body transport is paused; resuming resumes it.
        """
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        self.assertEqual(response.transport.producerState, "producing")
        # What the socket does when its send buffer fills: pause whatever
        # producer is registered on it (the HTTP channel).
        h.client.producer.pauseProducing()
        self.assertEqual(response.transport.producerState, "paused")
        h.client.producer.resumeProducing()
        self.assertEqual(response.transport.producerState, "producing")

    def test_chunks_relayed_as_they_arrive(self):
        """Each upstream event is written to the client at once, unbuffered."""
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        response.protocol.dataReceived(CHUNK[:40])
        self.assertNotIn(b'"hi "', h.client.value())
        response.protocol.dataReceived(CHUNK[40:])
        self.assertIn(b'"hi "', h.client.value())
        self.assertNotIn(b"content-length: 999", h.client.value().lower())
        self.assertIn(b"x-request-id: req_up_1", h.client.value().lower())

    def test_hidden_usage_and_single_finalize(self):
        """
        The usage-only chunk is hidden from a client that did not ask, its
        usage is recorded, and a normal end finalizes exactly once.
        """
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        response.protocol.dataReceived(CHUNK + USAGE + b"data: [DONE]\n\n")
        response.protocol.connectionLost(Failure(ResponseDone()))
        self.assertNotIn(b'"choices":[]', h.client.value())
        self.assertIn(b"[DONE]", h.client.value())
        self.assertEqual(h.facts.prompt_tokens, 5)
        self.assertEqual(len(h.finalized), 1)
        # A late disconnect changes nothing.
        h.client_disconnects()
        self.assertEqual(len(h.finalized), 1)


class DisconnectOrderTests(SynchronousTestCase):
    def test_disconnect_before_headers_cancels(self):
        """Before the response, a disconnect cancels the upstream Deferred."""
        h = Harness(self)
        h.client_disconnects()
        self.assertEqual(h.cancelled, [True])
        self.assertEqual(len(h.finalized), 1)
        self.assertTrue(h.exchange.client_gone)

    def test_disconnect_mid_body_stops_provider(self):
        """Mid-body, a disconnect stops the upstream transport (closing it)."""
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        response.protocol.dataReceived(CHUNK)
        h.client_disconnects()
        self.assertEqual(response.transport.producerState, "stopped")
        # The upstream then reports its connection lost: finalize once.
        response.protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionDone())])))
        self.assertEqual(len(h.finalized), 1)
        self.assertEqual(h.facts.delivered, ["hi "])

    def test_upstream_done_and_client_gone_same_turn(self):
        """Both ends finishing in one turn, in either order: one finalize."""
        for first in ("upstream", "client"):
            h = Harness(self)
            response = FakeResponse()
            h.upstream_d.callback(response)
            response.protocol.dataReceived(CHUNK)
            if first == "upstream":
                response.protocol.connectionLost(Failure(ResponseDone()))
                h.client_disconnects()
            else:
                h.client_disconnects()
                response.protocol.connectionLost(Failure(ResponseDone()))
            self.assertEqual(len(h.finalized), 1, first)

    def test_response_arriving_after_disconnect_is_stopped(self):
        """
        A response that arrives after the client left (cancel raced) is
        stopped, never delivered to nobody nor left to leak its connection.
        """
        h = Harness(self)
        h.exchange.client_gone = True  # the errback ran, cancel lost the race
        response = FakeResponse()
        h.upstream_d.callback(response)
        self.assertEqual(response.transport.producerState, "stopped")

    def test_first_byte_timeout(self):
        """No headers before the first-byte timeout: cancelled, 504, finalized once."""
        h = Harness(self, first_byte=3.0)
        h.clock.advance(3.0)
        self.assertEqual(h.cancelled, [True])
        h.upstream_d.errback(Failure(ResponseNeverReceived([Failure(Exception("cancelled"))]))) if not h.upstream_d.called else None
        self.assertIn(b"504", h.client.value())
        self.assertIn(b"upstream_timeout", h.client.value())
        self.assertEqual(len(h.finalized), 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_idle_timeout_stops_upstream(self):
        """A body gap over the idle timeout stops the upstream and ends the stream with an error."""
        h = Harness(self, idle=2.0)
        response = FakeResponse()
        h.upstream_d.callback(response)
        response.protocol.dataReceived(CHUNK)
        h.clock.advance(1.5)
        response.protocol.dataReceived(CHUNK)
        h.clock.advance(1.5)
        self.assertEqual(response.transport.producerState, "producing")
        h.clock.advance(0.6)
        self.assertEqual(response.transport.producerState, "stopped")
        response.protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionDone())])))
        self.assertIn(b'"error"', h.client.value())
        self.assertEqual(h.exchange.error_type, "upstream_timeout")
        self.assertEqual(len(h.finalized), 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])
