# Tests: tests/test_cli_postgres.py, tests/test_cli.py
"""
Usage totals grouped by day, key, team or model (one or two of them).

This is what ``dd0c-route usage --group-by`` prints.  Both stores answer it
with the same values in the same order: SQLite by adding up its rows here
(L{group_records}), PostgreSQL from its daily rollup table.  The grouping
rules live in this one module so the two cannot drift: a record's day is
its UTC date, a missing key, team or model is ``"-"``, and the model is the
one that served the request, else the one asked for (as in
L{dd0c_route.ledger.summary.by_model}).

Order: grouped by day first, groups come oldest day first; otherwise the
most expensive group comes first (ties: most requests, then by name), so
``--limit N`` keeps the top N.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Iterable, Optional, Sequence

import attrs

from .records import UsageRecord

__all__ = [
    "GROUP_FIELDS",
    "GroupTotals",
    "add_totals",
    "day_of",
    "group_records",
    "group_values",
    "order_groups",
    "parse_group_by",
]

#: ``--group-by`` name -> the field name in the output.
GROUP_FIELDS: dict[str, str] = {"day": "day", "key": "key_id", "team": "team", "model": "model"}

MISSING = "-"


def parse_group_by(text: str) -> tuple[str, ...]:
    """
    ``"day"`` or ``"key,model"`` as a tuple of one or two group names;
    ValueError naming the allowed values otherwise.
    """
    names = tuple(part.strip() for part in text.split(","))
    allowed = ", ".join(GROUP_FIELDS)
    if not 1 <= len(names) <= 2 or any(name not in GROUP_FIELDS for name in names):
        raise ValueError(f"must be one or two of {allowed}, comma-separated (got {text!r})")
    if len(set(names)) != len(names):
        raise ValueError(f"names a group twice ({text!r})")
    return names


def day_of(created_at: float) -> str:
    """The UTC date of a timestamp, ``YYYY-MM-DD`` (``"-"`` if out of range)."""
    try:
        return datetime.fromtimestamp(created_at, UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return MISSING


def day_start(day: str) -> float:
    """The timestamp of a ``YYYY-MM-DD`` day's UTC midnight."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC).timestamp()


def group_values(record: UsageRecord, group_by: Sequence[str]) -> tuple[str, ...]:
    """The record's value for each group name."""
    out = []
    for name in group_by:
        if name == "day":
            out.append(day_of(record.created_at))
        elif name == "key":
            out.append(record.key_id or MISSING)
        elif name == "team":
            out.append(record.team or MISSING)
        else:
            out.append(record.model or record.model_requested or MISSING)
    return tuple(out)


@attrs.frozen
class GroupTotals:
    """
    What one group used.  Sums count known values only; ``unpriced`` counts
    the requests whose cost is unknown.
    """

    group_by: tuple[str, ...]
    values: tuple[str, ...]
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_requested_usd: Decimal = Decimal(0)
    cost_shadow_usd: Decimal = Decimal(0)
    unpriced: int = 0

    def to_json(self) -> dict[str, Any]:
        """The group's fields and totals; money as decimal strings."""
        out: dict[str, Any] = {
            GROUP_FIELDS[name]: value for name, value in zip(self.group_by, self.values, strict=True)
        }
        out.update(
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=format(self.cost_usd, "f"),
            cost_requested_usd=format(self.cost_requested_usd, "f"),
        )
        return out


def add_totals(a: GroupTotals, b: GroupTotals) -> GroupTotals:
    """Two partial totals of one group, added."""
    return attrs.evolve(
        a,
        requests=a.requests + b.requests,
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
        cost_requested_usd=a.cost_requested_usd + b.cost_requested_usd,
        cost_shadow_usd=a.cost_shadow_usd + b.cost_shadow_usd,
        unpriced=a.unpriced + b.unpriced,
    )


def totals_of(record: UsageRecord, group_by: tuple[str, ...], values: tuple[str, ...]) -> GroupTotals:
    """One record as a group total (what the rollup adds for it)."""
    return GroupTotals(
        group_by=group_by,
        values=values,
        requests=1,
        prompt_tokens=record.prompt_tokens or 0,
        completion_tokens=record.completion_tokens or 0,
        cost_usd=record.cost_usd or Decimal(0),
        cost_requested_usd=record.cost_requested_usd or Decimal(0),
        cost_shadow_usd=record.cost_shadow_usd or Decimal(0),
        unpriced=int(record.cost_usd is None),
    )


def merge(parts: Iterable[GroupTotals]) -> list[GroupTotals]:
    """Partial totals with equal group values added into one."""
    merged: dict[tuple[str, ...], GroupTotals] = {}
    for part in parts:
        current = merged.get(part.values)
        merged[part.values] = part if current is None else add_totals(current, part)
    return list(merged.values())


def order_groups(totals: Iterable[GroupTotals], group_by: Sequence[str], limit: Optional[int] = None) -> list[GroupTotals]:
    """The groups in output order (see the module docstring), at most C{limit}."""
    if group_by and group_by[0] == "day":
        ordered = sorted(totals, key=lambda t: t.values)
    else:
        ordered = sorted(totals, key=lambda t: (-t.cost_usd, -t.requests, t.values))
    return ordered if limit is None else ordered[:limit]


def group_records(
    records: Iterable[UsageRecord], group_by: tuple[str, ...], limit: Optional[int] = None
) -> list[GroupTotals]:
    """Totals per group, computed from the records themselves."""
    parts = (totals_of(r, group_by, group_values(r, group_by)) for r in records)
    return order_groups(merge(parts), group_by, limit)
