# Tests: tests/test_drain.py, tests/test_admin_live.py
"""
The graceful drain on SIGTERM.

twistd stops the application's services in reverse order of addition
(:class:`dd0c_route.tap._SequentialService`, one after the other).  The API
port is added last so it closes first: no new connection is accepted.
:class:`DrainService` stops next: it marks readiness as draining (``/readyz``
answers 503, so a balancer moves traffic away) and waits until no request is
in flight, or ``[server] drain_seconds`` have passed.  Only then do the admin
port close and the client connections still open get cut (which finalizes
their meters: a stream cut here is billed as delivered), and last the
writer flushes every record.  A rolling deploy therefore never cuts a
stream that ends within the grace, and the process exits 0.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["DrainService"]

log = Logger()

#: How often the drain looks whether the last request has finished.
POLL_INTERVAL = 0.05


class DrainService(Service):
    """At stop: mark draining, wait for ``in_flight()`` to reach 0 or ``seconds``."""

    def __init__(
        self, reactor: IReactorTime, in_flight: Callable[[], int], seconds: float, readiness: Optional[Any] = None
    ) -> None:
        self.reactor = reactor
        self.in_flight = in_flight
        self.seconds = seconds
        self.readiness = readiness

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.readiness is not None:
            self.readiness.draining = True
        done: Deferred[None] = Deferred()
        count = self.in_flight()
        if count == 0:
            done.callback(None)
            return done
        log.info(
            "Draining: {count} requests in flight, waiting up to {seconds}s for them to finish",
            count=count, seconds=self.seconds,
        )
        deadline = self.reactor.seconds() + self.seconds

        def check() -> None:
            left = self.in_flight()
            if left == 0:
                log.info("Drained: every request in flight finished")
                done.callback(None)
            elif self.reactor.seconds() >= deadline:
                log.warn("Drain time is up: cutting {count} requests still open (billed as delivered)", count=left)
                done.callback(None)
            else:
                self.reactor.callLater(POLL_INTERVAL, check)

        self.reactor.callLater(min(POLL_INTERVAL, self.seconds), check)
        return done
