# Tests: tests/test_shared_counters.py
"""
The seams of shared state.

:class:`ISharedCounters` is what :class:`~dd0c_route.routing.budgets.Budgets`
consults, on the hot path, beside its own in-process buckets and sums: it
answers from memory and never waits.  :class:`IStateLink` is what the
reconciler needs of Redis (one script call per round, publish, subscribe);
the real one is :class:`~dd0c_route.state.redis_link.RedisLink`, the fake
:class:`~dd0c_route.testing.fakestate.FakeStateLink`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = ["ISharedCounters", "IStateLink"]


class ISharedCounters(Interface):
    """Global spend and rate windows, seen through this instance's lease."""

    def admit(applicable: Sequence[Any], estimated_tokens: int, now: float) -> None:
        """
        Raise a :class:`~dd0c_route.routing.errors.Refusal` unless every
        ``(budget, kind, ident)`` in ``applicable`` admits one more request
        of this size within this instance's share; count the request.
        Never does I/O.
        """

    def observe(applicable: Sequence[Any], tokens: int, cost: Decimal, when: float, now: float) -> None:
        """Count one finished request's tokens and cost (``when``: its creation)."""

    def seed_periods(kind: str, ident: str, now: float, today: Decimal, this_month: Decimal) -> None:
        """The ledger's spend of ``kind``/``ident`` today and this month: the view never starts below it."""


class IStateLink(Interface):
    """A connection to the shared store, kept up by its owner."""

    up = Attribute("True while connected")

    def call_script(script: str, keys: Sequence[str], args: Sequence[str]) -> Deferred[Any]:
        """Run a Lua script atomically; fails fast when the store is down."""

    def publish(channel: str, message: str) -> Deferred[Any]:
        """Publish ``message`` on ``channel``."""

    def subscribe(channel: str, receive: Callable[[str], None]) -> None:
        """Call ``receive(message)`` for every message on ``channel`` (kept across reconnects)."""
