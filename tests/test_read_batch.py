"""
The pieces of an upstream body that arrive in one socket read are relayed as
one block (dd0c_route/relay/read_batch.py), with the same bytes and the same
bill as piece by piece; outside a batched read nothing is held.  Proved on
the relay harness of test_relay.py (a real twisted.web request, a Clock) and
on a real loopback connection through the UpstreamClient.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dd0c_route.relay.read_batch import READS, ReadBatch
from dd0c_route.relay.upstream import UpstreamClient

from .test_relay import CHUNK, USAGE, FakeResponse, Harness

DONE = b"data: [DONE]\n\n"


def body_of(raw: bytes) -> bytes:
    """The de-chunked HTTP body of a raw response."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    out = b""
    while rest:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def chunk_writes(raw: bytes) -> int:
    """How many chunks of our own chunked encoding the response used."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    count = 0
    while rest:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        count += 1
        rest = rest[size + 2 :]
    return count


class Recorder:
    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail

    def flush_read(self) -> None:
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("boom")


class ReadBatchTests(SynchronousTestCase):
    def test_flushes_after_the_read_and_survives_a_failing_reader(self):
        batch = ReadBatch()
        log: list[str] = []

        def received(data: bytes) -> None:
            self.assertTrue(batch.active)
            batch.hold(Recorder(log, "a", fail=True))
            batch.hold(Recorder(log, "b"))
            log.append("parsed")

        batch.around(received, b"x")
        self.assertEqual(log, ["parsed", "a", "b"])
        self.assertFalse(batch.active)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_nested_read_flushes_at_the_outer_end(self):
        batch = ReadBatch()
        log: list[str] = []

        def inner(data: bytes) -> None:
            batch.hold(Recorder(log, "inner"))

        def outer(data: bytes) -> None:
            batch.around(inner, data)
            log.append("outer parsed")

        batch.around(outer, b"x")
        self.assertEqual(log, ["outer parsed", "inner"])


class HeldPiecesTests(SynchronousTestCase):
    """The exchange under a batched read, on the relay harness."""

    def read(self, response: FakeResponse, *pieces: bytes, end: bool = False) -> None:
        """Deliver ``pieces`` (and maybe the end) as the chunked decoder would, in one read."""

        def parse(data: bytes) -> None:
            for piece in pieces:
                response.protocol.dataReceived(piece)
            if end:
                response.protocol.connectionLost(Failure(ResponseDone()))

        READS.around(parse, b"")

    def test_one_block_per_read_same_bytes_same_bill(self):
        events = [CHUNK.replace(b"hi ", f"w{i} ".encode()) for i in range(5)]
        rb, rs = FakeResponse(), FakeResponse()
        batched, single = Harness(self), Harness(self)
        batched.upstream_d.callback(rb)
        single.upstream_d.callback(rs)
        self.read(rb, *events[:3])
        self.read(rb, *events[3:], USAGE, DONE, end=True)
        for piece in [*events, USAGE, DONE]:
            rs.protocol.dataReceived(piece)
        rs.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(body_of(batched.client.value()), body_of(single.client.value()))
        self.assertEqual(body_of(batched.client.value()), b"".join(events) + DONE)
        self.assertEqual(chunk_writes(batched.client.value()), 2)
        self.assertEqual(chunk_writes(single.client.value()), 6)
        self.assertEqual(
            (batched.facts.prompt_tokens, batched.facts.completion_tokens),
            (single.facts.prompt_tokens, single.facts.completion_tokens),
        )
        self.assertEqual(len(batched.finalized), 1)

    def test_nothing_written_until_the_read_ends(self):
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        seen = []

        def parse(data: bytes) -> None:
            response.protocol.dataReceived(CHUNK)
            seen.append(b'"hi "' in h.client.value())

        READS.around(parse, b"")
        self.assertEqual(seen, [False])
        self.assertIn(b'"hi "', h.client.value())

    def test_client_gone_mid_read_bills_nothing_it_held(self):
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        response.protocol.dataReceived(CHUNK)  # delivered before the batched read

        def parse(data: bytes) -> None:
            response.protocol.dataReceived(CHUNK.replace(b"hi ", b"never seen "))
            h.client_disconnects()

        READS.around(parse, b"")
        response.protocol.connectionLost(Failure(ResponseFailed([])))
        self.assertNotIn(b"never seen", h.client.value())
        self.assertEqual([str(p) for p in h.facts.delivered], ["hi "])
        self.assertEqual(len(h.finalized), 1)

    def test_failure_mid_read_keeps_what_arrived_before_it(self):
        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)

        def parse(data: bytes) -> None:
            response.protocol.dataReceived(CHUNK)
            response.protocol.connectionLost(Failure(ResponseFailed([])))

        READS.around(parse, b"")
        body = body_of(h.client.value())
        self.assertTrue(body.startswith(CHUNK), body)
        self.assertIn(b"error", body[len(CHUNK):])
        self.assertEqual([str(p) for p in h.facts.delivered], ["hi "])
        self.assertTrue(h.exchange.upstream_failed)
        self.assertEqual(len(h.finalized), 1)


class Provider(Resource):
    """A loopback provider that writes a whole stream in one reactor turn."""

    isLeaf = True

    def __init__(self, events: list[bytes]) -> None:
        super().__init__()
        self.events = events

    def render_POST(self, request):
        request.setHeader(b"content-type", b"text/event-stream")
        for event in self.events:
            request.write(event)
        request.finish()
        return NOT_DONE_YET


class LoopbackTests(TestCase):
    """Through the real UpstreamClient on a loopback socket: its reads are batched."""

    @inlineCallbacks
    def test_pieces_of_one_read_reach_the_exchange_together(self):
        events = [CHUNK.replace(b"hi ", f"w{i} ".encode()) for i in range(40)] + [USAGE, DONE]
        port = reactor.listenTCP(0, Site(Provider(events)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = UpstreamClient(reactor)
        self.addCleanup(client.close)
        response = yield client.request(
            "POST", f"http://127.0.0.1:{port.getHost().port}/v1/chat/completions",
            {b"content-type": [b"application/json"]}, json.dumps({}).encode(),
        )
        pieces: list[bytes] = []
        finished: Deferred[None] = Deferred()

        class Holder:
            """Holds during a batched read, as the exchange does."""

            waiting = False
            flushes = 0

            def flush_read(self) -> None:
                self.waiting = False
                self.flushes += 1

        holder = Holder()

        class Holding(Protocol):
            def dataReceived(self, data: bytes) -> None:
                pieces.append(data)
                if READS.active and not holder.waiting:
                    READS.hold(holder)
                    holder.waiting = True

            def connectionLost(self, reason: object = None) -> None:
                finished.callback(None)

        response.deliverBody(Holding())
        yield finished
        # The body ended inside the read; its end is the read's end.
        yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(b"".join(pieces), b"".join(events))
        # Every piece came in a batched read, several to a read.
        self.assertGreaterEqual(holder.flushes, 1)
        self.assertLess(holder.flushes, len(pieces))
        self.assertFalse(holder.waiting)


class EndedReadTests(SynchronousTestCase):
    def test_unusable_event_found_after_the_end_closes_the_pooled_connection(self):
        """
        A bad line held in the read that also brought the body's end is
        judged after the pool took the connection back: the exchange closes
        that connection itself (as stopping the body did, piece by piece).
        """
        from twisted.internet.testing import StringTransport

        h = Harness(self)
        response = FakeResponse()
        h.upstream_d.callback(response)
        connection = StringTransport()

        def parse(data: bytes) -> None:
            response.protocol.dataReceived(CHUNK)
            response.protocol.dataReceived(b"data: <html>502</html>\n\n")
            response.protocol.dataReceived(CHUNK.replace(b"hi ", b"after "))
            response.protocol.connectionLost(Failure(ResponseDone()))

        READS.around(parse, b"", connection)
        body = body_of(h.client.value())
        self.assertNotIn(b"<html>", body)
        self.assertNotIn(b"after ", body)
        self.assertTrue(connection.disconnecting)
        self.assertEqual(h.facts.error_type, None)
        self.assertEqual(h.exchange.error_type, "upstream_invalid_response")
        self.assertEqual(len(h.finalized), 1)
