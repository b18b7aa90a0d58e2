# Tests: tests/test_usage_rollup.py
"""
The usage rollup: what the admin summary reads instead of every record.

One table, ``usage_rollup``, in both stores, keyed by ``(grain, start,
key_id, team, provider, model, route)``.  A *grain* is a time resolution and
the dimensions it keeps (see :data:`GRAINS`): ``hour`` and ``day`` keep all
five, ``hour:key`` … ``hour:route`` keep one, ``hour:total`` none; a dropped
dimension is stored as ``""`` (a real value is never empty: a missing one is
``"-"``).  One full hourly grain alone would not do: with realistic
cardinality it holds a quarter as many rows as the records themselves, so a
month grouped by hour, or by key, would scan hundreds of thousands of rows
(docs/decisions.md has the figures).

Each row holds :data:`CELL_COLUMNS`: sums of requests, tokens, money
(``cost_usd``, ``cost_requested_usd``, ``savings_usd`` over records where
both costs are known, ``shadow_savings_usd`` over records a shadow rule
matched where both are known), errors, disconnects, the largest latency,
and a latency histogram -- one count per bucket of :data:`LATENCY_BOUNDS_MS`
(Prometheus ``le`` buckets: a latency equal to a bound is in that bound's
bucket) plus one for everything slower.  Percentiles come from the summed
histogram (:func:`histogram_rank`): see :mod:`.usage_query` for what that
means for the numbers.

This module is the Python side of the definition, used by both stores'
writers, by the SQLite backfill and by the SQLite summary's edges; the
PostgreSQL backfill and edges say the same in SQL (:mod:`.rollup_sql`), and
the tests hold the two to each other and to the records.

Token counts are clamped to +-:data:`TOKEN_LIMIT` per record (far beyond any
context window; only a misbehaving upstream reports more) so that no sum can
overflow a 64-bit column and poison the writer's batch.  Records dated
outside years 1-9999 (:data:`WINDOW`) have no hour and are not rolled up; no
range the API can parse reaches them.
"""

from __future__ import annotations

import decimal
import math
from bisect import bisect_left
from decimal import Decimal
from functools import reduce
from operator import attrgetter
from typing import Any, Callable, Iterable, Optional, Sequence

import attrs

__all__ = [
    "BUCKET_COLUMNS",
    "CELL_COLUMNS",
    "DIMENSIONS",
    "EXACT",
    "GRAINS",
    "KEY_COLUMNS",
    "LATENCY_BOUNDS_MS",
    "MONEY_CELLS",
    "SOURCE_COLUMNS",
    "TOKEN_LIMIT",
    "WINDOW",
    "Grain",
    "add_cells",
    "fold_hourly",
    "fold_rows",
    "histogram_rank",
    "record_source",
]


def _bounds() -> tuple[float, ...]:
    steps = (1, 1.5, 2, 3, 4, 5, 7.5)
    out = [0.5, 0.75]
    for decade in range(5):  # 1 ms .. 75 s
        out += [step * 10**decade for step in steps]
    out += [100_000, 150_000, 200_000, 300_000, 400_000, 500_000, 600_000]
    return tuple(float(b) for b in out)


#: Upper bounds (ms) of the latency buckets: 0.5 ms to 10 minutes, at most
#: x1.5 apart.  Changing them needs a migration that rebuilds the rollup.
LATENCY_BOUNDS_MS: tuple[float, ...] = _bounds()


def _bucket_column(bound: float) -> str:
    return "ms_le_" + format(bound, "g").replace(".", "_")


BUCKET_COLUMNS = (*(_bucket_column(b) for b in LATENCY_BOUNDS_MS), f"ms_gt_{int(LATENCY_BOUNDS_MS[-1])}")

#: The five dimensions, as rollup columns, in key order.
DIMENSIONS = ("key_id", "team", "provider", "model", "route")
#: The rollup's primary key.
KEY_COLUMNS = ("grain", "start", *DIMENSIONS)
#: What a rollup row (and every partial total) holds, in order.
CELL_COLUMNS = (
    "requests", "prompt_tokens", "completion_tokens", "cost_usd", "cost_requested_usd", "savings_usd",
    "shadow_savings_usd", "errors", "disconnects", "latency_max_ms", *BUCKET_COLUMNS,
)
MONEY_CELLS = (3, 4, 5, 6)
_MAX = 9
_HIST = 10
_NO_LATENCIES = (0,) * len(BUCKET_COLUMNS)
_KEY_LENGTH = len(KEY_COLUMNS)

#: Per-record clamp of token counts (2**40): no sum overflows 64 bits.
TOKEN_LIMIT = 1 << 40
#: [0001-01-01, 10000-01-01) UTC: the records that have an hour.
WINDOW = (-62_135_596_800, 253_402_300_800)

#: Decimal arithmetic that never rounds: money sums are exact.
EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)

#: The record fields the rollup reads, in order (a record, or a row of them).
SOURCE_COLUMNS = (
    "created_at", "key_id", "team", "provider", "model", "model_requested", "route_rule",
    "prompt_tokens", "completion_tokens", "cost_usd", "cost_requested_usd", "shadow_model",
    "cost_shadow_usd", "status", "disconnected", "latency_ms",
)
record_source: Callable[[Any], tuple[Any, ...]] = attrgetter(*SOURCE_COLUMNS)


@attrs.frozen
class Grain:
    """A time resolution (seconds) and the dimensions kept (the others are ``""``)."""

    name: str
    seconds: int
    keeps: tuple[str, ...]
    _kept: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_kept", tuple(DIMENSIONS.index(d) for d in self.keeps))

    def key(self, hourly: tuple[Any, ...]) -> tuple[Any, ...]:
        """This grain's key for a key of :func:`fold_hourly`: ``(hour, *DIMENSIONS)``."""
        hour = hourly[0]
        start = hour - hour % self.seconds
        if len(self._kept) == len(DIMENSIONS):
            return (self.name, start, *hourly[1:])
        dims = ["", "", "", "", ""]
        for i in self._kept:
            dims[i] = hourly[1 + i]
        return (self.name, start, *dims)


GRAINS: dict[str, Grain] = {
    g.name: g
    for g in (
        Grain("hour", 3600, DIMENSIONS),
        Grain("day", 86400, DIMENSIONS),
        *(Grain(f"hour:{d.removesuffix('_id')}", 3600, (d,)) for d in DIMENSIONS),
        Grain("hour:total", 3600, ()),
    )
}


def _clamp(tokens: int) -> int:
    return max(-TOKEN_LIMIT, min(TOKEN_LIMIT, tokens))


def _money(value: Any) -> Optional[Decimal]:
    if value is None or value.__class__ is Decimal:
        return value
    return Decimal(value)


def _bucket(latency: float) -> int:
    if latency != latency:  # NaN sorts above everything, as in PostgreSQL
        return len(LATENCY_BOUNDS_MS)
    return bisect_left(LATENCY_BOUNDS_MS, latency)


def add_cells(into: list[Any], cells: Sequence[Any]) -> None:
    """Add one row's cells into another's, exactly (money) and by maximum (latency)."""
    into[0] += cells[0]
    into[1] += cells[1]
    into[2] += cells[2]
    add = EXACT.add
    into[3] = add(into[3], cells[3])
    into[4] = add(into[4], cells[4])
    into[5] = add(into[5], cells[5])
    into[6] = add(into[6], cells[6])
    into[7] += cells[7]
    into[8] += cells[8]
    top, other = into[_MAX], cells[_MAX]
    if other > top or (other != other and top == top):  # NaN is the largest, as in PostgreSQL
        into[_MAX] = other
    into[_HIST:] = map(int.__add__, into[_HIST:], cells[_HIST:])


def fold_hourly(
    rows: Iterable[Sequence[Any]], clean: Callable[[Any], Any] = lambda v: v
) -> dict[tuple[Any, ...], list[Any]]:
    """The records' (rows of :data:`SOURCE_COLUMNS`) cells per ``(hour, *dimensions)``."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    zero = Decimal(0)
    subtract, add = EXACT.subtract, EXACT.add
    for row in rows:
        (created_at, key_id, team, provider, model, requested_model, route, prompt, completion, cost, requested,
         shadow_model, shadow, status, disconnected, latency) = row
        if not WINDOW[0] <= created_at < WINDOW[1]:
            continue
        key = (
            int(created_at // 3600) * 3600,  # float // is exact: never the next hour
            clean(key_id or "-"), clean(team or "-"), clean(provider or "-"),
            clean(model or requested_model or "-"), clean(route or "-"),
        )
        acc = out.get(key)
        if acc is None:
            acc = out[key] = [0, 0, 0, zero, zero, zero, zero, 0, 0, latency, *_NO_LATENCIES]
        elif latency > acc[_MAX] or (latency != latency and acc[_MAX] == acc[_MAX]):
            acc[_MAX] = latency
        cost, requested, shadow = _money(cost), _money(requested), _money(shadow)
        acc[0] += 1
        if prompt:
            acc[1] += _clamp(prompt)
        if completion:
            acc[2] += _clamp(completion)
        if cost is not None:
            acc[3] = add(acc[3], cost)
            if requested is not None:
                acc[5] = add(acc[5], subtract(requested, cost))
            if shadow_model is not None and shadow is not None:
                acc[6] = add(acc[6], subtract(cost, shadow))
        if requested is not None:
            acc[4] = add(acc[4], requested)
        if disconnected:
            acc[8] += 1
        elif status >= 400:
            acc[7] += 1
        acc[_HIST + _bucket(latency)] += 1
    return out


def _merged(members: list[list[Any]]) -> list[Any]:
    if len(members) == 1:
        return list(members[0])
    columns = list(zip(*members, strict=True))
    out = [sum(column) for column in columns[:3]]
    out += [reduce(EXACT.add, columns[i]) for i in MONEY_CELLS]
    out += [sum(columns[7]), sum(columns[8])]
    top = columns[_MAX]
    out.append(float("nan") if any(v != v for v in top) else max(top))  # NaN is the largest, as in PostgreSQL
    out += [sum(column) for column in columns[_HIST:]]
    return out


def fold_rows(
    rows: Iterable[Sequence[Any]], clean: Callable[[Any], Any] = lambda v: v
) -> list[tuple[Any, ...]]:
    """
    What the records add to every grain: ``(*KEY_COLUMNS, *CELL_COLUMNS)``
    rows in key order (one lock order for every writer: concurrent upserts
    cannot deadlock).
    """
    hourly = fold_hourly(rows, clean)
    out = []
    for grain in GRAINS.values():
        groups: dict[tuple[Any, ...], list[list[Any]]] = {}
        for key, cells in hourly.items():
            groups.setdefault(grain.key(key), []).append(cells)
        out += [(*key, *_merged(members)) for key, members in groups.items()]
    out.sort(key=lambda row: row[:_KEY_LENGTH])
    return out


def histogram_rank(cells: Sequence[Any], fraction: float) -> Optional[float]:
    """
    The nearest-rank percentile over the bucketed latencies: the upper
    bound of the bucket holding the rank, capped at the largest latency
    (which is all the slowest bucket can say).  None for no requests.
    """
    n = cells[0]
    if not n:
        return None
    rank = max(1, math.ceil(fraction * n))
    seen = 0
    top = cells[_MAX]
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        seen += cells[_HIST + i]
        if seen >= rank:
            return bound if bound <= top else float(top)
    return float(top)
