# Tests: tests/test_postgres.py, tests/test_usage_rollup.py
"""
Between the PostgreSQL ledger's rows and the ledger's values: records and
keys as statement parameters and back, and what a batch of new records
adds to the daily rollup.  Pure functions, no database.

PostgreSQL text cannot hold NUL, so a NUL in a string field is stored as
U+FFFD rather than failing the whole batch forever.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from .groups import GroupTotals, group_values, merge, totals_of
from .interfaces import KeyInfo
from .postgres_schema import COLUMN_NAMES, ROLLUP_GROUPS
from .records import UsageRecord
from .rollup import TOKEN_LIMIT

__all__ = ["clean", "key_row", "record_row", "rollup_deltas", "row_key", "row_record"]


def clean(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def record_row(record: UsageRecord) -> list[Any]:
    return [clean(getattr(record, name)) for name in COLUMN_NAMES]


def row_record(row: Sequence[Any]) -> UsageRecord:
    return UsageRecord(**dict(zip(COLUMN_NAMES, row, strict=True)))


def row_key(row: Sequence[Any]) -> KeyInfo:
    key_id, name, key_hash, created_at, team, revoked_at, admin, daily, monthly, rpm, tpm = row
    return KeyInfo(
        key_id=key_id, name=name, key_hash=key_hash, created_at=created_at, team=team, revoked_at=revoked_at,
        admin=bool(admin), daily_usd=daily, monthly_usd=monthly, requests_per_minute=rpm, tokens_per_minute=tpm,
    )


def key_row(info: KeyInfo) -> tuple[Any, ...]:
    return (
        info.key_id, info.name, info.key_hash, info.created_at, info.team, info.revoked_at, info.admin,
        info.daily_usd, info.monthly_usd, info.requests_per_minute, info.tokens_per_minute,
    )


def rollup_deltas(records: Sequence[UsageRecord]) -> list[GroupTotals]:
    """What the new records add to each rollup row, in primary-key order."""
    parts = []
    for record in records:
        values = group_values(record, ROLLUP_GROUPS)
        if values[0] == "-":
            # A timestamp outside the calendar: counted on day 1970-01-01.
            values = ("1970-01-01", *values[1:])
        part = totals_of(record, ROLLUP_GROUPS, values)
        if abs(part.prompt_tokens) > TOKEN_LIMIT or abs(part.completion_tokens) > TOKEN_LIMIT:
            # A misbehaving upstream's token count: clamped as in ledger/rollup.py, so
            # that no bigint sum overflows and fails the batch forever.
            clamp = lambda n: max(-TOKEN_LIMIT, min(TOKEN_LIMIT, n))  # noqa: E731
            part = attrs.evolve(part, prompt_tokens=clamp(part.prompt_tokens), completion_tokens=clamp(part.completion_tokens))
        parts.append(part)
    # One lock order for every writer: no deadlock between instances.
    return sorted(merge(parts), key=lambda t: t.values)
