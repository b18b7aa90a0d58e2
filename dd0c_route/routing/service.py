# Tests: tests/test_routing.py, tests/test_live_routing.py
"""
The router's parts, built once from the config.

:class:`Routing` holds the router, the circuit breaker and the budgets.
What routing learns about one request (the rule, the fallback attempts, the
shadow model) travels on that request's
:class:`~dd0c_route.metering.meter.RequestInfo` into its one record;
:meth:`Routing.observe` is the record subscriber that counts each finished
request into the budgets (spend per key/team per UTC day and month, and the
tokens-per-minute buckets).

Budgets are seeded from the ledger at start by :meth:`Routing.seed`, which
reads the month's records in a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..config import Config
from ..ledger.records import UsageRecord
from .breaker import CircuitBreaker
from .budgets import Budgets, month_start
from .classifier import HeuristicClassifier
from .interfaces import IComplexityClassifier
from .router import Router

if TYPE_CHECKING:
    from ..metering.interfaces import IPriceTable
    from ..providers.registry import ProviderRegistry

__all__ = ["Routing"]

log = Logger()


class Routing:
    """Router, breaker and budgets for one proxy; see the module docstring."""

    def __init__(
        self,
        config: Config,
        registry: ProviderRegistry,
        clock: IReactorTime,
        classifier: Optional[IComplexityClassifier] = None,
        prices: Optional[IPriceTable] = None,
        shared: Any = None,
    ) -> None:
        self.config = config.routing
        self.clock = clock
        self.breaker = CircuitBreaker(clock, config.routing.circuit_breaker)
        self.router = Router(config.routing, registry, classifier or HeuristicClassifier(), self.breaker)
        self.budgets = Budgets(config.budgets, clock, shared)
        self.prices = prices
        self.started = clock.seconds()

    @property
    def enforcing(self) -> bool:
        return self.config.mode == "enforce"

    def observe(self, record: UsageRecord) -> None:
        """A record subscriber: count the finished request into the budgets."""
        self.budgets.observe(record)

    def seed(self, store: Any, run_in_thread: Callable[..., Deferred[Any]]) -> Deferred[Any]:
        """Count this month's stored spend into the budgets (reads in a thread)."""
        if not self.budgets.enabled:
            from twisted.internet.defer import succeed

            return succeed(0)
        before = self.started
        since = month_start(before)

        def counted(records: Any) -> int:
            count = self.budgets.seed(records, before)
            log.info("Budgets seeded from {count} stored usage records", count=count)
            return count

        def failed(failure: Any) -> int:
            log.failure("Seeding budgets from the ledger failed; spend starts at 0", failure)
            return 0

        d = run_in_thread(store.read_records, since)
        d.addCallbacks(counted, failed)
        return d
