# Tests: tests/test_upstream_client.py, tests/test_backpressure_live.py, tests/test_read_batch.py
"""
Provider connections, below treq: counted as they open and close, with
Nagle's algorithm off, made by an endpoint per URI, pooled quietly, and
requested by an ``Agent`` that parses each URI once.

The relay sends to a handful of fixed URLs (one per provider and endpoint),
and ``Agent.request`` parses its URI on every call -- ``URI.fromBytes`` and
``originForm``, about 18 microseconds, and a new endpoint from the factory.
:class:`RelayAgent` keeps each URI's parse and endpoint (bounded) and hands
them to the same method ``Agent.request`` ends in,
``_AgentBase._requestWithEndpoint`` (Twisted's own since 13.1; ``ProxyAgent``
uses it too).  Should a Twisted release drop that method, the agent notices
at construction and every request takes ``Agent.request`` again.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from .read_batch import READS

__all__ = ["ConnectionCounter", "QuietClientFactory", "RelayAgent", "counting_endpoints", "set_no_delay"]

#: At most this many distinct URIs are kept parsed (paths of relayed
#: endpoints can carry client query strings).
URI_CACHE_SIZE = 512


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


class QuietClientFactory(_HTTP11ClientFactory):
    """
    The pool makes one factory per provider connection, and a noisy factory
    logs "Starting/Stopping factory" for each: two log events per upstream
    connection, which made a mass disconnect spend 40% of its reactor time
    formatting log lines.
    """

    noisy = False


def counting_endpoints(reactor: Any, connect_timeout: float, counter: ConnectionCounter) -> IAgentEndpointFactory:
    """The endpoint factory of the relay's agent: TCP or TLS, every connection counted."""
    return _EndpointFactory(reactor, connect_timeout, counter)


class RelayAgent(Agent):
    """
    ``Agent`` keeping each URI's parse and endpoint; see the module
    docstring.  Build it with ``RelayAgent.usingEndpointFactory``.
    """

    _targets: dict[bytes, tuple[tuple[bytes, bytes, int], Any, URI, bytes]]

    def _init(self, reactor: Any, endpointFactory: IAgentEndpointFactory, pool: Any) -> None:
        super()._init(reactor, endpointFactory, pool)
        self._targets = {}
        self._send = getattr(self, "_requestWithEndpoint", None)

    def request(
        self, method: bytes, uri: bytes, headers: Optional[Headers] = None, bodyProducer: Optional[IBodyProducer] = None
    ) -> Deferred[IResponse]:
        target = self._targets.get(uri)
        if target is None or self._send is None:
            # The first time: Agent's own path checks and parses the URI.
            d = super().request(method, uri, headers, bodyProducer)
            if self._send is not None and len(self._targets) < URI_CACHE_SIZE:
                parsed = URI.fromBytes(uri.strip())
                if parsed.scheme in (b"http", b"https"):
                    self._targets[uri] = (
                        (parsed.scheme, parsed.host, parsed.port),
                        self._endpointFactory.endpointForURI(parsed),
                        parsed,
                        parsed.originForm,
                    )
            return d
        key, endpoint, parsed, path = target
        return self._send(key, endpoint, method, parsed, headers, bodyProducer, path)  # type: ignore[no-any-return]
