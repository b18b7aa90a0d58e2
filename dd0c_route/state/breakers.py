# Tests: tests/test_state_live.py
"""
Circuit-breaker transitions, shared: one instance's failures open the
breaker for every instance.

The local :class:`~dd0c_route.routing.breaker.CircuitBreaker` still counts
failures and decides; this module only publishes its transitions (opened
for N seconds, closed) on ``{key_prefix}breaker`` and applies the ones other
instances publish, as relative cool-downs (so clocks need not agree).  The
hot path reads only the local breaker; messages arrive as reactor callbacks.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger

__all__ = ["BreakerShare"]

log = Logger()


class BreakerShare:
    """Connects one local breaker to the breaker channel."""

    def __init__(self, breaker: Any, link: Any, prefix: str, instance: str) -> None:
        self._breaker = breaker
        self._link = link
        self._channel = prefix + "breaker"
        self._instance = instance
        breaker.on_change = self.publish
        link.subscribe(self._channel, self.receive)

    def publish(self, provider: str, open_for: float) -> None:
        """A local transition: tell the others (best effort: the link may be down)."""
        message = json.dumps({"provider": provider, "open_for": open_for, "from": self._instance})
        self._link.publish(self._channel, message).addErrback(lambda _: None)

    def receive(self, message: str) -> None:
        """Another instance's transition: apply it locally, without re-publishing."""
        try:
            event = json.loads(message)
            provider, open_for, sender = str(event["provider"]), float(event["open_for"]), event.get("from")
        except (ValueError, KeyError, TypeError):
            log.warn("Ignoring a malformed breaker message")
            return
        if sender == self._instance:
            return
        self._breaker.apply_shared(provider, open_for)
