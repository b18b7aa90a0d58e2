# Tests: tests/test_admin_api.py
"""
What-if: a candidate ``[routing]`` table replayed over recorded requests.

Each record keeps the features the router matched on (complexity, the
prompt estimate, tools, images, json mode, long context, the requested
model, the key and team); :func:`replay` runs the candidate's rules over
them in order, first match wins, exactly as :class:`~.router.Router` does
(it calls the same matcher), as if the candidate were enforced whatever its
``mode``.  A request is *moved* when the winning rule names a model other
than the one that served it; what it would have saved is its recorded cost
minus the new model's standard-tier price at the recorded token counts.

A record is *unjudged* when the replay cannot price or match it honestly:
no recorded features (older records, unrouted endpoints), or it would be
moved but its cost, its token counts or the new model's price is unknown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping, Optional

import attrs

from ..config import RoutingConfig
from ..ledger.records import UsageRecord
from ..metering.interfaces import IPriceTable
from .interfaces import RequestFeatures
from .router import Router

__all__ = ["RuleOutcome", "WhatIf", "replay"]


@attrs.frozen
class RuleOutcome:
    name: str
    moved: int = 0
    savings_usd: Decimal = Decimal(0)


@attrs.frozen
class WhatIf:
    rules: tuple[RuleOutcome, ...]
    unjudged: int
    judged: int

    @property
    def total_savings_usd(self) -> Decimal:
        return sum((rule.savings_usd for rule in self.rules), Decimal(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [{"name": r.name, "moved": r.moved, "savings_usd": format(r.savings_usd, "f")} for r in self.rules],
            "total_savings_usd": format(self.total_savings_usd, "f"),
            "unjudged": self.unjudged,
            "judged": self.judged,
        }


@attrs.frozen
class _Key:
    """What a rule's ``key``/``team`` conditions read of the caller."""

    key_id: Optional[str]
    name: Optional[str]
    team: Optional[str]


def _features(record: UsageRecord) -> Optional[RequestFeatures]:
    flags = (record.tools, record.images, record.json_mode, record.long_context)
    if record.complexity is None or record.prompt_tokens_estimate is None or any(f is None for f in flags):
        return None
    return RequestFeatures(
        prompt_tokens=record.prompt_tokens_estimate, tools=bool(record.tools), images=bool(record.images),
        json_mode=bool(record.json_mode), long_context=bool(record.long_context),
    )


def replay(
    candidate: RoutingConfig, records: Iterable[UsageRecord], prices: IPriceTable, key_names: Mapping[str, str]
) -> WhatIf:
    """Replay ``candidate``'s rules over ``records``; ``key_names`` maps key ids to names."""
    moved = {rule.name: 0 for rule in candidate.rules}
    saved = {rule.name: Decimal(0) for rule in candidate.rules}
    unjudged = judged = 0
    for record in records:
        features = _features(record)
        requested = record.model_requested or record.model
        if features is None or requested is None:
            unjudged += 1
            continue
        key = None if record.key_id is None else _Key(record.key_id, key_names.get(record.key_id), record.team)
        label = record.complexity or ""
        rule = next(
            (r for r in candidate.rules if Router._matches(r, requested, requested, key, features, label)), None
        )
        if rule is None or rule.model is None or rule.model == record.model:
            judged += 1
            continue
        cost = record.cost_usd
        if cost is None or (record.prompt_tokens is None and record.completion_tokens is None):
            unjudged += 1
            continue
        new_cost = prices.cost_usd(
            rule.model, record.prompt_tokens or 0, record.completion_tokens or 0,
            record.cached_tokens or 0, record.cache_creation_tokens or 0,
        )
        if new_cost is None:
            unjudged += 1
            continue
        judged += 1
        moved[rule.name] += 1
        saved[rule.name] += cost - new_cost
    outcomes = tuple(RuleOutcome(rule.name, moved[rule.name], saved[rule.name]) for rule in candidate.rules)
    return WhatIf(outcomes, unjudged, judged)
