# Tests: tests/test_upstream_client.py, tests/test_upstream_headers.py, tests/test_upstream_errors.py, tests/test_backpressure_live.py
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

The relay's requests go through :meth:`RelayHTTPClient.relay`, treq's
``HTTPClient`` with one lean method added (issue #18): treq's ``request``
wraps the agent per call in a ``CookieAgent`` (which parses the URL again
into a fake ``urllib`` request, for a jar that by policy holds nothing) and a
``ContentDecoderAgent`` (which copies the headers to add
``Accept-Encoding``) -- about 27 of its 31 microseconds per call.  ``relay``
does what those wrappers do for a jar that stores nothing: the same
``Accept-Encoding: gzip`` (built once into the cached headers), the same
``GzipDecoder`` when the answer says ``Content-Encoding: gzip``, the answer
wrapped as treq's response object; no cookie is sent or kept either way.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Optional, cast

import treq.client
from hyperlink import EncodedURL
from treq.response import _Response
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.web.client import URI, GzipDecoder, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from .connections import URI_CACHE_SIZE, ConnectionCounter, QuietClientFactory, RelayAgent, counting_endpoints

__all__ = ["BytesProducer", "RelayHTTPClient", "UpstreamClient"]


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


#: What the relay accepts besides identity, as treq's ``ContentDecoderAgent`` declares it.
_ACCEPT_ENCODING = b"gzip"


def _decoded(response: IResponse) -> IResponse:
    """
    ``response`` decoded as ``ContentDecoderAgent([(b"gzip", GzipDecoder)])``
    decodes it: trailing ``gzip`` codings are undone (each by a
    ``GzipDecoder``) and removed from ``Content-Encoding``; any other coding
    is left, and the body with it.
    """
    headers = response.headers
    codings = headers.getRawHeaders(b"content-encoding")
    if codings is None:
        return response
    names = b",".join(codings).split(b",")
    while names and names[-1].strip() == _ACCEPT_ENCODING:
        names.pop()
        response = GzipDecoder(response)
    if names:
        headers.setRawHeaders(b"content-encoding", [b",".join(names)])
    else:
        headers.removeHeader(b"content-encoding")
    return response


def _host_value(uri: bytes) -> bytes:
    """The ``Host`` header ``Agent`` sends for ``uri`` (``_AgentBase._computeHostValue``)."""
    parsed = URI.fromBytes(uri)
    host = parsed.host
    if isIPv6Address(host.decode("ascii")):
        host = b"[" + host + b"]"
    if (parsed.scheme, parsed.port) in ((b"http", 80), (b"https", 443)):
        return host
    return b"%b:%d" % (host, parsed.port)


class RelayHTTPClient(treq.client.HTTPClient):
    """
    treq's ``HTTPClient`` with :meth:`relay`, the lean request the relay
    makes on every call (see the module docstring).  Every other method is
    treq's own.
    """

    def __init__(self, agent: IAgent, cookiejar: CookieJar, data_to_body_producer: Any = BytesProducer) -> None:
        super().__init__(agent, cookiejar=cast(Any, cookiejar), data_to_body_producer=data_to_body_producer)
        self._relay_agent = agent
        self._relay_jar = cookiejar

    def relay(self, method: bytes, uri: bytes, headers: Headers, body: Optional[bytes]) -> Deferred[_Response]:
        """
        Send one request: ``uri`` already in its ASCII URI form, ``headers``
        already carrying ``Accept-Encoding`` (see :meth:`UpstreamClient._headers_for`)
        and not modified.  Fires with treq's response once its headers arrive
        (the body unread), decoded as treq's ``request`` would decode it.
        """
        producer = BytesProducer(body) if body else None
        d = self._relay_agent.request(method, uri, headers, producer)
        return d.addCallback(self._wrap)

    def _wrap(self, response: IResponse) -> _Response:
        return _Response(_decoded(response), cast(Any, self._relay_jar))


#: At most this many distinct upstream URLs are kept converted (paths of
#: relayed endpoints can carry client query strings).
_URL_CACHE_SIZE = URI_CACHE_SIZE
#: At most this many distinct upstream header sets are kept built (client
#: ``openai-beta``/``anthropic-beta`` values vary them).
_HEADERS_CACHE_SIZE = 256


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
        self.pool._factory = QuietClientFactory
        agent = RelayAgent.usingEndpointFactory(reactor, counting_endpoints(reactor, connect_timeout, self.counter), pool=self.pool)
        self._urls: dict[str, bytes] = {}
        self._built_headers: dict[tuple[Any, ...], Headers] = {}
        self.http = RelayHTTPClient(agent, _NoCookies())

    def request(self, method: str, url: str, headers: dict[bytes, list[bytes]], body: Optional[bytes]) -> Deferred[Any]:
        """
        Send one request; the Deferred fires with the response as soon as
        its headers arrive (the body is not read).
        """
        uri = self._urls.get(url)
        if uri is None:
            uri = EncodedURL.from_text(url).to_uri().to_text().encode("ascii")
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[url] = uri
        return self.http.relay(method.encode("ascii").upper(), uri, self._headers_for(uri, headers), body)

    def _headers_for(self, uri: bytes, headers: dict[bytes, list[bytes]]) -> Headers:
        """
        ``headers`` as the ``Headers`` sent to ``uri``, built once per
        distinct (URI, header set): a provider's headers are the same on
        every request, and ``Headers`` checks every name and value as it is
        built.  Built in full -- with the ``Accept-Encoding`` treq's decoder
        would add and the ``Host`` the ``Agent`` would add, in that order, so
        the wire is unchanged -- so neither copies it per request; nothing
        downstream modifies it, so one instance is safely shared.
        """
        key = (uri, *((name, *values) for name, values in headers.items()))
        built = self._built_headers.get(key)
        if built is None:
            built = Headers(cast(Any, headers))
            built.addRawHeader(b"accept-encoding", _ACCEPT_ENCODING)
            built.addRawHeader(b"host", _host_value(uri))
            if len(self._built_headers) < _HEADERS_CACHE_SIZE:
                self._built_headers[key] = built
        return built

    def close(self) -> Deferred[None]:
        """Close idle pooled connections (at service stop)."""
        return self.pool.closeCachedConnections()
