# Tests: tests/test_alerts.py, tests/test_alerts_live.py
"""
The real :class:`~dd0c_route.alerts.interfaces.IWebhookPoster`, on treq.

A client of its own, apart from the relay's pool: no persistent
connections, no cookies, no redirects (a redirect could carry the body
somewhere the operator did not configure), and nothing but
``Content-Type`` and ``User-Agent`` in the headers, so no key of ours ever
leaves with an alert.  ``timeout`` covers the headers and the (discarded)
body: the Deferred is cancelled when it runs out.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, cast

import treq
import treq.client
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from zope.interface import implementer

from .interfaces import IWebhookPoster, WebhookRefused

__all__ = ["TreqWebhookPoster"]

_HEADERS = {b"Content-Type": [b"application/json"], b"User-Agent": [b"dd0c-route-alerts"]}



@implementer(IWebhookPoster)
class TreqWebhookPoster:
    """POSTs through treq on a private, non-persistent pool."""

    def __init__(self, reactor: Any, timeout: float = 10.0) -> None:
        self._reactor = reactor
        self._timeout = timeout
        pool = HTTPConnectionPool(reactor, persistent=False)
        self._client = treq.client.HTTPClient(
            Agent(reactor, pool=pool), cookiejar=cast(Any, CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        )

    def post(self, url: str, body: bytes) -> Deferred[None]:
        d: Deferred[Any] = self._client.post(url, data=body, headers=Headers(_HEADERS), allow_redirects=False)
        timed_out = []

        def time_out() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self._reactor.callLater(self._timeout, time_out)

        def read(response: Any) -> Deferred[Any]:
            # Every response is read to its end (or the connection leaks).
            done: Deferred[Any] = treq.collect(response, lambda _: None)
            done.addCallback(lambda _: response.code)
            return done

        def judge(code: int) -> None:
            if not 200 <= code < 300:
                raise WebhookRefused(code)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if timed_out and isinstance(result, Failure):
                raise TimeoutError(f"no answer within {self._timeout} seconds")
            return result

        d.addCallback(read)
        d.addCallback(judge)
        d.addBoth(stop_timer)
        return d
