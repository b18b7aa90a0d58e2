# Tests: tests/test_usage_rollup.py
"""
The SQL text of the usage rollup (:mod:`.rollup`) for both stores: the
table, the upsert the writers run, the query the summary runs per segment,
and -- PostgreSQL only -- the same fold as :func:`.rollup.fold_hourly`
written as one aggregate over the records, which both the migration's
backfill and the summary's partial-hour edges run.

The two stores differ in types (``numeric`` or exact decimal text; SQLite
adds money with the Python functions ``dec_add``/``dec_sum`` of
:mod:`.sqlite_rollup`), in placeholders and in ``GREATEST`` vs ``max``.
"""

from __future__ import annotations

from typing import Sequence

from .rollup import (
    BUCKET_COLUMNS,
    CELL_COLUMNS,
    DIMENSIONS,
    GRAINS,
    KEY_COLUMNS,
    LATENCY_BOUNDS_MS,
    MONEY_CELLS,
    TOKEN_LIMIT,
    WINDOW,
)

__all__ = [
    "PG_BACKFILL",
    "PG_TABLE",
    "SQLITE_TABLE",
    "pg_raw_select",
    "segment_select",
    "upsert_sql",
]

_MONEY = frozenset(CELL_COLUMNS[i] for i in MONEY_CELLS)
_COLUMNS = (*KEY_COLUMNS, *CELL_COLUMNS)


def _table(types: dict[str, str]) -> str:
    def kind(column: str) -> str:
        if column in _MONEY:
            return types["money"]
        if column == "latency_max_ms":
            return types["float"]
        if column in BUCKET_COLUMNS:
            return types["count"]
        return types["int"]

    key = [f"grain {types['text']} NOT NULL", f"start {types['int']} NOT NULL"]
    key += [f"{d} {types['text']} NOT NULL" for d in DIMENSIONS]
    cells = [f"{c} {kind(c)} NOT NULL" for c in CELL_COLUMNS]
    return (
        f"CREATE TABLE usage_rollup ({', '.join(key + cells)}, PRIMARY KEY ({', '.join(KEY_COLUMNS)})){types['suffix']}"
    )


PG_TABLE = _table(
    {"text": "text", "int": "bigint", "count": "integer", "money": "numeric", "float": "double precision", "suffix": ""}
)
SQLITE_TABLE = _table(
    {"text": "TEXT", "int": "INTEGER", "count": "INTEGER", "money": "TEXT", "float": "REAL", "suffix": " WITHOUT ROWID"}
)


def _pg_type(column: str) -> str:
    if column in ("grain", *DIMENSIONS):
        return "text"
    if column in _MONEY:
        return "numeric"
    if column == "latency_max_ms":
        return "double precision"
    return "integer" if column in BUCKET_COLUMNS else "bigint"


def upsert_sql(store: str) -> str:
    """
    Add rows of ``(*KEY_COLUMNS, *CELL_COLUMNS)`` to the rollup: on SQLite
    one row (``executemany``), on PostgreSQL all at once, one array per
    column (``unnest``: one statement text, planned once, whatever the
    number of rows -- a multi-row VALUES costs more to plan than to run).
    """
    pg = store == "postgres"
    if pg:
        source = "SELECT * FROM unnest(" + ", ".join(f"%s::{_pg_type(c)}[]" for c in _COLUMNS) + ")"
    else:
        source = "VALUES (" + ", ".join("?" for _ in _COLUMNS) + ")"
    updates = []
    for column in CELL_COLUMNS:
        old, new = (f"usage_rollup.{column}", f"EXCLUDED.{column}") if pg else (column, f"excluded.{column}")
        if column == "latency_max_ms":
            updates.append(f"{column} = {'GREATEST' if pg else 'max'}({old}, {new})")
        elif column in _MONEY and not pg:
            updates.append(f"{column} = dec_add({old}, {new})")
        else:
            updates.append(f"{column} = {old} + {new}")
    return (
        f"INSERT INTO usage_rollup ({', '.join(_COLUMNS)}) {source} "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {', '.join(updates)}"
    )


def _day_of(column: str, pg: bool) -> str:
    # The UTC day holding an hour start (a multiple of 86400; no leap seconds in epoch time).
    # PostgreSQL's mod() is the % that psycopg would read as a placeholder.
    if pg:
        return f"({column} - mod(mod({column}, 86400) + 86400, 86400))"
    return f"({column} - (({column} % 86400) + 86400) % 86400)"


def _sums(pg: bool) -> str:
    parts = []
    for column in CELL_COLUMNS:
        if column == "latency_max_ms":
            parts.append(f"max({column})")
        elif column in _MONEY:
            parts.append(f"{'sum' if pg else 'dec_sum'}({column})")
        elif pg and column not in BUCKET_COLUMNS:
            parts.append(f"sum({column})::bigint")  # sum(bigint) is numeric
        else:
            parts.append(f"sum({column})")
    return ", ".join(parts)


def segment_select(store: str, grain: str, group_by: Sequence[str]) -> str:
    """
    One rollup segment's groups: ``(*group values, *cells)`` of the rows of
    ``grain`` with ``start`` in [%s, %s); a day or hour is its start
    (epoch seconds).
    """
    pg = store == "postgres"
    mark = "%s" if pg else "?"
    columns = []
    for name in group_by:
        if name == "day":
            columns.append("start" if GRAINS[grain].seconds == 86400 else _day_of("start", pg))
        elif name == "hour":
            columns.append("start")
        else:
            columns.append("key_id" if name == "key" else name)
    grouping = ", ".join(str(i + 1) for i in range(len(columns)))
    return (
        f"SELECT {', '.join(columns)}, {_sums(pg)} FROM usage_rollup "
        f"WHERE grain = {mark} AND start >= {mark} AND start < {mark} GROUP BY {grouping}"
    )


# -- PostgreSQL: the fold over the records, in SQL ------------------------

_PG_DIMS = (
    "coalesce(nullif(key_id, ''), '-')",
    "coalesce(nullif(team, ''), '-')",
    "coalesce(nullif(provider, ''), '-')",
    "coalesce(nullif(model, ''), nullif(model_requested, ''), '-')",
    "coalesce(nullif(route_rule, ''), '-')",
)
# floor(x / 3600) may round up to the next hour for x just below it; the
# product is exact (an integer times 3600, far below 2**53), so compare and step back.
_PG_HOUR = (
    "((floor(created_at / 3600) - CASE WHEN floor(created_at / 3600) * 3600 > created_at THEN 1 ELSE 0 END)"
    "::bigint * 3600)"
)


def _pg_tokens(column: str) -> str:
    return f"coalesce(sum(LEAST(GREATEST(coalesce({column}, 0), {-TOKEN_LIMIT}), {TOKEN_LIMIT})), 0)::bigint"


def _pg_buckets() -> list[str]:
    out, low = [], None
    for bound in LATENCY_BOUNDS_MS:
        below = f"latency_ms <= {bound!r}"
        out.append(f"count(*) FILTER (WHERE {below if low is None else f'latency_ms > {low!r} AND {below}'})")
        low = bound
    out.append(f"count(*) FILTER (WHERE latency_ms > {low!r})")  # NaN too: PostgreSQL sorts it last
    return out


_PG_RAW_CELLS = (
    "count(*)",
    _pg_tokens("prompt_tokens"),
    _pg_tokens("completion_tokens"),
    "coalesce(sum(cost_usd), 0)",
    "coalesce(sum(cost_requested_usd), 0)",
    "coalesce(sum(cost_requested_usd - cost_usd), 0)",
    "coalesce(sum(cost_usd - cost_shadow_usd) FILTER (WHERE shadow_model IS NOT NULL), 0)",
    "count(*) FILTER (WHERE status >= 400 AND NOT disconnected)",
    "count(*) FILTER (WHERE disconnected)",
    "max(latency_ms)",
    *_pg_buckets(),
)
assert len(_PG_RAW_CELLS) == len(CELL_COLUMNS)


def pg_raw_select() -> str:
    """``(hour, *dimensions, *cells)`` of the records with ``created_at`` in [%s, %s)."""
    return (
        f"SELECT {_PG_HOUR}, {', '.join(_PG_DIMS)}, {', '.join(_PG_RAW_CELLS)} FROM usage "
        "WHERE created_at >= %s AND created_at < %s GROUP BY 1, 2, 3, 4, 5, 6"
    )


def _pg_derive(name: str) -> str:
    grain = GRAINS[name]
    start = _day_of("start", True) if grain.seconds == 86400 else "start"
    dims = [d if d in grain.keeps else "''" for d in DIMENSIONS]
    grouping = ", ".join((start, *grain.keeps))
    return (
        f"INSERT INTO usage_rollup ({', '.join(_COLUMNS)}) SELECT '{name}', {start}, {', '.join(dims)}, {_sums(True)} "
        f"FROM usage_rollup WHERE grain = 'hour' GROUP BY {grouping}"
    )


#: The migration's backfill: the hourly grain from the records, every other from it.
PG_BACKFILL: tuple[str, ...] = (
    f"INSERT INTO usage_rollup ({', '.join(_COLUMNS)}) SELECT 'hour', * FROM ("
    + pg_raw_select().replace("%s", str(WINDOW[0]), 1).replace("%s", str(WINDOW[1]), 1)
    + ") AS hourly",
    *(_pg_derive(name) for name in GRAINS if name != "hour"),
)
