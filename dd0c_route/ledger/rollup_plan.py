# Tests: tests/test_usage_rollup.py
"""
How a summary over any ``[from, to)`` is answered from the rollup, exactly.

:func:`plan` cuts the range into segments: whole days from the ``day``
grain (unless grouped by hour), the whole hours around them from the
smallest hourly grain that keeps the dimensions asked for, and the partial
hours at the two edges from the records themselves (a ``created_at`` range
scan, folded the way the writers fold).  The segments partition the range,
and the edges read exactly the records the rollup holds (PostgreSQL: a
record and its rollup rows are committed together; SQLite: the records up
to the fold's watermark, in the same snapshot), so every sum is exact at
any ``from``/``to`` -- the rollup only decides how many rows are read.

:class:`SummaryBuilder` merges what the segments return -- groups of rollup
rows, or records folded per hour -- into the :class:`.usage_query.Summary`
both stores answer, percentiles from the summed histograms.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Optional, Sequence

import attrs

from .rollup import DIMENSIONS, MONEY_CELLS, WINDOW, add_cells, histogram_rank
from .usage_query import Summary, SummaryRow, order_rows

__all__ = ["Segment", "SummaryBuilder", "hour_grain", "plan"]

_TIME = frozenset({"day", "hour"})
_DIMENSION_OF = {"key": "key_id", "team": "team", "provider": "provider", "model": "model", "route": "route"}


@attrs.frozen
class Segment:
    """``[lo, hi)`` read from ``grain``'s rows, or from the records when ``grain`` is None."""

    lo: float
    hi: float
    grain: Optional[str] = None


def hour_grain(group_by: Sequence[str]) -> str:
    """The smallest hourly grain that keeps every dimension of ``group_by``."""
    dims = [_DIMENSION_OF[g] for g in group_by if g not in _TIME]
    if len(dims) > 1:
        return "hour"
    if dims:
        return "hour:" + dims[0].removesuffix("_id")
    return "hour:total"


def _ceil(when: float, step: int) -> int:
    floor = int(when // step) * step
    return floor if floor == when else floor + step


def plan(start: float, end: float, group_by: Sequence[str]) -> list[Segment]:
    """The segments that partition ``[start, end)`` (clamped to the rollup's window)."""
    start, end = max(start, WINDOW[0]), min(end, WINDOW[1])
    if not start < end:
        return []
    h1, h2 = _ceil(start, 3600), int(end // 3600) * 3600
    if h1 >= h2:
        return [Segment(start, end)]
    middle = [Segment(h1, h2, hour_grain(group_by))]
    if "hour" not in group_by:
        d1, d2 = _ceil(start, 86400), int(end // 86400) * 86400
        if d1 < d2:
            middle = [Segment(h1, d1, hour_grain(group_by)), Segment(d1, d2, "day"), Segment(d2, h2, hour_grain(group_by))]
    segments = [Segment(start, h1), *middle, Segment(h2, end)]
    return [s for s in segments if s.lo < s.hi]


class SummaryBuilder:
    """Partial totals in, one :class:`Summary` out (money exact, percentiles from histograms)."""

    def __init__(self, group_by: tuple[str, ...]) -> None:
        self.group_by = group_by
        self._groups: dict[tuple[str, ...], list[Any]] = {}
        self._times: dict[tuple[str, int], str] = {}
        self._dims = [DIMENSIONS.index(_DIMENSION_OF[g]) if g not in _TIME else -1 for g in group_by]

    def _time(self, name: str, start: int) -> str:
        text = self._times.get((name, start))
        if text is None:
            when = datetime.fromtimestamp(start, UTC)
            text = when.strftime("%Y-%m-%d" if name == "day" else "%Y-%m-%dT%H:00Z")
            self._times[(name, start)] = text
        return text

    def _add(self, values: tuple[str, ...], cells: list[Any]) -> None:
        acc = self._groups.get(values)
        if acc is None:
            self._groups[values] = cells
        else:
            add_cells(acc, cells)

    def add_hourly(self, key: Sequence[Any], cells: list[Any]) -> None:
        """Cells of ``(hour, *DIMENSIONS)`` (records folded by :func:`.rollup.fold_hourly`)."""
        hour = int(key[0])
        values = tuple(
            self._time(name, hour - hour % 86400 if name == "day" else hour) if i < 0 else key[1 + i]
            for name, i in zip(self.group_by, self._dims, strict=True)
        )
        self._add(values, cells)

    def add_segment_row(self, row: Sequence[Any]) -> None:
        """One row of :func:`.rollup_sql.segment_select`: the group values, then the cells."""
        n = len(self.group_by)
        values = tuple(
            self._time(name, int(value)) if name in _TIME else value
            for name, value in zip(self.group_by, row[:n], strict=True)
        )
        cells = list(row[n:])
        for i in MONEY_CELLS:
            if cells[i].__class__ is not Decimal:
                cells[i] = Decimal(cells[i])
        self._add(values, cells)

    def summary(self) -> Summary:
        total: Optional[list[Any]] = None
        rows = []
        for values, cells in self._groups.items():
            rows.append(_row(values, cells))
            if total is None:
                total = list(cells)
            else:
                add_cells(total, cells)
        return Summary(
            self.group_by, tuple(order_rows(rows, self.group_by)), SummaryRow() if total is None else _row((), total)
        )


def _row(values: tuple[str, ...], cells: Sequence[Any]) -> SummaryRow:
    return SummaryRow(
        values, int(cells[0]), int(cells[1]), int(cells[2]), cells[3], cells[4], cells[5], cells[6],
        int(cells[7]), int(cells[8]), histogram_rank(cells, 0.5), histogram_rank(cells, 0.95),
    )
