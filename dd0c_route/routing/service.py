# Tests: tests/test_routing.py, tests/test_live_routing.py, tests/test_key_limits.py
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
reads the month's records in a worker thread when ``[budgets]`` are
configured.  A key that gets a spend cap of its own (from the admin API) is
read alone when the cap first applies: two ``spend_between`` sums (today,
this month) of everything stored for it, the floor of its figures here and,
with ``[state]``, of the shared view.
"""

from __future__ import annotations

from decimal import Decimal
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
        self.budgets.seed_needed = lambda key_id: self._seed_key(store, run_in_thread, key_id)
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

    def _seed_key(self, store: Any, run_in_thread: Callable[..., Deferred[Any]], key_id: str) -> Deferred[Any]:
        """
        A key whose own spend cap just applies: what the ledger has stored
        for it today and this month (every instance's records), as the
        floor of its figures.  Never fails.
        """
        now = self.clock.seconds()
        day, month = now - now % 86400, month_start(now)

        def read() -> tuple[Decimal, Decimal]:
            end = now + 1
            return store.spend_between(day, end, key_ids=[key_id]), store.spend_between(month, end, key_ids=[key_id])

        def counted(found: tuple[Decimal, Decimal]) -> None:
            self.budgets.seed_key(key_id, *found)

        def failed(failure: Any) -> None:
            log.failure("Reading a key's spend for its own budget failed; counting from now", failure)

        return run_in_thread(read).addCallbacks(counted, failed)
