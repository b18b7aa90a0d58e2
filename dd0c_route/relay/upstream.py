# Tests: tests/test_upstream_errors.py, tests/test_backpressure_live.py
"""
The upstream HTTP client: one treq client around one pooled Agent.

treq's defaults are wrong for a relay (see DESIGN.md), so the client is
built once with:

- our own :class:`HTTPConnectionPool` and an endpoint factory that counts
  open provider connections, so "back to 0 after a disconnect" can be
  proved rather than assumed;
- a body producer that writes the request body at once (treq's default
  producer feeds it on a later reactor turn, which costs latency);
- a cookie jar that stores nothing (treq shares one jar between all callers:
  one team's cookies must never reach another's requests).
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Optional, cast

import treq.client
from hyperlink import EncodedURL
from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from .read_batch import READS

__all__ = ["BytesProducer", "ConnectionCounter", "UpstreamClient", "set_no_delay"]


@implementer(IBodyProducer)
class BytesProducer:
    """
    An ``IBodyProducer`` for a body already in memory: written in one call,
    in the same reactor turn.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _NoCookies(CookieJar):
    """A jar whose policy accepts no cookie, and which never looks."""

    def __init__(self) -> None:
        super().__init__(DefaultCookiePolicy(allowed_domains=[]))

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


class _URIText(EncodedURL):
    """
    An already-encoded URI that treq can use as is.

    treq turns every URL into a ``hyperlink`` object and back to text on
    every request (``to_uri().to_text()``: about 26 of its 65 microseconds
    per call here).  Our upstream URLs are a handful of fixed strings, so
    each is converted once, to its ASCII URI form, and then hands treq that
    text again without recomputing it.
    """

    _text: Optional[str] = None

    def to_uri(self) -> _URIText:
        return self

    def to_text(self, with_password: bool = False) -> str:
        text = self._text
        if text is None:
            text = self._text = EncodedURL.to_text(self, with_password)
        return text


#: At most this many distinct upstream URLs are kept converted (paths of
#: relayed endpoints can carry client query strings).
_URL_CACHE_SIZE = 512
#: At most this many distinct upstream header sets are kept built (client
#: ``openai-beta``/``anthropic-beta`` values vary them).
_HEADERS_CACHE_SIZE = 256


class ConnectionCounter:
    """
    Counts provider connections as they open and close.
    """

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def opened(self) -> None:
        self.open += 1
        self.total += 1

    def closed(self) -> None:
        self.open -= 1
        self._notify()

    def wait_for(self, count: int) -> Deferred[None]:
        """Fires when exactly ``count`` connections are open."""
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._notify()
        return d

    def _notify(self) -> None:
        ready = [(c, d) for c, d in self._waiters if c == self.open]
        self._waiters = [(c, d) for c, d in self._waiters if c != self.open]
        for _, d in ready:
            d.callback(None)


def set_no_delay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off: a relay writes many small pieces (request
    headers then body, SSE events) and must not hold one back waiting for
    the ACK of the one before.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(True)
        except OSError:
            pass


@implementer(IProtocolFactory)
class _CountingFactory:
    """
    Wraps a protocol factory so each connection's life is counted and each
    of its reads is one batch (:mod:`.read_batch`: the body pieces a read
    brings are relayed as one block), without wrapping the protocol itself
    (the pool needs the real ``HTTP11ClientProtocol`` back).
    """

    def __init__(self, wrapped: Any, counter: ConnectionCounter) -> None:
        self._wrapped = wrapped
        self._counter = counter

    def buildProtocol(self, addr: Any) -> Optional[IProtocol]:
        protocol = self._wrapped.buildProtocol(addr)
        if protocol is None:
            return None
        counter = self._counter
        made = protocol.connectionMade
        lost = protocol.connectionLost
        received = protocol.dataReceived
        around = READS.around

        def connectionMade() -> None:
            counter.opened()
            set_no_delay(protocol.transport)
            made()

        def connectionLost(reason: Any) -> None:
            try:
                lost(reason)
            finally:
                counter.closed()

        def dataReceived(data: bytes) -> None:
            around(received, data, protocol.transport)

        protocol.connectionMade = connectionMade
        protocol.connectionLost = connectionLost
        protocol.dataReceived = dataReceived
        return protocol

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


@implementer(IStreamClientEndpoint)
class _CountingEndpoint:
    def __init__(self, endpoint: Any, counter: ConnectionCounter) -> None:
        self._endpoint = endpoint
        self._counter = counter

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        return self._endpoint.connect(_CountingFactory(protocolFactory, self._counter))


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """
    TCP for http, TLS (verified, service_identity) for https; an IP literal
    skips name resolution.
    """

    def __init__(self, reactor: Any, connect_timeout: float, counter: ConnectionCounter) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._counter = counter
        self._tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: Any) -> Any:
        host = uri.host.decode("ascii")
        endpoint: Any
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return _CountingEndpoint(endpoint, self._counter)


class _QuietClientFactory(_HTTP11ClientFactory):
    """
    The pool makes one factory per provider connection, and a noisy factory
    logs "Starting/Stopping factory" for each: two log events per upstream
    connection, which made a mass disconnect spend 40% of its reactor time
    formatting log lines.
    """

    noisy = False


class UpstreamClient:
    """
    The one treq client of the process, and what it is built on.
    """

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float = 10.0,
        max_persistent_per_host: int = 64,
        idle_timeout: float = 90.0,
    ) -> None:
        self.reactor = reactor
        self.counter = ConnectionCounter()
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = max_persistent_per_host
        self.pool.cachedConnectionTimeout = int(idle_timeout)
        self.pool.retryAutomatically = False
        self.pool._factory = _QuietClientFactory
        agent = Agent.usingEndpointFactory(
            reactor, _EndpointFactory(reactor, connect_timeout, self.counter), pool=self.pool
        )
        self._urls: dict[str, _URIText] = {}
        self._built_headers: dict[tuple[tuple[bytes, ...], ...], Headers] = {}
        self.http = treq.client.HTTPClient(
            agent, cookiejar=cast(Any, _NoCookies()), data_to_body_producer=BytesProducer
        )

    def request(self, method: str, url: str, headers: dict[bytes, list[bytes]], body: Optional[bytes]) -> Deferred[Any]:
        """
        Send one request; the Deferred fires with the response as soon as
        its headers arrive (the body is not read).
        """
        uri = self._urls.get(url)
        if uri is None:
            uri = cast(_URIText, _URIText.from_text(EncodedURL.from_text(url).to_uri().to_text()))
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[url] = uri
        return self.http.request(
            method,
            uri,
            headers=self._headers_for(headers),
            data=body if body else None,
            unbuffered=True,
            allow_redirects=False,
            reactor=self.reactor,
        )

    def _headers_for(self, headers: dict[bytes, list[bytes]]) -> Headers:
        """
        ``headers`` as a ``Headers``, built once per distinct set: a
        provider's headers are the same on every request, and ``Headers``
        checks every name and value as it is built.  treq's agents copy it
        before adding theirs, so one instance is safely shared.
        """
        key = tuple((name, *values) for name, values in headers.items())
        built = self._built_headers.get(key)
        if built is None:
            built = Headers(cast(Any, headers))
            if len(self._built_headers) < _HEADERS_CACHE_SIZE:
                self._built_headers[key] = built
        return built

    def close(self) -> Deferred[None]:
        """Close idle pooled connections (at service stop)."""
        return self.pool.closeCachedConnections()
