# Tests: tests/test_ledger.py
"""
Totals of usage records, grouped by model or by key.

Aggregated in Python rather than SQL because costs are stored as exact
decimal text: SQLite's ``SUM`` would turn them into floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Iterable, Optional

import attrs

from .records import UsageRecord

__all__ = ["UsageTotals", "summarize", "by_model", "by_key"]


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


def summarize(
    records: Iterable[UsageRecord], group: Optional[Callable[[UsageRecord], str]] = None
) -> list[UsageTotals]:
    """
    Totals per group (in order of first appearance), or one ``"total"`` row
    when C{group} is None.
    """
    totals: dict[str, UsageTotals] = {}
    for record in records:
        name = "total" if group is None else group(record)
        current = totals.get(name) or UsageTotals(group=name)
        totals[name] = current.add(record)
    return list(totals.values())
