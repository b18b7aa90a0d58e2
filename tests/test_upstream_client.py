"""
The relay's upstream client (relay/upstream.py, relay/connections.py)
against a real loopback server: its lean ``relay`` request sends what treq's
``HTTPClient.request`` sent (``Accept-Encoding: gzip``, one ``Host``, no
cookie), decodes gzip answers as treq's decoder does, and answers with treq's
response object; its agent parses each URI once and sends what
``Agent.request`` sends.
"""

from __future__ import annotations

import gzip
from typing import Any

import treq
from hypothesis import given
from hypothesis import strategies as st
from treq.response import _Response
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, ContentDecoderAgent, GzipDecoder, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from dd0c_route.relay.connections import ConnectionCounter, RelayAgent, counting_endpoints
from dd0c_route.relay.upstream import BytesProducer, UpstreamClient, _decoded

BODY = b'{"id": "chatcmpl-1", "usage": {"prompt_tokens": 3, "completion_tokens": 5}}'


class _Upstream(Resource):
    """Records each request's headers; answers gzip, unknown-coded or plain bodies, and sets a cookie."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[bytes, list[bytes]]] = []

    def render_POST(self, request: Any) -> bytes:
        self.seen.append({name.lower(): list(values) for name, values in request.requestHeaders.getAllRawHeaders()})
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"set-cookie", b"session=team-a-secret; Path=/")
        if request.path == b"/v1/gzip":
            request.setHeader(b"content-encoding", b"gzip")
            return gzip.compress(BODY)
        if request.path == b"/v1/br":
            request.setHeader(b"content-encoding", b"br")
            return b"not really brotli"
        return BODY


def _listen(case: TestCase) -> tuple[_Upstream, Any]:
    """A loopback :class:`_Upstream` for ``case``, stopped at its end."""
    upstream = _Upstream()
    port = reactor.listenTCP(0, Site(upstream), interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    return upstream, port


class RelayRequestTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.upstream, self.port = _listen(self)
        self.client = UpstreamClient(reactor)
        self.addCleanup(self.client.close)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}/v1"

    def send(self, path: str, headers: dict[bytes, list[bytes]]) -> Any:
        return self.client.request("POST", self.base + path, headers, b'{"model": "gpt-4o-mini"}')

    @inlineCallbacks
    def test_gzip_answer_decoded_into_treqs_response(self) -> Any:
        """A gzip answer arrives decoded, without Content-Encoding, as treq's response object."""
        response = yield self.send("/gzip", {b"authorization": [b"Bearer sk-test"]})
        assert isinstance(response, _Response)
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-encoding") is None
        body = yield treq.content(response)
        assert body == BODY

    @inlineCallbacks
    def test_sends_what_treq_sent(self) -> Any:
        """
        Our headers, then ``Accept-Encoding: gzip`` and one ``Host``, as
        treq's decoder and the Agent added them; the body as given.
        """
        yield (yield self.send("/plain", {b"authorization": [b"Bearer sk-test"], b"via": [b"1.1 dd0c-route"]})).content()
        [seen] = self.upstream.seen
        assert seen[b"authorization"] == [b"Bearer sk-test"]
        assert seen[b"accept-encoding"] == [b"gzip"]
        assert seen[b"host"] == [f"127.0.0.1:{self.port.getHost().port}".encode()]
        assert seen[b"content-length"] == [b"24"]

    @inlineCallbacks
    def test_no_cookie_is_kept_or_sent(self) -> Any:
        """A Set-Cookie from one answer never reaches the next request (one client serves every team)."""
        for _ in range(2):
            yield (yield self.send("/plain", {})).content()
        assert all(b"cookie" not in seen for seen in self.upstream.seen)
        assert list(self.client.http._relay_jar) == []

    @inlineCallbacks
    def test_shared_headers_are_not_modified(self) -> Any:
        """The cached Headers of a header set are sent as built, twice, and not changed by the agent."""
        headers = {b"authorization": [b"Bearer sk-test"]}
        for _ in range(2):
            yield (yield self.send("/plain", headers)).content()
        built = self.client._headers_for(self.base.encode() + b"/plain", headers)
        assert sorted(name for name, _ in built.getAllRawHeaders()) == [b"Accept-Encoding", b"Authorization", b"Host"]
        assert self.upstream.seen[0] == self.upstream.seen[1]

    @inlineCallbacks
    def test_unknown_coding_is_left_alone(self) -> Any:
        """An answer in a coding we did not offer keeps its Content-Encoding and its bytes."""
        response = yield self.send("/br", {})
        assert response.headers.getRawHeaders(b"content-encoding") == [b"br"]
        assert (yield response.content()) == b"not really brotli"

    @inlineCallbacks
    def test_same_as_treqs_decoder_live(self) -> Any:
        """treq's own request (ContentDecoderAgent) gives the same code, headers and body."""
        theirs = treq.client.HTTPClient(Agent(reactor, pool=self.client.pool))
        for path in ("/gzip", "/br", "/plain"):
            ours = yield self.send(path, {})
            body = yield ours.content()
            other = yield theirs.request("POST", self.base + path, data=b'{"model": "gpt-4o-mini"}', unbuffered=True)
            other_body = yield other.content()
            assert (ours.code, body) == (other.code, other_body)
            assert ours.headers.getRawHeaders(b"content-type") == other.headers.getRawHeaders(b"content-type")
            # The agent leaves an empty Content-Encoding on an answer that had none; we leave none.
            theirs_left = other.headers.getRawHeaders(b"content-encoding")
            assert ours.headers.getRawHeaders(b"content-encoding") == (None if theirs_left == [b""] else theirs_left)


class _Answer:
    """Just enough of an IResponse for a decoder: headers."""

    def __init__(self, codings: list[bytes]) -> None:
        self.headers = Headers({b"content-encoding": codings} if codings else {})


_CODING = st.sampled_from([b"gzip", b" gzip", b"gzip ", b"br", b"deflate", b"identity", b"x-gzip", b""])


class DecodedTests(SynchronousTestCase):
    @given(st.lists(st.lists(_CODING, min_size=1, max_size=3).map(b",".join), max_size=3))
    def test_matches_content_decoder_agent(self, codings: list[bytes]) -> None:
        """
        For any Content-Encoding header: the same number of gzip decoders
        and the same header left as twisted's ``ContentDecoderAgent`` with
        treq's one decoder -- except that an answer without the header
        stays without it (the agent adds an empty one, which nothing reads).
        """
        ours, theirs = _Answer(codings), _Answer(codings)
        decoded = _decoded(ours)  # type: ignore[arg-type]
        expected = ContentDecoderAgent(None, [(b"gzip", GzipDecoder)])._handleResponse(theirs)
        assert _depth(decoded) == _depth(expected)
        left = theirs.headers.getRawHeaders(b"content-encoding")
        assert ours.headers.getRawHeaders(b"content-encoding") == (None if not codings else left)


def _depth(response: Any) -> int:
    depth = 0
    while isinstance(response, GzipDecoder):
        depth += 1
        response = response.original
    return depth


class RelayAgentTests(TestCase):
    """The agent that parses each URI once sends what ``Agent.request`` sends."""

    timeout = 30

    def setUp(self) -> None:
        self.upstream, self.port = _listen(self)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.uri = f"http://127.0.0.1:{self.port.getHost().port}/v1/plain?x=1".encode()

    @inlineCallbacks
    def test_cached_uri_sends_the_same_request(self) -> Any:
        """
        The second request to a URI (from the cache) reaches the upstream
        exactly as the first (Agent's own path) and as a plain Agent's.
        """
        counter = ConnectionCounter()
        agent = RelayAgent.usingEndpointFactory(reactor, counting_endpoints(reactor, 5, counter), pool=self.pool)
        plain = Agent(reactor, pool=self.pool)
        for each in (agent, agent, plain):
            response = yield each.request(b"POST", self.uri, Headers({b"x-test": [b"1"]}), BytesProducer(b"{}"))
            assert response.code == 200
            yield treq.content(response)
        assert list(agent._targets) == [self.uri]
        assert self.upstream.seen[0] == self.upstream.seen[1] == self.upstream.seen[2]
        assert counter.total == 2, "both of the relay agent's connections were counted"

    @inlineCallbacks
    def test_without_the_private_method_it_is_a_plain_agent(self) -> Any:
        """Should Twisted drop ``_requestWithEndpoint``, every request takes ``Agent.request``."""
        agent = RelayAgent.usingEndpointFactory(reactor, counting_endpoints(reactor, 5, ConnectionCounter()), pool=self.pool)
        agent._send = None
        for _ in range(2):
            yield treq.content((yield agent.request(b"POST", self.uri, None, BytesProducer(b"{}"))))
        assert agent._targets == {} and len(self.upstream.seen) == 2
