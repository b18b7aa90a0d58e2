"""
The admin summary (``GET /admin/v1/usage/summary``) over a month of records,
from the rollup, against the raw-record query in the same run (issue #16).

Seeds ``--records`` (1M) realistic records over 30 days -- 20 keys in 5
teams (a Zipf-like share of the traffic each), 6 models of 3 providers
(each key uses 3 of them), 4 routes, a working-day traffic curve,
log-normal latencies, ~3 % errors, ~1 % disconnects -- into SQLite
(``executemany``) and PostgreSQL (``COPY``) at the schema version *before*
the rollup, then opens each ledger so its migration builds the rollup the
way it does in production (the backfill is timed).  Then times the summary
grouped by ``model``, ``day``, ``hour``, ``key,model`` and ``team`` over the
whole month and over one day, each aligned to hours and not, against the
raw query the summary used to run (SQLite: every row of the range summed in
Python; PostgreSQL: one aggregate with ``percentile_disc``), and checks
that both give the same sums.  Also the write path: ``write_records`` of
100-record batches -- on PostgreSQL with the rollup against the same store
with the rollup upsert switched off; on SQLite, whose rollup is folded
lazily (``fold_pending``), the insert alone against the insert followed by
a fold of its batch (what rolling up on the write path would cost), and
the bulk fold per record of 100, 1 000 and 10 000 pending records.  And,
since an SQLite summary first folds what is pending, the summary right
after ``FOLD_RECORDS + FOLD_CHECK`` (5 500) new records were written
without a fold (the most one writer leaves pending), those records at the
month's rate (4 hours of them).

    PYTHONPATH=. python bench/usage_summary.py                      # both stores, ~10 min
    PYTHONPATH=. python bench/usage_summary.py --stores sqlite --records 200000
    PYTHONPATH=. python bench/usage_summary.py --keep               # keep the seeded ledgers
    PYTHONPATH=. python bench/usage_summary.py --sqlite PATH --pg DSN   # reuse kept ledgers

Read the ratios (same run, same machine); absolute times on a shared
2-core machine move by tens of percent.  Results: bench/results/usage_summary-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import attrs
import psycopg

from dd0c_route.ledger import postgres as postgres_module
from dd0c_route.ledger import sqlite as sqlite_module
from dd0c_route.ledger import sqlite_rollup
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.postgres_rows import record_row
from dd0c_route.ledger.postgres_schema import COLUMN_NAMES
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.rollup_plan import SummaryBuilder
from dd0c_route.ledger.rollup_sql import segment_select
from dd0c_route.ledger.sqlite import _INSERT_USAGE, SQLiteLedger, _record_row
from dd0c_route.ledger.sqlite_rollup import FOLD_CHECK, FOLD_RECORDS, FoldSchedule
from dd0c_route.ledger.usage_query import Summary

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("DD0C_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")

MONTH = datetime(2025, 4, 1, tzinfo=UTC).timestamp()
DAYS = 30
KEYS = tuple(f"key_{i:02d}" for i in range(20))
TEAMS = ("search", "support", "growth", "infra", "research")
#: model -> (provider, USD per input token, USD per output token)
MODELS = {
    "gpt-4o": ("openai", Decimal("0.0000025"), Decimal("0.00001")),
    "gpt-4o-mini": ("openai", Decimal("0.00000015"), Decimal("0.0000006")),
    "o3-mini": ("openai", Decimal("0.0000011"), Decimal("0.0000044")),
    "claude-sonnet-4": ("anthropic", Decimal("0.000003"), Decimal("0.000015")),
    "claude-haiku-4-5": ("anthropic", Decimal("0.000001"), Decimal("0.000005")),
    "gemini-2.0-flash": ("google", Decimal("0.0000001"), Decimal("0.0000004")),
}
CHEAP = {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.0-flash"}
GROUP_BYS = (("model",), ("day",), ("hour",), ("key", "model"), ("team",))
#: (name, from, to): a month and a day, on hour boundaries and not.
RANGES = (
    ("month", MONTH, MONTH + DAYS * 86400),
    ("month-unaligned", MONTH + 3 * 3600 + 1000.25, MONTH + DAYS * 86400 - 2 * 3600 - 77.5),
    ("day", MONTH + 14 * 86400, MONTH + 15 * 86400),
    ("day-unaligned", MONTH + 14 * 86400 + 5 * 3600 + 601.5, MONTH + 15 * 86400 + 4 * 3600 + 17.0),
)
#: The most one writer leaves unfolded: what a summary may have to fold first.
PENDING = FOLD_RECORDS + FOLD_CHECK
#: Hours of the (UTC) day by traffic weight: a working day with a tail.
DIURNAL = [0.2, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.5, 2.0, 2.2, 2.2, 1.8, 2.0, 2.2, 2.1, 1.9, 1.5, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3]


def _records(n: int, seed: int = 16) -> Iterator[list[UsageRecord]]:
    """``n`` records in ``created_at`` order, 50 000 at a time."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(KEYS))]
    models = list(MODELS)
    uses = {key: rng.sample(models, 3) for key in KEYS}
    day_hours = [d * 24 + h for d in range(DAYS) for h in range(24)]
    hour_weights = [DIURNAL[h % 24] * (0.4 if (h // 24) % 7 in (5, 6) else 1.0) for h in day_hours]
    hours = rng.choices(day_hours, hour_weights, k=n)
    stamps = sorted(MONTH + h * 3600 + rng.random() * 3600 for h in hours)
    batch: list[UsageRecord] = []
    for i, created_at in enumerate(stamps):
        key = rng.choices(KEYS, weights)[0]
        model = rng.choices(uses[key], (6, 3, 1))[0]
        provider, price_in, price_out = MODELS[model]
        prompt = int(rng.lognormvariate(6.5, 1.0)) + 1
        completion = int(rng.lognormvariate(5.0, 0.8)) + 1
        route = "cheap" if model in CHEAP else ("long-context" if prompt > 8000 else "default")
        requested = "gpt-4o" if route == "cheap" else model
        shadow = "gpt-4o-mini" if route == "default" and rng.random() < 0.3 else None
        if shadow:
            route = "shadow:cheap"
        _, req_in, req_out = MODELS[requested]
        disconnected = rng.random() < 0.01
        status = 499 if disconnected else rng.choices((200, 429, 500, 400), (97, 1.5, 1, 0.5))[0]
        batch.append(
            UsageRecord(
                request_id=f"bench-{seed}-{i:08d}", key_id=key, team=TEAMS[KEYS.index(key) % len(TEAMS)],
                provider=provider, model_requested=requested, model=model, prompt_tokens=prompt,
                completion_tokens=completion, cost_usd=prompt * price_in + completion * price_out,
                cost_requested_usd=prompt * req_in + completion * req_out, status=status, stream=rng.random() < 0.6,
                disconnected=disconnected, latency_ms=round(rng.lognormvariate(6.6, 0.9), 3), created_at=created_at,
                route_rule=route, shadow_model=shadow,
                cost_shadow_usd=prompt * Decimal("0.00000015") + completion * Decimal("0.0000006") if shadow else None,
            )
        )
        if len(batch) == 50_000:
            yield batch
            batch = []
    if batch:
        yield batch


# -- seeding: raw records at the schema before the rollup, then the migration -------


def _seed_sqlite(path: str, n: int) -> float:
    """Seed, then open (migrating: the backfill); returns the backfill's seconds."""
    SQLiteLedger(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE usage_rollup")
    conn.execute("DROP TABLE usage_rollup_mark")
    conn.execute(f"PRAGMA user_version = {sqlite_module._MIGRATIONS.index(sqlite_rollup.BACKFILL)}")
    for batch in _records(n):
        conn.execute("BEGIN")
        conn.executemany(_INSERT_USAGE, [_record_row(r) for r in batch])
        conn.execute("COMMIT")
    conn.close()
    start = time.perf_counter()
    SQLiteLedger(path).close()
    return time.perf_counter() - start


def _seed_postgres(dsn: str, n: int) -> float:
    PostgresLedger(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE usage_rollup")
        conn.execute("UPDATE dd0c_schema SET version = version - 1")
        for batch in _records(n):
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY usage ({', '.join(COLUMN_NAMES)}) FROM STDIN") as copy:  # type: ignore[arg-type]
                    for record in batch:
                        copy.write_row(record_row(record))
        conn.execute("VACUUM ANALYZE usage")
    start = time.perf_counter()
    PostgresLedger(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE usage_rollup")
    return time.perf_counter() - start


# -- the baselines: what the summary ran before the rollup -----------------------

_RAW_COLUMNS = (
    "created_at", "key_id", "team", "provider", "model", "model_requested", "route_rule", "prompt_tokens",
    "completion_tokens", "cost_usd", "cost_requested_usd", "shadow_model", "cost_shadow_usd", "status",
    "disconnected", "latency_ms",
)


def _value(name: str, row: dict[str, Any]) -> str:
    if name in ("day", "hour"):
        return datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%d" if name == "day" else "%Y-%m-%dT%H:00Z")
    if name == "model":
        return row["model"] or row["model_requested"] or "-"
    return row[{"key": "key_id", "route": "route_rule"}.get(name, name)] or "-"


def sqlite_raw(store: SQLiteLedger, start: float, end: float, group_by: Sequence[str]) -> dict[tuple[str, ...], list[Any]]:
    """The former SQLite summary: every row of the range, summed in Python, exact percentiles."""
    with store._lock:
        rows = store._conn.execute(
            f"SELECT {', '.join(_RAW_COLUMNS)} FROM usage WHERE created_at >= ? AND created_at < ?", (start, end)
        ).fetchall()
    groups: dict[tuple[str, ...], list[Any]] = {}
    for raw in rows:
        row = dict(zip(_RAW_COLUMNS, raw, strict=True))
        cost = None if row["cost_usd"] is None else Decimal(row["cost_usd"])
        requested = None if row["cost_requested_usd"] is None else Decimal(row["cost_requested_usd"])
        acc = groups.setdefault(tuple(_value(g, row) for g in group_by), [0, 0, 0, Decimal(0), Decimal(0), []])
        acc[0] += 1
        acc[1] += row["prompt_tokens"] or 0
        acc[2] += row["completion_tokens"] or 0
        acc[3] += cost or 0
        acc[4] += requested or 0
        acc[5].append(row["latency_ms"])
    for acc in groups.values():
        latencies = sorted(acc.pop())
        acc.append(latencies[max(1, math.ceil(0.95 * len(latencies))) - 1])
    return groups


_PG_GROUP = {
    "day": "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "hour": "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00Z\"')",
    "model": "coalesce(nullif(model, ''), nullif(model_requested, ''), '-')",
    "provider": "coalesce(nullif(provider, ''), '-')",
    "key": "coalesce(nullif(key_id, ''), '-')",
    "team": "coalesce(nullif(team, ''), '-')",
    "route": "coalesce(nullif(route_rule, ''), '-')",
}
_PG_AGGREGATES = (
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0), "
    "coalesce(sum(cost_requested_usd), 0), coalesce(sum(cost_requested_usd - cost_usd), 0), "
    "coalesce(sum(cost_usd - cost_shadow_usd) FILTER (WHERE shadow_model IS NOT NULL), 0), "
    "count(*) FILTER (WHERE status >= 400 AND NOT disconnected), count(*) FILTER (WHERE disconnected), "
    "percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms), percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms)"
)


def postgres_raw(store: PostgresLedger, start: float, end: float, group_by: Sequence[str]) -> dict[tuple[str, ...], list[Any]]:
    """The former PostgreSQL summary: the groups and the totals as two aggregates over the records."""
    n = len(group_by)
    where = " FROM usage WHERE created_at >= %s AND created_at < %s"
    with store._transaction() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(_PG_GROUP[g] for g in group_by)}, {_PG_AGGREGATES}{where} "  # type: ignore[call-overload]
            f"GROUP BY {', '.join(str(i + 1) for i in range(n))}", (start, end),
        ).fetchall()
        conn.execute(f"SELECT {_PG_AGGREGATES}{where}", (start, end)).fetchone()  # type: ignore[call-overload]
    return {tuple(r[:n]): [int(r[n]), int(r[n + 1]), int(r[n + 2]), r[n + 3], r[n + 4], r[n + 10]] for r in rows}


def hourly_only(store: Any, start: float, end: float, group_by: Sequence[str]) -> Summary:
    """The month from the full hourly grain alone: what one ``usage_hourly`` table would read (the ablation)."""
    built = SummaryBuilder(tuple(group_by))
    if isinstance(store, SQLiteLedger):
        with store._lock:
            rows = store._conn.execute(segment_select("sqlite", "hour", group_by), ("hour", start, end)).fetchall()
    else:
        with store._transaction() as conn:
            rows = conn.execute(segment_select("postgres", "hour", group_by), ("hour", start, end)).fetchall()  # type: ignore[call-overload]
    for row in rows:
        built.add_segment_row(row)
    return built.summary()


def _grains(store: Any) -> dict[str, int]:
    sql = "SELECT grain, count(*) FROM usage_rollup GROUP BY grain"
    if isinstance(store, SQLiteLedger):
        with store._lock:
            return dict(store._conn.execute(sql).fetchall())
    with store._transaction() as conn:
        return dict(conn.execute(sql).fetchall())


def _sums(summary: Summary) -> dict[tuple[str, ...], list[Any]]:
    return {
        row.values: [row.requests, row.prompt_tokens, row.completion_tokens, row.cost_usd, row.cost_requested_usd]
        for row in summary.groups
    }


# -- timing ------------------------------------------------------------------


def _time(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


def _fresh(n: int, start: float, span: float) -> list[UsageRecord]:
    """``n`` new records (new request ids) spread evenly over ``[start, start + span)``."""
    records = next(iter(_records(n, seed=secrets.randbelow(10**9))))
    return [attrs.evolve(r, created_at=start + j * span / n) for j, r in enumerate(records)]


def _write_cost(store: Any, store_name: str, batches: int = 30, size: int = 100) -> dict[str, float]:
    """
    ms per batch of ``size`` new records finished within the same second (as
    the writer's batches are), alternating batch by batch (same store, same
    run): PostgreSQL with the rollup and with its upsert switched off;
    SQLite the insert alone and the insert followed by folding the batch.
    """
    when = MONTH + 20 * 86400 + 11 * 3600 + 0.5
    records = _fresh(batches * size * 2, when, batches * 2)
    labels = ("with_rollup", "without_rollup") if store_name == "postgres" else ("insert_and_fold", "insert")
    real = postgres_module.fold_rows
    out: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(batches * 2):
        batch = records[i * size:(i + 1) * size]
        label = labels[i % 2]
        if store_name == "postgres" and label == "without_rollup":
            postgres_module.fold_rows = lambda *a: []  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            store.write_records(batch)
            if label == "insert_and_fold":
                store.fold_rollup()
            out[label].append((time.perf_counter() - start) * 1000)
        finally:
            postgres_module.fold_rows = real
    return {label: statistics.median(samples) for label, samples in out.items()}


def _fold_cost(store: SQLiteLedger, repeat: int = 3) -> dict[str, float]:
    """
    µs per record of the SQLite bulk fold of 100, 1 000 and 10 000 pending
    records: at the month's rate (1 400 an hour) and all within 10 s (a
    writer's interval at 1 000 records a second).
    """
    out = {}
    when = MONTH + 21 * 86400
    for n in (100, 1_000, 10_000):
        for rate, span in (("month_rate", n * 3600 / 1400), ("within_10s", 10.0)):
            samples = []
            for _ in range(repeat):
                store.write_records(_fresh(n, when, span))
                when += 86400 / 8
                start = time.perf_counter()
                folded = store.fold_rollup()
                samples.append((time.perf_counter() - start) * 1e6 / folded)
            out[f"{n}_{rate}_us_per_record"] = statistics.median(samples)
    return out


def _pending_summaries(store: SQLiteLedger, repeat: int) -> list[dict[str, Any]]:
    """
    The SQLite summary (month ranges) right after :data:`PENDING` new
    records were written unfolded, at the month's rate (4 hours of them):
    its fold included, and the fold alone.  Each sample writes its own
    records into the next 4 hours from day 2 on, so no hour grows far past
    the month's density (nor the unaligned month's edge hours).
    """
    rows = []
    windows = iter(range(int(MONTH) + 86400, int(MONTH) + (DAYS - 1) * 86400, 4 * 3600))
    for group_by in GROUP_BYS:
        for label, start, stop in RANGES[:2]:
            totals, folds = [], []
            for _ in range(repeat):
                store.write_records(_fresh(PENDING, next(windows), 4 * 3600))
                begin = time.perf_counter()
                store.usage_summary(start, stop, group_by)
                totals.append((time.perf_counter() - begin) * 1000)
                store.write_records(_fresh(PENDING, next(windows), 4 * 3600))
                begin = time.perf_counter()
                store.fold_rollup()
                folds.append((time.perf_counter() - begin) * 1000)
            row = {
                "group_by": ",".join(group_by), "range": label, "pending": PENDING,
                "summary_with_fold_ms": statistics.median(totals), "summary_with_fold_max_ms": max(totals),
                "fold_alone_ms": statistics.median(folds),
            }
            rows.append(row)
            print(
                f"sqlite   {row['group_by']:10} {label:16} after {PENDING} unfolded records: "
                f"summary={row['summary_with_fold_ms']:7.1f} ms (max {row['summary_with_fold_max_ms']:.1f}), "
                f"of which the fold ~{row['fold_alone_ms']:.1f} ms",
                flush=True,
            )
    return rows


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(), "load": os.getloadavg(), "when": datetime.now(UTC).isoformat(),
    }


def _run_store(name: str, store: Any, raw: Callable[..., Any], repeat: int, raw_repeat: int) -> list[dict[str, Any]]:
    rows = []
    for group_by in GROUP_BYS:
        for label, start, end in RANGES:
            samples, summary = _time(lambda: store.usage_summary(start, end, group_by), repeat)  # noqa: B023
            raw_samples, baseline = _time(lambda: raw(store, start, end, group_by), raw_repeat)  # noqa: B023
            same = _sums(summary) == {k: v[:5] for k, v in baseline.items()}
            hourly: list[float] = []
            if label == "month":
                hourly, alone = _time(lambda: hourly_only(store, start, end, group_by), repeat)  # noqa: B023
                same = same and alone.to_json() == summary.to_json()
            row = {
                "store": name, "group_by": ",".join(group_by), "range": label, "groups": len(summary.groups),
                "rollup_ms": statistics.median(samples), "rollup_min_ms": min(samples),
                "raw_ms": statistics.median(raw_samples), "ratio": statistics.median(raw_samples) / statistics.median(samples),
                "same_sums": same, "hourly_only_ms": statistics.median(hourly) if hourly else None,
            }
            rows.append(row)
            print(
                f"{name:8} {row['group_by']:10} {label:16} groups={row['groups']:6} rollup={row['rollup_ms']:8.1f} ms "
                f"(min {row['rollup_min_ms']:.1f})  raw={row['raw_ms']:9.1f} ms  raw/rollup={row['ratio']:7.1f}x"
                + (f"  hourly grain alone={row['hourly_only_ms']:7.1f} ms" if hourly else "")
                + ("" if same else "  SUMS DIFFER"),
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each rollup summary (median reported)")
    parser.add_argument("--raw-repeat", type=int, default=1, help="timed runs of each raw baseline")
    parser.add_argument("--pending-repeat", type=int, default=3, help="samples of each summary after PENDING unfolded records")
    parser.add_argument("--keep", action="store_true", help="keep the seeded ledgers (printed) for --sqlite/--pg")
    parser.add_argument("--sqlite", help="an already seeded SQLite ledger to reuse")
    parser.add_argument("--pg", help="an already seeded PostgreSQL database (libpq string) to reuse")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": _machine(), "records": args.records, "rows": [], "backfill_s": {}, "write_ms": {}}
    for name in args.stores.split(","):
        if name == "sqlite":
            path = args.sqlite or os.path.join(tempfile.mkdtemp(prefix="dd0c-bench-summary-"), "ledger.sqlite3")
            if not args.sqlite:
                results["backfill_s"][name] = _seed_sqlite(path, args.records)
                print(f"sqlite: seeded {args.records} records at {path}, backfill {results['backfill_s'][name]:.1f} s")
            # Only the bench folds: writes leave their records pending.
            store: Any = SQLiteLedger(path, fold_schedule=FoldSchedule(records=2**62))
            raw: Callable[..., Any] = sqlite_raw
        else:
            dsn = args.pg
            if not dsn:
                db = "dd0c_bench_" + secrets.token_hex(4)
                with psycopg.connect(SERVER, autocommit=True) as admin:
                    admin.execute(f"CREATE DATABASE {db}")  # type: ignore[call-overload]
                params = psycopg.conninfo.conninfo_to_dict(SERVER)
                params["dbname"] = db
                dsn = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
                results["backfill_s"][name] = _seed_postgres(dsn, args.records)
                print(f"postgres: seeded {args.records} records in {dsn!r}, backfill {results['backfill_s'][name]:.1f} s")
            store = PostgresLedger(dsn)
            raw = postgres_raw
        try:
            results["rows"] += _run_store(name, store, raw, args.repeat, args.raw_repeat)
            results.setdefault("grains", {})[name] = _grains(store)
            print(f"{name}: rollup rows per grain {results['grains'][name]}")
            results["write_ms"][name] = _write_cost(store, name)
            print(f"{name}: write_records of 100 new records: {results['write_ms'][name]}")
            if name == "sqlite":
                results["fold_us"] = _fold_cost(store)
                print(f"sqlite: bulk fold: {results['fold_us']}")
                results["pending_rows"] = _pending_summaries(store, args.pending_repeat)
        finally:
            store.close()
            if name == "postgres" and not args.pg and not args.keep:
                with psycopg.connect(SERVER, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")  # type: ignore[call-overload]
            if name == "sqlite" and not args.sqlite and not args.keep:
                shutil.rmtree(os.path.dirname(path))
    out = ROOT / "bench" / "results" / f"usage_summary-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    slow = [r for r in results["rows"] if r["rollup_ms"] >= 200]
    slow += [r for r in results.get("pending_rows", []) if r["summary_with_fold_ms"] >= 200]
    differ = [r for r in results["rows"] if not r["same_sums"]]
    print(f"results: {out}; {len(slow)} summaries at or over 200 ms; {len(differ)} with sums unlike the raw query")
    return 1 if slow or differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
