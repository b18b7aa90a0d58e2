# Tests: tests/test_admin_api.py
"""
The admin API's questions to the ledger, answered the same way by both stores.

- a **summary**: totals per group over a time range (``from`` inclusive,
  ``to`` exclusive, on ``created_at``), grouped by one or two of
  :data:`SUMMARY_GROUPS`, with latency percentiles;
- a **request log**: records newest first, filtered and paginated.

The definitions live here so that SQLite (which adds up its rows in
Python, because money is stored as exact decimal text) and PostgreSQL
(which aggregates in SQL, on ``numeric``) cannot drift:

- ``savings_usd`` is ``cost_requested_usd - cost_usd`` over the records where
  both are known (as in :class:`dd0c_route.ledger.summary.Savings`);
- ``shadow_savings_usd`` is ``cost_usd - cost_shadow_usd`` over the records a
  shadow rule matched, where both are known;
- ``errors`` counts statuses >= 400 of requests the client did not leave;
  ``disconnects`` counts the requests the client left;
- ``latency_p50_ms``/``latency_p95_ms`` are nearest-rank percentiles (the
  smallest latency with at least that fraction of requests at or below it:
  PostgreSQL's ``percentile_disc``); ``None`` for an empty group;
- a missing key, team, model or route is ``"-"``; the model is the one that
  served the request, else the one asked for; days and hours are UTC.

The PostgreSQL rollup (``usage_daily``) holds sums only: it cannot answer
percentiles, errors or disconnects, so the summary reads the records in the
range (through the ``created_at`` index).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Iterable, Optional, Sequence

import attrs

from .groups import day_of

__all__ = [
    "SUMMARY_FIELDS",
    "SUMMARY_GROUPS",
    "SUMMARY_ROW_COLUMNS",
    "RecordFilter",
    "Summary",
    "SummaryRow",
    "filter_sql",
    "nearest_rank",
    "parse_summary_group_by",
    "period_bounds",
    "summarize_rows",
]

#: ``group_by`` name -> the field name in the answer.
SUMMARY_FIELDS: dict[str, str] = {
    "day": "day", "hour": "hour", "model": "model", "provider": "provider",
    "key": "key_id", "team": "team", "route": "route",
}
SUMMARY_GROUPS = tuple(SUMMARY_FIELDS)

MISSING = "-"

#: The columns :func:`summarize_rows` reads, in order.
SUMMARY_ROW_COLUMNS = (
    "created_at", "key_id", "team", "provider", "model", "model_requested", "route_rule",
    "prompt_tokens", "completion_tokens", "cost_usd", "cost_requested_usd", "shadow_model",
    "cost_shadow_usd", "status", "disconnected", "latency_ms",
)


def parse_summary_group_by(text: str) -> tuple[str, ...]:
    """``"model"`` or ``"day,model"``: one or two names; ValueError naming the allowed ones."""
    names = tuple(part.strip() for part in text.split(",")) if text.strip() else ()
    if not 1 <= len(names) <= 2 or any(name not in SUMMARY_FIELDS for name in names):
        raise ValueError(f"group_by must be one or two of {', '.join(SUMMARY_GROUPS)}, comma-separated")
    if len(set(names)) != len(names):
        raise ValueError("group_by names a group twice")
    return names


def period_bounds(period: str, when: float) -> tuple[float, float]:
    """The UTC ``"daily"`` or ``"monthly"`` period holding ``when``: [start, end)."""
    now = datetime.fromtimestamp(when, UTC)
    if period == "daily":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp(), start.timestamp() + 86400
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.timestamp(), start.replace(year=year, month=month).timestamp()


def nearest_rank(sorted_values: Sequence[float], fraction: float) -> Optional[float]:
    """The nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@attrs.frozen
class SummaryRow:
    """One group's totals (or the totals of everything: ``values == ()``)."""

    values: tuple[str, ...] = ()
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_requested_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)
    shadow_savings_usd: Decimal = Decimal(0)
    errors: int = 0
    disconnects: int = 0
    latency_p50_ms: Optional[float] = None
    latency_p95_ms: Optional[float] = None

    def to_json(self, group_by: Sequence[str] = ()) -> dict[str, Any]:
        """The group fields then the totals; money as decimal strings."""
        out: dict[str, Any] = {SUMMARY_FIELDS[g]: v for g, v in zip(group_by, self.values, strict=True)}
        out.update(
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=format(self.cost_usd, "f"),
            cost_requested_usd=format(self.cost_requested_usd, "f"),
            savings_usd=format(self.savings_usd, "f"),
            shadow_savings_usd=format(self.shadow_savings_usd, "f"),
            errors=self.errors,
            disconnects=self.disconnects,
            latency_p50_ms=self.latency_p50_ms,
            latency_p95_ms=self.latency_p95_ms,
        )
        return out


@attrs.frozen
class Summary:
    """The groups in answer order (see :func:`order_rows`) and the totals."""

    group_by: tuple[str, ...]
    groups: tuple[SummaryRow, ...]
    totals: SummaryRow

    def to_json(self) -> dict[str, Any]:
        return {
            "group_by": list(self.group_by),
            "groups": [row.to_json(self.group_by) for row in self.groups],
            "totals": self.totals.to_json(),
        }


def _hour_of(created_at: float) -> str:
    try:
        return datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%dT%H:00Z")
    except (OverflowError, OSError, ValueError):
        return MISSING


def _group_value(name: str, row: dict[str, Any]) -> str:
    if name == "day":
        return day_of(row["created_at"])
    if name == "hour":
        return _hour_of(row["created_at"])
    if name == "model":
        return row["model"] or row["model_requested"] or MISSING
    if name == "key":
        return row["key_id"] or MISSING
    if name == "route":
        return row["route_rule"] or MISSING
    value = row[name]
    return value or MISSING


class _Acc:
    __slots__ = ("completion", "cost", "errors", "gone", "latencies", "n", "prompt", "requested", "saved", "shadow")

    def __init__(self) -> None:
        self.n = self.prompt = self.completion = self.errors = self.gone = 0
        self.cost = self.requested = self.saved = self.shadow = Decimal(0)
        self.latencies: list[float] = []

    def add(self, row: dict[str, Any]) -> None:
        cost, requested, shadow = row["cost_usd"], row["cost_requested_usd"], row["cost_shadow_usd"]
        self.n += 1
        self.prompt += row["prompt_tokens"] or 0
        self.completion += row["completion_tokens"] or 0
        if cost is not None:
            self.cost += cost
        if requested is not None:
            self.requested += requested
        if cost is not None and requested is not None:
            self.saved += requested - cost
        if row["shadow_model"] is not None and cost is not None and shadow is not None:
            self.shadow += cost - shadow
        if row["disconnected"]:
            self.gone += 1
        elif row["status"] >= 400:
            self.errors += 1
        self.latencies.append(row["latency_ms"])

    def row(self, values: tuple[str, ...]) -> SummaryRow:
        latencies = sorted(self.latencies)
        return SummaryRow(
            values, self.n, self.prompt, self.completion, self.cost, self.requested, self.saved, self.shadow,
            self.errors, self.gone, nearest_rank(latencies, 0.5), nearest_rank(latencies, 0.95),
        )


def order_rows(rows: Iterable[SummaryRow], group_by: Sequence[str]) -> list[SummaryRow]:
    """By time when grouped by day or hour first; otherwise most expensive first (ties: most requests, name)."""
    if group_by and group_by[0] in ("day", "hour"):
        return sorted(rows, key=lambda r: r.values)
    return sorted(rows, key=lambda r: (-r.cost_usd, -r.requests, r.values))


def summarize_rows(rows: Iterable[Sequence[Any]], group_by: tuple[str, ...]) -> Summary:
    """The summary of rows holding :data:`SUMMARY_ROW_COLUMNS` (money already ``Decimal``)."""
    groups: dict[tuple[str, ...], _Acc] = {}
    total = _Acc()
    for raw in rows:
        row = dict(zip(SUMMARY_ROW_COLUMNS, raw, strict=True))
        values = tuple(_group_value(name, row) for name in group_by)
        acc = groups.get(values)
        if acc is None:
            acc = groups[values] = _Acc()
        acc.add(row)
        total.add(row)
    ordered = order_rows((acc.row(values) for values, acc in groups.items()), group_by)
    return Summary(group_by, tuple(ordered), total.row(()))


@attrs.frozen
class RecordFilter:
    """Which records the request log shows (every given condition holds), newest first."""

    start: Optional[float] = None
    end: Optional[float] = None
    model: Optional[str] = None
    key_id: Optional[str] = None
    status: Optional[int] = None
    route: Optional[str] = None
    disconnected: Optional[bool] = None
    limit: Optional[int] = 50
    offset: int = 0


def filter_sql(where: RecordFilter, mark: str) -> tuple[str, list[Any]]:
    """`` WHERE ...`` (or ``""``) and its parameters, with ``mark`` as the placeholder."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.start is not None:
        clauses.append(f"created_at >= {mark}")
        params.append(where.start)
    if where.end is not None:
        clauses.append(f"created_at < {mark}")
        params.append(where.end)
    if where.model is not None:
        clauses.append(f"(model = {mark} OR (model IS NULL AND model_requested = {mark}))")
        params += [where.model, where.model]
    if where.key_id is not None:
        clauses.append(f"key_id = {mark}")
        params.append(where.key_id)
    if where.status is not None:
        clauses.append(f"status = {mark}")
        params.append(where.status)
    if where.route is not None:
        clauses.append(f"route_rule = {mark}")
        params.append(where.route)
    if where.disconnected is not None:
        clauses.append(f"disconnected = {mark}")
        params.append(where.disconnected)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
