# Tests: tests/test_relay.py
"""
What the relay needs of the client's request: a typed, structural seam.

:class:`~twisted.web.iweb.IRequest` alone does not say it: the relay also
registers the upstream body as the request's streaming producer (the
``IConsumer`` side of ``twisted.web.http.Request``) and drops the connection
when a stream breaks after its headers were sent (``loseConnection``, which
no Twisted interface declares).  Both twisted.web's ``Request`` and the
fallback chain's ``HeldRequest`` satisfy this protocol.
"""

from __future__ import annotations

from typing import Optional, Protocol, cast

from twisted.internet.interfaces import IPushProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

__all__ = ["ClientRequest", "client_request"]


class ClientRequest(Protocol):
    """The parts of a twisted.web request an :class:`~.relay.Exchange` uses."""

    @property
    def responseHeaders(self) -> Headers: ...

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def loseConnection(self) -> None: ...


def client_request(request: IRequest) -> ClientRequest:
    """
    ``request`` as the relay uses it.

    Every request the proxy serves is a ``twisted.web.http.Request`` (or a
    ``HeldRequest`` over one), which has the consumer side and
    ``loseConnection`` besides ``IRequest``; this names that fact in one place
    instead of widening the relay's parameter to ``Any``.
    """
    return cast(ClientRequest, request)
