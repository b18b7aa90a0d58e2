# Tests: tests/test_cli.py, tests/test_cli_postgres.py, tests/test_routing_report.py
"""
``dd0c-route usage``: the records, or totals per group, and what routing saved.

Without ``--group-by`` it prints every record, then totals per model and per
key, savings per key and per model when requests were routed (what the
requested model would have cost minus what was paid) or matched a shadow
rule, the models no source prices, and the grand total.  ``--group-by``
prints totals per group, from the daily rollup on PostgreSQL.  With
``--json``, one object per record (or group) per line.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any, Iterable, Optional, Sequence

from .cli_exit import EXIT_OK, Fail
from .cli_format import count, iso, money, table

__all__ = ["usage"]


def _parse_since(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Fail(
            f"--since: {text!r} is not an ISO 8601 date or time "
            "(for example 2026-03-01 or 2026-03-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def usage(store: Any, args: argparse.Namespace) -> int:
    from .ledger.records import record_to_json

    since = None if args.since is None else _parse_since(args.since)
    if args.limit is not None and args.group_by is None:
        raise Fail("--limit: only with --group-by")
    if args.limit is not None and args.limit < 1:
        raise Fail("--limit: must be at least 1")
    if args.group_by is not None:
        return _usage_groups(store, args, since)
    records = store.read_records(since)
    if args.json:
        for record in records:
            print(json.dumps(record_to_json(record), separators=(",", ":")))
        return EXIT_OK
    if not records:
        print("No usage records.")
        return EXIT_OK
    table(
        ["time", "request_id", "key_id", "model", "status", "prompt", "completion", "cost_usd", "flags", "latency_ms"],
        [
            [
                iso(r.created_at),
                r.request_id,
                r.key_id or "-",
                r.model or r.model_requested or "-",
                str(r.status),
                count(r.prompt_tokens),
                count(r.completion_tokens),
                money(r.cost_usd),
                _flags(r),
                f"{r.latency_ms:.0f}",
            ]
            for r in records
        ],
    )
    _summaries(records)
    return EXIT_OK


def _usage_groups(store: Any, args: argparse.Namespace, since: Optional[float]) -> int:
    from .ledger.groups import GROUP_FIELDS, group_records, parse_group_by

    try:
        group_by = parse_group_by(args.group_by)
    except ValueError as error:
        raise Fail(f"--group-by: {error}") from None
    if hasattr(store, "group_totals"):
        totals = store.group_totals(since, group_by, args.limit)
    else:
        totals = group_records(store.read_records(since), group_by, args.limit)
    if args.json:
        for group in totals:
            print(json.dumps(group.to_json(), separators=(",", ":")))
        return EXIT_OK
    if not totals:
        print("No usage records.")
        return EXIT_OK
    table(
        [*(GROUP_FIELDS[g] for g in group_by), "requests", "prompt_tokens", "completion_tokens",
         "cost_usd", "cost_requested_usd", "unpriced"],
        [
            [*t.values, str(t.requests), str(t.prompt_tokens), str(t.completion_tokens),
             money(t.cost_usd), money(t.cost_requested_usd), str(t.unpriced)]
            for t in totals
        ],
    )
    return EXIT_OK


def _summaries(records: Sequence[Any]) -> None:
    from .ledger.summary import by_key, by_model, summarize

    for heading, column, group in (("By model:", "model", by_model), ("By key:", "key_id", by_key)):
        print()
        print(heading)
        _totals_table(column, summarize(records, group))
    _savings(records)
    print()
    (total,) = summarize(records)
    unpriced = f" ({total.unpriced} without a price)" if total.unpriced else ""
    unpriced_models = sorted({r.model for r in records if r.cost_usd is None and r.model})
    if unpriced_models:
        print(f"Models without a price (cost_usd null): {', '.join(unpriced_models)}")
    print(
        f"Total: {total.requests} requests, {total.prompt_tokens} prompt + "
        f"{total.completion_tokens} completion tokens, ${money(total.cost_usd)}{unpriced}"
    )


def _savings(records: Sequence[Any]) -> None:
    """Savings per key and per model, when any record was routed or shadowed."""
    from .ledger.summary import by_key, by_route, savings

    if not any(
        r.shadow_model is not None or (r.model and r.model_requested and r.model != r.model_requested)
        for r in records
    ):
        return
    for heading, column, group in (
        ("Savings by key:", "key_id", by_key),
        ("Savings by model (requested->served):", "model", by_route),
    ):
        print()
        print(heading)
        table(
            [column, "requests", "routed", "cost_usd", "requested_usd", "saved_usd", "shadowed", "shadow_saved_usd"],
            [
                [
                    t.group, str(t.requests), str(t.routed), money(t.cost_usd),
                    money(t.cost_requested_usd), money(t.saved_usd), str(t.shadowed),
                    money(t.shadow_saved_usd),
                ]
                for t in savings(records, group)
            ],
        )
    (total,) = savings(records)
    print()
    print(
        f"Routing saved ${money(total.saved_usd)} on {total.routed} routed requests; "
        f"shadow rules would have saved ${money(total.shadow_saved_usd)} on {total.shadowed} more."
    )


def _totals_table(title: str, totals: Iterable[Any]) -> None:
    table(
        [title, "requests", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced"],
        [
            [t.group, str(t.requests), str(t.prompt_tokens), str(t.completion_tokens), money(t.cost_usd), str(t.unpriced)]
            for t in totals
        ],
    )


def _flags(record: Any) -> str:
    """S: streamed; D: client disconnected; L: some tokens counted locally."""
    flags = ("S" if record.stream else "") + ("D" if record.disconnected else "")
    flags += "L" if record.tokens_counted_locally else ""
    return flags or "-"
