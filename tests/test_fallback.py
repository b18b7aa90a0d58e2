"""
The fallback chain (routing/fallback.py), proved deterministically: a real
twisted.web request on a StringTransport, upstream responses we hand over by
hand, and a Clock for timeouts and the circuit breaker's cool-down.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dd0c_route.config import CircuitBreakerConfig, ProviderConfig, TimeoutConfig
from dd0c_route.metering.meter import RequestInfo
from dd0c_route.metering.usage import UsageFacts
from dd0c_route.providers.errors import CannotServe, pass_openai_error
from dd0c_route.relay.chat_stream import OpenAIChatStreamHandler
from dd0c_route.relay.handlers import JSONBodyHandler
from dd0c_route.relay.plan import UpstreamCall
from dd0c_route.routing.breaker import CircuitBreaker
from dd0c_route.routing.errors import CircuitOpen
from dd0c_route.routing.fallback import FallbackChain, HeldRequest
from dd0c_route.web.errors import error_for, openai_error_body

P1 = ProviderConfig(name="p1", kind="openai", base_url="http://127.0.0.1:1/v1")
P2 = ProviderConfig(name="p2", kind="openai", base_url="http://127.0.0.1:2/v1")
P3 = ProviderConfig(name="p3", kind="openai", base_url="http://127.0.0.1:3/v1")

CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()


class FakeResponse:
    def __init__(self, code: int, body: bytes = ANSWER, ctype: bytes = b"application/json") -> None:
        self.code = code
        self.headers = Headers({b"content-type": [ctype]})
        self.transport = StringTransport()
        self.body = body
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def send_all(self) -> None:
        self.protocol.dataReceived(self.body)
        self.protocol.connectionLost(Failure(ResponseDone()))


class Harness:
    """One client request and a chain over ``providers``; upstream calls are Deferreds we fire."""

    def __init__(self, providers, *, breaker=None, clock=None, after_send=True, enforcing=True, first_byte=10.0, stream=False):
        self.stream = stream
        self.clock = clock or Clock()
        self.client = StringTransport()
        captured = []

        class Capture(Resource):
            isLeaf = True

            def render(self, request):
                captured.append(request)
                return NOT_DONE_YET

        site = Site(Capture(), timeout=None, reactor=self.clock)
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.client)
        self.channel.dataReceived(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        self.request = captured[0]
        self.breaker = breaker or CircuitBreaker(self.clock, CircuitBreakerConfig(failures=2, window=30, cooldown=30))
        self.info = RequestInfo(request_id="req_1", started=0.0, endpoint="/v1/chat/completions")
        self.sent: list[tuple[str, Deferred]] = []
        self.finished = []
        self.refused = []
        self.answered = []
        self.chain = FallbackChain(
            [(f"m{i + 1}", provider) for i, provider in enumerate(providers)],
            info=self.info,
            request=self.request,
            breaker=self.breaker,
            enforcing=enforcing,
            fallback_after_send=after_send,
            reactor=self.clock,
            send=self.send,
            timeouts=TimeoutConfig(connect=1, first_byte=first_byte, idle=5),
            explain=lambda: ((b"x-dd0c-model", (self.info.model or "").encode()),),
            answer_failure=self.answer_failure,
            finished=self.finished.append,
            refused=self.refused.append,
        )

    def send(self, method, url, headers, body):
        d: Deferred = Deferred()
        self.sent.append((url, d))
        return d

    def answer_failure(self, request, failure) -> int:
        error = error_for(failure)
        self.answered.append(error.code)
        request.setResponseCode(error.status)
        request.write(openai_error_body(error))
        request.finish()
        return error.status

    def plan_for(self, model, provider):
        facts = UsageFacts()
        return UpstreamCall(
            url=provider.base_url + "/chat/completions",
            headers={},
            body=b"{}",
            facts=facts,
            choose_handler=lambda response: OpenAIChatStreamHandler(facts, True) if self.stream else JSONBodyHandler(facts),
            translate_error=pass_openai_error,
        )

    def start(self):
        self.chain.start(self.plan_for)

    def respond(self, index: int, code: int, body: bytes = ANSWER) -> FakeResponse:
        response = FakeResponse(code, body)
        self.sent[index][1].callback(response)
        response.send_all()
        return response

    @property
    def written(self) -> bytes:
        return self.client.value()


class FallbackTests(SynchronousTestCase):
    def test_429_falls_back_and_only_the_last_attempt_answers(self):
        h = Harness([P1, P2])
        h.start()
        h.respond(0, 429, b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')
        self.assertEqual(len(h.sent), 2, "a second attempt starts")
        self.assertEqual(h.written, b"", "the held attempt wrote nothing")
        h.respond(1, 200)
        self.assertIn(b"200 OK", h.written)
        self.assertNotIn(b"slow down", h.written)
        self.assertIn(b"x-dd0c-model: m2", h.written.lower())
        self.assertEqual(h.info.attempts, "m1@p1:429,m2@p2:200")
        self.assertEqual(len(h.finished), 1)
        self.assertEqual((h.info.model, h.info.provider), ("m2", "p2"))

    def test_5xx_falls_back(self):
        for code in (500, 502, 503, 529):
            h = Harness([P1, P2])
            h.start()
            h.respond(0, code, b'{"error": {"message": "down"}}')
            h.respond(1, 200)
            self.assertEqual(h.info.attempts, f"m1@p1:{code},m2@p2:200")

    def test_4xx_other_than_429_is_the_answer(self):
        h = Harness([P1, P2])
        h.start()
        h.respond(0, 400, b'{"error": {"message": "bad request"}}')
        self.assertEqual(len(h.sent), 1, "no fallback on a client error")
        self.assertIn(b"400", h.written.split(b"\r\n")[0])
        self.assertIn(b"bad request", h.written)
        self.assertIsNone(h.info.attempts)

    def test_connect_failure_falls_back(self):
        h = Harness([P1, P2], after_send=False)
        h.start()
        h.sent[0][1].errback(Failure(ConnectionRefusedError()))
        self.assertEqual(len(h.sent), 2, "a connect failure never reached the provider: always fall back")
        h.respond(1, 200)
        self.assertEqual(h.info.attempts, "m1@p1:connect_failed,m2@p2:200")
        self.assertEqual(h.answered, [])

    def test_first_byte_timeout_falls_back_when_allowed(self):
        h = Harness([P1, P2], first_byte=10.0)
        h.start()
        h.clock.advance(10.0)
        self.assertEqual(len(h.sent), 2)
        h.respond(1, 200)
        self.assertEqual(h.info.attempts, "m1@p1:timeout_after_send,m2@p2:200")

    def test_first_byte_timeout_is_answered_when_after_send_fallback_is_off(self):
        h = Harness([P1, P2], after_send=False, first_byte=10.0)
        h.start()
        h.clock.advance(10.0)
        self.assertEqual(len(h.sent), 1, "the provider may bill a sent request: no second attempt")
        self.assertEqual(h.answered, ["upstream_timeout"])
        self.assertEqual(len(h.finished), 1)

    def test_no_fallback_after_the_first_byte(self):
        h = Harness([P1, P2], stream=True)
        h.start()
        response = FakeResponse(200, ctype=b"text/event-stream")
        h.sent[0][1].callback(response)
        response.protocol.dataReceived(CHUNK)
        response.protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionLost())])))
        self.assertEqual(len(h.sent), 1, "bytes reached the client: the attempt is the answer")
        self.assertIn(CHUNK, h.written)
        self.assertIn(b"upstream_error", h.written, "the stream ends with an error event")
        self.assertEqual(len(h.finished), 1)
        self.assertTrue(h.finished[0].upstream_failed)

    def test_last_attempt_answers_its_error(self):
        h = Harness([P1, P2])
        h.start()
        h.respond(0, 503, b'{"error": {"message": "first"}}')
        h.respond(1, 503, b'{"error": {"message": "second"}}')
        self.assertIn(b"503", h.written.split(b"\r\n")[0])
        self.assertIn(b"second", h.written)
        self.assertNotIn(b"first", h.written)
        self.assertEqual(h.info.attempts, "m1@p1:503,m2@p2:503")

    def test_cannot_serve_skips_to_the_next_model(self):
        h = Harness([P1, P2])

        def plan_for(model, provider):
            if provider is P1:
                raise CannotServe(400, "no", code="model_not_supported")
            return Harness.plan_for(h, model, provider)

        h.chain.start(plan_for)
        self.assertEqual([url for url, _ in h.sent], ["http://127.0.0.1:2/v1/chat/completions"])
        h.respond(0, 200)
        self.assertEqual(h.info.attempts, "m1@p1:model_not_supported,m2@p2:200")

    def test_held_request_proxies_irequest(self):
        h = Harness([P1])
        held = HeldRequest(h.request)
        self.assertEqual(held.method, b"POST")
        self.assertIs(held.requestHeaders, h.request.requestHeaders)
        held.held = True
        held.setResponseCode(500)
        held.responseHeaders.setRawHeaders(b"x-a", [b"1"])
        held.write(b"nothing")
        held.finish()
        self.assertEqual(h.written, b"")
        self.assertFalse(h.request.responseHeaders.hasHeader(b"x-a"))


class BreakerTests(SynchronousTestCase):
    def test_open_breaker_skips_the_provider_then_half_open_lets_one_through(self):
        clock = Clock()
        breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=2, window=30, cooldown=30))
        for _ in range(2):
            h = Harness([P1, P2], breaker=breaker, clock=clock)
            h.start()
            h.respond(0, 500)
            h.respond(1, 200)
        self.assertFalse(breaker.available("p1"), "two failures in the window open p1")

        h = Harness([P1, P2], breaker=breaker, clock=clock)
        h.start()
        self.assertEqual([url for url, _ in h.sent], ["http://127.0.0.1:2/v1/chat/completions"])
        h.respond(0, 200)
        self.assertEqual(h.info.attempts, "m1@p1:circuit_open,m2@p2:200")

        clock.advance(30)
        h = Harness([P1, P2], breaker=breaker, clock=clock)
        h.start()
        self.assertEqual(h.sent[0][0], "http://127.0.0.1:1/v1/chat/completions", "half-open: p1 is tried again")
        h.respond(0, 200)
        self.assertTrue(breaker.available("p1"))
        self.assertEqual(breaker.open_providers(), [])

    def test_half_open_failure_reopens_at_once(self):
        clock = Clock()
        breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=1, window=30, cooldown=30))
        h = Harness([P1, P2], breaker=breaker, clock=clock)
        h.start()
        h.respond(0, 500)
        h.respond(1, 200)
        clock.advance(30)
        h = Harness([P1, P2], breaker=breaker, clock=clock)
        h.start()
        h.respond(0, 500)
        self.assertFalse(breaker.available("p1"))
        self.assertAlmostEqual(breaker.retry_in("p1"), 30)

    def test_every_circuit_open_is_a_refusal_with_retry_after(self):
        clock = Clock()
        breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=1, window=30, cooldown=30))
        breaker.failure("p1")
        breaker.failure("p2")
        clock.advance(12.5)
        h = Harness([P1, P2], breaker=breaker, clock=clock)
        with self.assertRaises(CircuitOpen) as caught:
            h.start()
        self.assertEqual(caught.exception.retry_after, 18)
        self.assertEqual(h.sent, [])
        self.assertEqual(h.info.attempts, "m1@p1:circuit_open,m2@p2:circuit_open")

    def test_a_single_attempt_leaves_no_note(self):
        h = Harness([P1])
        h.start()
        h.respond(0, 200)
        self.assertIsNone(h.info.attempts)
        self.assertIn(b"200 OK", h.written)
