# Tests: tests/test_alerts.py
"""
When an ``[[alerts]]`` entry has fired, and what its webhook says: pure
functions of the configured alert, the scope's budget and the spend the
ledger reports for the current period.

An alert's line is ``threshold`` times the scope's budget for the period,
or ``amount_usd``; it fires when the period's spend reaches the line.  The
crossing is identified by (row scope, period, period start, threshold
text), the alerts table's unique key, so each line fires once per period.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Iterable, Optional

from ..config import AlertConfig, BudgetConfig
from ..ledger.alert_records import AlertRecord

__all__ = ["alert_limit", "alert_line", "crossing", "threshold_text", "webhook_body"]


def alert_limit(alert: AlertConfig, budgets: Iterable[BudgetConfig]) -> Optional[Decimal]:
    """The scope's budget for the alert's period, if one is configured."""
    for budget in budgets:
        if budget.scope == alert.scope:
            return budget.daily_usd if alert.period == "daily" else budget.monthly_usd
    return None


def alert_line(alert: AlertConfig, limit: Optional[Decimal]) -> Decimal:
    """The spend at which the alert fires (config_rules guarantees a limit for a threshold)."""
    if alert.amount_usd is not None:
        return alert.amount_usd
    assert alert.threshold is not None and limit is not None
    return alert.threshold * limit


def threshold_text(alert: AlertConfig) -> str:
    """The table's ``threshold`` column: ``"0.8"`` (of the budget) or ``"$100"``."""
    if alert.amount_usd is not None:
        return "$" + format(alert.amount_usd, "f")
    assert alert.threshold is not None
    return format(alert.threshold, "f")


def crossing(
    alert: AlertConfig, *, row_scope: str, limit: Optional[Decimal], spent: Decimal, period_start: float, now: float
) -> Optional[AlertRecord]:
    """The crossing to claim when ``spent`` has reached the alert's line, else None."""
    if spent < alert_line(alert, limit):
        return None
    return AlertRecord(
        scope=row_scope, period=alert.period, period_start=period_start, threshold=threshold_text(alert),
        spent_usd=spent, limit_usd=limit, created_at=now,
    )


def _money(value: Decimal) -> str:
    return "$" + format(value.quantize(Decimal("0.0001")).normalize(), "f")


def webhook_body(alert: AlertConfig, record: AlertRecord) -> dict[str, Any]:
    """
    The JSON POSTed: Slack's ``text`` (also read by Mattermost, Discord's
    /slack endpoint, Teams workflows) and the same facts as fields.
    """
    when = "today" if record.period == "daily" else "this month"
    start = time.strftime("%Y-%m-%d" if record.period == "daily" else "%Y-%m", time.gmtime(record.period_start))
    if alert.threshold is not None and record.limit_usd is not None:
        percent = format((alert.threshold * 100).normalize(), "f")
        line = f"{percent}% of its {record.period} budget of {_money(record.limit_usd)}"
    else:
        line = f"the alert amount of {_money(alert_line(alert, None))}"
    text = (
        f"dd0c-route budget alert: {record.scope} has spent {_money(record.spent_usd)} {when} "
        f"({start}, UTC), reaching {line}."
    )
    return {
        "text": text,
        "scope": record.scope,
        "period": record.period,
        "period_start": start,
        "spent_usd": format(record.spent_usd, "f"),
        "limit_usd": None if record.limit_usd is None else format(record.limit_usd, "f"),
        "threshold": None if alert.threshold is None else format(alert.threshold, "f"),
        "amount_usd": None if alert.amount_usd is None else format(alert.amount_usd, "f"),
    }
