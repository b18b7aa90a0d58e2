# Tests: tests/test_alerts.py
"""
One budget alert as the ledger keeps it: the claim that makes it exactly once.

A row is unique by (scope, period, period_start, threshold): whichever
process (worker, instance) inserts it first owns the crossing and sends the
webhook; every other one's insert is ignored (``INSERT OR IGNORE`` / ``ON
CONFLICT DO NOTHING``) and it sends nothing.  The webhook URL is not kept:
Slack-style URLs are credentials.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

import attrs

__all__ = ["AlertRecord"]


@attrs.frozen(kw_only=True)
class AlertRecord:
    """A crossing: ``threshold`` is ``"0.8"`` (of the budget) or ``"$100"`` (an amount)."""

    scope: str
    period: str
    period_start: float
    threshold: str
    spent_usd: Decimal
    limit_usd: Optional[Decimal] = None
    created_at: float = 0.0
    #: ``pending`` (claimed, being sent), ``sent`` or ``failed`` (retries exhausted).
    status: str = "pending"
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "period": self.period,
            "period_start": self.period_start,
            "threshold": self.threshold,
            "spent_usd": format(self.spent_usd, "f"),
            "limit_usd": None if self.limit_usd is None else format(self.limit_usd, "f"),
            "created_at": self.created_at,
            "status": self.status,
            "attempts": self.attempts,
        }
