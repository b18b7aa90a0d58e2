# Tests: tests/test_admin_api.py
"""
The admin API's questions to the ledger, answered the same way by both stores.

- a **summary**: totals per group over a time range (``from`` inclusive,
  ``to`` exclusive, on ``created_at``), grouped by one or two of
  :data:`SUMMARY_GROUPS`, with latency percentiles;
- a **request log**: records newest first, filtered and paginated.

What every summary figure means (both stores answer from the rollup of
:mod:`.rollup`, planned by :mod:`.rollup_plan`; the tests check both against
these definitions computed from the records):

- ``savings_usd`` is ``cost_requested_usd - cost_usd`` over the records where
  both are known (as in :class:`dd0c_route.ledger.summary.Savings`);
- ``shadow_savings_usd`` is ``cost_usd - cost_shadow_usd`` over the records a
  shadow rule matched (``shadow_model`` is not null), where both are known;
- ``errors`` counts statuses >= 400 of requests the client did not leave;
  ``disconnects`` counts the requests the client left;
- sums are exact at any ``from``/``to`` (money in exact decimal arithmetic);
- ``latency_p50_ms``/``latency_p95_ms`` are **bucketed** nearest-rank
  percentiles: each latency is replaced by the upper bound of its bucket in
  :data:`.rollup.LATENCY_BOUNDS_MS` (0.5 ms ... 10 min, at most x1.5 apart;
  a latency equal to a bound is in that bound's bucket), the nearest-rank
  percentile is taken over those (the smallest bucketed value with at least
  that fraction of requests at or below it), and the result is capped at the
  group's largest latency.  Bucketing is monotonic, so this is exactly the
  bucket bound of the raw nearest-rank latency, capped -- never below the
  true percentile, and at most one bucket (x1.5) above it.  ``None`` for an
  empty group;
- a missing key, team, model or route is ``"-"``; the model is the one that
  served the request, else the one asked for; days and hours are UTC;
- records dated outside years 1-9999 are not summarized (no ISO range
  reaches them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Iterable, Optional, Sequence

import attrs

__all__ = [
    "SUMMARY_FIELDS",
    "SUMMARY_GROUPS",
    "RecordFilter",
    "Summary",
    "SummaryRow",
    "filter_sql",
    "order_rows",
    "parse_summary_group_by",
    "period_bounds",
]

#: ``group_by`` name -> the field name in the answer.
SUMMARY_FIELDS: dict[str, str] = {
    "day": "day", "hour": "hour", "model": "model", "provider": "provider",
    "key": "key_id", "team": "team", "route": "route",
}
SUMMARY_GROUPS = tuple(SUMMARY_FIELDS)

MISSING = "-"


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


def order_rows(rows: Iterable[SummaryRow], group_by: Sequence[str]) -> list[SummaryRow]:
    """By time when grouped by day or hour first; otherwise most expensive first (ties: most requests, name)."""
    if group_by and group_by[0] in ("day", "hour"):
        return sorted(rows, key=lambda r: r.values)
    return sorted(rows, key=lambda r: (-r.cost_usd, -r.requests, r.values))


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
