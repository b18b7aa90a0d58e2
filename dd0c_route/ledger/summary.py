# Tests: tests/test_ledger.py
"""
Totals of usage records, grouped by model or by key.

Aggregated in Python rather than SQL because costs are stored as exact
decimal text: SQLite's ``SUM`` would turn them into floats.

Savings are measured, not guessed: a routed record carries what it cost
(``cost_usd``) and what the requested model would have cost on the same
token counts (``cost_requested_usd``); a shadow-mode record carries what the
rule's model would have cost (``cost_shadow_usd``).  Records where either
figure is unknown (no price) are counted but add nothing to the sums.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Iterable, Optional

import attrs

from .records import UsageRecord

__all__ = ["Savings", "UsageTotals", "by_key", "by_model", "by_route", "savings", "summarize"]


@attrs.frozen
class UsageTotals:
    """
    What a group of requests used.

    ``cost_usd`` sums the known costs only; ``unpriced`` counts the requests
    whose cost is unknown, so a partial total is never mistaken for a full one.
    """

    group: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, record: UsageRecord) -> UsageTotals:
        """These totals with one more record counted."""
        return attrs.evolve(
            self,
            requests=self.requests + 1,
            prompt_tokens=self.prompt_tokens + (record.prompt_tokens or 0),
            completion_tokens=self.completion_tokens + (record.completion_tokens or 0),
            cost_usd=self.cost_usd + (record.cost_usd or Decimal(0)),
            unpriced=self.unpriced + (record.cost_usd is None),
        )


def by_model(record: UsageRecord) -> str:
    """The model that served the request (else the one asked for)."""
    return record.model or record.model_requested or "-"


def by_key(record: UsageRecord) -> str:
    """The proxy key's id."""
    return record.key_id or "-"


@attrs.frozen
class Savings:
    """
    What routing saved for a group of requests, and what shadow rules
    would have saved.

    ``routed`` counts requests served by another model than the one asked
    for; ``saved_usd`` is the requested model's cost minus the real cost
    over the requests where both are known.  ``shadowed`` counts requests a
    shadow rule matched; ``shadow_saved_usd`` is their real cost minus what
    the rule's model would have cost.
    """

    group: str
    requests: int = 0
    routed: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_requested_usd: Decimal = Decimal(0)
    shadowed: int = 0
    shadow_saved_usd: Decimal = Decimal(0)

    @property
    def saved_usd(self) -> Decimal:
        return self.cost_requested_usd - self.cost_usd

    def add(self, record: UsageRecord) -> Savings:
        """These savings with one more record counted."""
        routed = bool(record.model and record.model_requested and record.model != record.model_requested)
        cost, requested, shadow_cost = record.cost_usd, record.cost_requested_usd, record.cost_shadow_usd
        shadow = record.shadow_model is not None
        saved_paid = saved_requested = shadow_saved = Decimal(0)
        if cost is not None and requested is not None:
            saved_paid, saved_requested = cost, requested
        if shadow and cost is not None and shadow_cost is not None:
            shadow_saved = cost - shadow_cost
        return attrs.evolve(
            self,
            requests=self.requests + 1,
            routed=self.routed + routed,
            cost_usd=self.cost_usd + saved_paid,
            cost_requested_usd=self.cost_requested_usd + saved_requested,
            shadowed=self.shadowed + shadow,
            shadow_saved_usd=self.shadow_saved_usd + shadow_saved,
        )


def by_route(record: UsageRecord) -> str:
    """``requested->served`` when routing changed the model, else the model."""
    served = by_model(record)
    if record.model_requested and record.model and record.model_requested != record.model:
        return f"{record.model_requested}->{served}"
    return served


def savings(
    records: Iterable[UsageRecord], group: Optional[Callable[[UsageRecord], str]] = None
) -> list[Savings]:
    """Savings per group (in order of first appearance), or one ``"total"`` row."""
    totals: dict[str, Savings] = {}
    for record in records:
        name = "total" if group is None else group(record)
        current = totals.get(name) or Savings(group=name)
        totals[name] = current.add(record)
    return list(totals.values())


def summarize(
    records: Iterable[UsageRecord], group: Optional[Callable[[UsageRecord], str]] = None
) -> list[UsageTotals]:
    """
    Totals per group (in order of first appearance), or one ``"total"`` row
    when ``group`` is None.
    """
    totals: dict[str, UsageTotals] = {}
    for record in records:
        name = "total" if group is None else group(record)
        current = totals.get(name) or UsageTotals(group=name)
        totals[name] = current.add(record)
    return list(totals.values())
