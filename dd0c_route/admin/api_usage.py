# Tests: tests/test_admin_api.py, tests/test_admin_security.py
"""
The admin API's spend endpoints: ``usage/summary`` (totals per group over a
range), ``overview`` (today, this month, the budgets), ``requests`` (the
request log, a page at a time) and ``alerts`` (the budget alerts sent).

The request log shows record fields only; no record holds a prompt.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks

from ..config import Config
from ..ledger.records import UsageRecord, record_to_json
from ..ledger.usage_query import RecordFilter, parse_summary_group_by, period_bounds
from .api_call import ApiError, Call, parse_int, parse_range

__all__ = ["LOG_FIELDS", "MAX_PAGE", "UsageEndpoints", "log_json"]

#: Record fields the request log shows (no content exists on a record; the
#: client's X-Request-ID is left out as client text of no use here).
LOG_FIELDS = (
    "request_id", "created_at", "key_id", "team", "provider", "model_requested", "model", "endpoint",
    "status", "stream", "disconnected", "prompt_tokens", "completion_tokens", "cost_usd",
    "cost_requested_usd", "latency_ms", "ttfb_ms", "route_rule", "complexity", "error_type",
)
MAX_PAGE = 500


def log_json(record: UsageRecord) -> dict[str, Any]:
    full = record_to_json(record)
    return {name: full[name] for name in LOG_FIELDS}


class UsageEndpoints:
    """The spend endpoints (each store call off the reactor through ``run``)."""

    def __init__(self, *, store: Any, run: Callable[..., Deferred[Any]], config: Config, clock: Any) -> None:
        self.store, self.run, self.config, self.clock = store, run, config, clock

    @inlineCallbacks
    def summary(self, call: Call) -> Any:
        try:
            group_by = parse_summary_group_by(call.arg("group_by") or "model")
        except ValueError as why:
            raise ApiError(400, str(why), "invalid_group_by", "group_by") from None
        start, end = parse_range(call, self.clock.seconds())
        summary = yield self.run(self.store.usage_summary, start, end, group_by)
        return {"from": start, "to": end, **summary.to_json()}

    @inlineCallbacks
    def overview(self, call: Call) -> Any:
        now = self.clock.seconds()
        day_start, month = period_bounds("daily", now)[0], period_bounds("monthly", now)[0]
        today = yield self.run(self.store.usage_summary, day_start, now + 1, ("day",))
        this_month = yield self.run(self.store.usage_summary, month, now + 1, ("day",))
        budgets = [
            {"scope": b.scope, "daily_usd": None if b.daily_usd is None else format(b.daily_usd, "f"),
             "monthly_usd": None if b.monthly_usd is None else format(b.monthly_usd, "f")}
            for b in self.config.budgets
        ]
        return {
            "today": today.totals.to_json(), "month": this_month.totals.to_json(),
            "by_day": [row.to_json(("day",)) for row in this_month.groups],
            "budgets": budgets, "routing_mode": self.config.routing.mode,
        }

    @inlineCallbacks
    def requests(self, call: Call) -> Any:
        start, end = parse_range(call, self.clock.seconds(), default_start=0.0)
        limit = parse_int(call.arg("limit"), "limit", 50)
        offset = parse_int(call.arg("offset"), "offset", 0)
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit must be 1 to {MAX_PAGE}", "invalid_value", "limit")
        disconnected = call.arg("disconnected")
        if disconnected not in (None, "", "true", "false"):
            raise ApiError(400, "disconnected must be true or false", "invalid_value", "disconnected")
        status = call.arg("status")
        where = RecordFilter(
            start=start, end=end, model=call.arg("model") or None, key_id=call.arg("key_id") or None,
            status=parse_int(status, "status", 0) if status else None, route=call.arg("route") or None,
            disconnected=None if not disconnected else disconnected == "true", limit=limit + 1, offset=offset,
        )
        records = yield self.run(self.store.query_records, where)
        more = len(records) > limit
        return {
            "data": [log_json(r) for r in records[:limit]], "limit": limit, "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    @inlineCallbacks
    def alerts(self, call: Call) -> Any:
        rows = yield self.run(self.store.list_alerts, 200)
        return {"data": [row.to_json() for row in rows]}

