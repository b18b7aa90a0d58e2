# Tests: tests/test_routing.py, tests/test_live_routing.py
"""
The router's parts, built once from the config, and the record hook.

:class:`Routing` holds the router, the circuit breaker and the budgets.  Its
:meth:`Routing.submitter` wraps the ledger writer's ``submit`` so that every
usage record, as the meter hands it over, is

- completed with what only the routing layer knows (the fallback attempts,
  the shadow model and what it would have cost), kept per request id in
  :attr:`Routing.notes` until the record arrives, and
- counted into the budgets (spend per key/team per UTC day and month, and
  the tokens-per-minute buckets).

Budgets are seeded from the ledger at start by :meth:`Routing.seed`, which
reads the month's records in a worker thread.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..config import Config
from ..ledger.records import UsageRecord
from ..metering.meter import client_text
from .breaker import CircuitBreaker
from .budgets import Budgets, month_start
from .classifier import HeuristicClassifier
from .interfaces import IComplexityClassifier
from .router import Router

__all__ = ["RouteNote", "Routing"]

log = Logger()


@attrs.define
class RouteNote:
    """What the record of one request needs from the routing layer."""

    attempts: Optional[str] = None
    shadow_model: Optional[str] = None
    #: Anthropic-kind usage excludes cached tokens from the prompt count.
    prompt_includes_cached: bool = True


class Routing:
    """Router, breaker and budgets for one proxy; see the module docstring."""

    def __init__(
        self,
        config: Config,
        registry: Any,
        clock: Any,
        classifier: Optional[IComplexityClassifier] = None,
        prices: Any = None,
    ) -> None:
        self.config = config.routing
        self.clock = clock
        self.breaker = CircuitBreaker(clock, config.routing.circuit_breaker)
        self.router = Router(config.routing, registry, classifier or HeuristicClassifier(), self.breaker)
        self.budgets = Budgets(config.budgets, clock)
        self.prices = prices
        self.notes: dict[str, RouteNote] = {}
        #: Notes are kept only when a submitter will take them back.
        self.recording = False
        self.started = clock.seconds()

    @property
    def enforcing(self) -> bool:
        return self.config.mode == "enforce"

    def note(self, request_id: str) -> Optional[RouteNote]:
        """The request's note, created on first use (None when not recording)."""
        if not self.recording:
            return None
        note = self.notes.get(request_id)
        if note is None:
            note = self.notes[request_id] = RouteNote()
        return note

    def submitter(self, submit: Callable[[UsageRecord], None]) -> Callable[[UsageRecord], None]:
        """``submit`` with routing notes added and budgets counted first."""
        self.recording = True

        def routed_submit(record: UsageRecord) -> None:
            try:
                record = self.complete(record)
                self.budgets.observe(record)
            except Exception:
                log.failure("completing a usage record with routing notes failed")
            submit(record)

        return routed_submit

    def complete(self, record: UsageRecord) -> UsageRecord:
        """The record with its routing note (if any) applied."""
        note = self.notes.pop(record.request_id, None)
        if note is None:
            return record
        shadow_cost: Optional[Decimal] = None
        if note.shadow_model is not None and self.prices is not None and (
            record.prompt_tokens is not None or record.completion_tokens is not None
        ):
            shadow_cost = self.prices.cost_usd(
                note.shadow_model,
                record.prompt_tokens or 0,
                record.completion_tokens or 0,
                cached_tokens=record.cached_tokens or 0,
                cache_creation_tokens=record.cache_creation_tokens or 0,
                prompt_includes_cached=note.prompt_includes_cached,
            )
        return attrs.evolve(
            record,
            # Attempts name models, which a glob-served client model makes client text.
            attempts=None if note.attempts is None else client_text(note.attempts, limit=1024),
            shadow_model=note.shadow_model,
            cost_shadow_usd=shadow_cost,
        )

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
