# Tests: tests/test_cli.py
"""
How the ``dd0c-route`` commands print: aligned plain-text tables and their
cells.  Formatting never raises on odd data (a timestamp outside the
calendar, a control character in a name): the operator still gets a table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Optional, Sequence

__all__ = ["count", "iso", "money", "table"]


def iso(when: Optional[float]) -> str:
    if when is None:
        return "-"
    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return repr(when)


def count(value: Optional[int]) -> str:
    return "-" if value is None else str(value)


def money(value: Optional[Decimal]) -> str:
    return "-" if value is None else format(value, "f")


def _cell(value: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cells = [list(headers)] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
