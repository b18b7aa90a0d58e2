"""
The admin summary's rollup (ledger/rollup.py, rollup_plan.py, rollup_sql.py,
sqlite_rollup.py) on SQLite and on a real PostgreSQL: every summary field,
for every group_by (one name and every pair) and for ranges on and off hour
and day boundaries, equals what the test computes from the seeded records
itself (percentiles with the documented bucket semantics); replays and
duplicates count once; on PostgreSQL a failed rollup write takes the
records with it; the migration's backfill builds exactly the rollup the
writers (PostgreSQL) or the fold (SQLite) build; both stores give the same
JSON; Hypothesis compares random records and ranges with the raw
definition.  SQLite's lazy fold itself: tests/test_rollup_fold.py.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from collections import defaultdict
from decimal import Context, Decimal, localcontext
from itertools import pairwise, permutations
from typing import Any

import attrs
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.ledger import postgres as postgres_module
from dd0c_route.ledger import sqlite_rollup
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.rollup import LATENCY_BOUNDS_MS, TOKEN_LIMIT, fold_hourly, histogram_rank
from dd0c_route.ledger.rollup_plan import hour_grain, plan
from dd0c_route.ledger.rollup_sql import PG_BACKFILL, PG_TABLE
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.ledger.sqlite_rollup import BACKFILL
from dd0c_route.ledger.usage_query import SUMMARY_FIELDS, SUMMARY_GROUPS

from .pg import create_database
from .test_admin_api import as_answer, bucketed, expected_totals, group_value

T0 = 1741564800.0  # 2025-03-10T00:00:00Z
HOUR, DAY = 3600.0, 86400.0
GROUP_BYS = tuple((g,) for g in SUMMARY_GROUPS) + tuple(permutations(SUMMARY_GROUPS, 2))
#: Ranges on and off hour and day boundaries, inside one hour, across one boundary, empty.
RANGES = (
    (T0, T0 + 3 * DAY),
    (T0 - DAY, T0 + 5 * DAY),
    (T0 + DAY, T0 + 2 * DAY),
    (T0 + 5 * HOUR + 17 * 60 + 0.25, T0 + DAY + 19 * HOUR + 42 * 60 + 30.5),
    (T0 + 2 * HOUR + 1, T0 + 2 * DAY + 3 * HOUR - 1),
    (T0 + 7 * HOUR + 100, T0 + 7 * HOUR + 3000),
    (T0 + 7 * HOUR + 3000, T0 + 8 * HOUR + 100),
    (T0 + 23 * HOUR + 1800, T0 + DAY + HOUR + 1800),
    (T0 + 10 * DAY, T0 + 11 * DAY),
)


def seeded(n: int = 420) -> list[UsageRecord]:
    """Records over three days: every dimension sometimes missing or empty, latencies on and beside bucket bounds."""
    out = []
    for i in range(n):
        latency = (LATENCY_BOUNDS_MS[i % len(LATENCY_BOUNDS_MS)] if i % 3 == 0
                   else float((i * 7919) % 90_000) / 7 + 0.01 * (i % 5))
        out.append(UsageRecord(
            request_id=f"roll-{i:05d}",
            key_id=(None, "", "key_a", "key_b", "key_c")[i % 5],
            team=(None, "red", "blue", "")[i % 4],
            provider=(None, "openai", "anthropic")[i % 3],
            model_requested=("gpt-4o", None, "claude-haiku-4-5", "")[i % 4],
            model=(None, "gpt-4o-mini", "claude-haiku-4-5", "gpt-4o", "")[i % 5],
            endpoint="/v1/chat/completions",
            prompt_tokens=None if i % 17 == 0 else 100 + 37 * i,
            completion_tokens=None if i % 19 == 0 else 20 + (i * 13) % 400,
            cost_usd=None if i % 23 == 0 else Decimal(f"0.000{i:03d}5") * (i % 7 + 1),
            cost_requested_usd=None if i % 29 == 0 else Decimal(f"0.00{i:03d}25"),
            shadow_model=("gpt-4o-mini" if i % 6 == 0 else "" if i % 31 == 0 else None),
            cost_shadow_usd=None if i % 4 == 0 else Decimal(f"0.0000{i:03d}"),
            status=(200, 400, 200, 429, 500, 200, 499)[i % 7],
            disconnected=i % 9 == 4,
            latency_ms=latency,
            # Spread over three days, some exactly on an hour boundary, some just before one.
            created_at=(T0 + (i // 3) * HOUR if i % 10 == 0
                        else math.nextafter(T0 + (i % 72) * HOUR, 0) if i % 10 == 1
                        else T0 + i * (3 * DAY / n) + 0.125),
            route_rule=(None, "default", "cheap", "shadow:cheap", "")[i % 5],
        ))
    return out


def expected(records: list[UsageRecord], start: float, end: float, group_by: tuple[str, ...]) -> dict[str, Any]:
    """The summary as the definition says, from the records: groups by values, and the totals."""
    inside = [r for r in records if start <= r.created_at < end]
    groups: dict[tuple[str, ...], list[UsageRecord]] = defaultdict(list)
    for r in inside:
        groups[tuple(group_value(g, r) for g in group_by)].append(r)
    return {
        "groups": {values: expected_totals(rs) for values, rs in groups.items()},
        "totals": expected_totals(inside),
    }


def answered(store: Any, start: float, end: float, group_by: tuple[str, ...]) -> dict[str, Any]:
    summary = store.usage_summary(start, end, group_by).to_json()
    groups = {}
    for row in summary["groups"]:
        values = tuple(row.pop(SUMMARY_FIELDS[g]) for g in group_by)
        assert values not in groups, values
        groups[values] = as_answer(row)
    return {"groups": groups, "totals": as_answer(summary["totals"])}


class PlanTests(SynchronousTestCase):
    """The planner: segments partition the range, edges come from the records, the rest from aligned grains."""

    @settings(max_examples=300, deadline=None)
    @given(
        start=st.floats(T0 - 3 * DAY, T0 + 3 * DAY) | st.integers(-72, 72).map(lambda h: T0 + h * HOUR),
        length=st.floats(0.001, 40 * DAY) | st.integers(1, 960).map(lambda h: h * HOUR),
        group_by=st.sampled_from(GROUP_BYS),
    )
    def test_segments_partition_the_range(self, start: float, length: float, group_by: tuple[str, ...]) -> None:
        """Contiguous from start to end; no whole hour read raw; grains aligned, daily only without hour."""
        end = start + length
        segments = plan(start, end, group_by)
        assert segments[0].lo == start and segments[-1].hi == end
        for a, b in pairwise(segments):
            assert a.hi == b.lo and a.lo < a.hi
        for s in segments:
            if s.grain is None:
                assert math.ceil(s.lo / HOUR) * HOUR + HOUR > s.hi  # no whole hour read from the records
            else:
                step = DAY if s.grain == "day" else HOUR
                assert s.lo % step == 0 and s.hi % step == 0
                assert s.grain in ("day", hour_grain(group_by))
                assert not (s.grain == "day" and "hour" in group_by)
        assert sum(1 for s in segments if s.grain is None) <= 2

    def test_hour_grain_keeps_what_is_grouped(self) -> None:
        """Two dimensions: the full hourly grain; one: that dimension's; none: the total."""
        assert hour_grain(("key", "model")) == "hour"
        assert hour_grain(("day", "team")) == "hour:team"
        assert hour_grain(("key",)) == "hour:key"
        assert hour_grain(("hour",)) == hour_grain(("day", "hour")) == "hour:total"

    def test_out_of_calendar_range_is_clamped(self) -> None:
        """Nothing outside years 1-9999 is planned; an empty range has no segment."""
        assert plan(-1e300, -1e299, ("day",)) == []
        assert plan(T0, T0, ("day",)) == []
        assert plan(-1e300, 1e300, ("day",))[0].lo == -62_135_596_800


class HistogramTests(SynchronousTestCase):
    """Percentiles from the summed histogram equal the bucket of the raw nearest rank, capped at the max."""

    def test_bounds(self) -> None:
        """30-45 increasing bounds from under 1 ms to 10 minutes, at most x1.5 apart."""
        assert 30 <= len(LATENCY_BOUNDS_MS) <= 45
        assert LATENCY_BOUNDS_MS[0] < 1 and LATENCY_BOUNDS_MS[-1] == 600_000
        assert all(b / a <= 1.5 for a, b in pairwise(LATENCY_BOUNDS_MS))

    @settings(max_examples=300, deadline=None)
    @given(
        latencies=st.lists(
            st.floats(-5, 2_000_000) | st.sampled_from(LATENCY_BOUNDS_MS)
            | st.sampled_from(LATENCY_BOUNDS_MS).map(lambda b: math.nextafter(b, math.inf)),
            min_size=1, max_size=60,
        ),
        fraction=st.sampled_from((0.5, 0.95)) | st.floats(0, 1),
    )
    def test_rank(self, latencies: list[float], fraction: float) -> None:
        """For any latencies and fraction (bounds themselves and just above them included)."""
        rows = [(T0, "k", "t", "p", "m", None, "r", 1, 1, None, None, None, None, 200, False, v) for v in latencies]
        [cells] = fold_hourly(rows).values()
        ordered = sorted(latencies)
        raw = ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
        assert histogram_rank(cells, fraction) == bucketed(raw, ordered[-1])

    def test_empty_group_has_no_percentile(self) -> None:
        assert histogram_rank([0] * 60, 0.5) is None


class _StoreTests:
    kind = "sqlite"

    def open(self) -> Any:
        if self.kind == "sqlite":
            store: Any = SQLiteLedger(tempfile.mkdtemp(prefix="dd0c-rollup-") + "/ledger.sqlite3")
        else:
            store = PostgresLedger(create_database(self))
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        return store

    def rollup_rows(self, store: Any, fold: bool = True) -> list[tuple[Any, ...]]:
        """Every rollup row, money as Decimal, in key order (on SQLite after folding every record, unless not ``fold``)."""
        if self.kind == "sqlite":
            if fold:
                store.fold_rollup()
            with store._lock:
                rows = store._conn.execute("SELECT * FROM usage_rollup ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()
        else:
            with store._transaction() as conn:
                rows = conn.execute("SELECT * FROM usage_rollup ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()
        return [tuple(Decimal(v) if isinstance(v, str) and i in (10, 11, 12, 13) else v for i, v in enumerate(r)) for r in rows]

    def rebuild_by_backfill(self, store: Any) -> None:
        """Drop the rollup and run the migration step that makes and fills it (records kept)."""
        if self.kind == "sqlite":
            def rebuild(conn: Any) -> None:
                conn.execute("DROP TABLE usage_rollup")
                conn.execute("DROP TABLE usage_rollup_mark")
                for step in (*BACKFILL, *sqlite_rollup.MARK):
                    step(conn) if callable(step) else conn.execute(step)

            store._write(rebuild)
        else:
            with store._transaction() as conn:
                conn.execute("DROP TABLE usage_rollup")
                for statement in (PG_TABLE, *PG_BACKFILL):
                    conn.execute(statement)

    def reopen(self, store: Any) -> Any:
        store.close()
        again: Any = SQLiteLedger(store.path) if self.kind == "sqlite" else PostgresLedger(store.conninfo)
        self.addCleanup(again.close)  # type: ignore[attr-defined]
        return again

    def check(self, store: Any, records: list[UsageRecord], ranges: Any = RANGES, group_bys: Any = GROUP_BYS) -> None:
        for start, end in ranges:
            for group_by in group_bys:
                self.assertEqual(  # type: ignore[attr-defined]
                    answered(store, start, end, group_by), expected(records, start, end, group_by), (group_by, start, end)
                )

    def test_every_group_by_and_range_equals_the_records(self) -> None:
        """Every field, every group_by and pair, aligned and unaligned ranges: as computed from the records."""
        store = self.open()
        records = seeded()
        store.write_records(records[:150])
        store.write_records(records[150:])
        self.check(store, records)

    def test_replays_and_duplicates_count_once(self) -> None:
        """Overlapping batches, a batch repeating a record, and the whole set again add nothing twice."""
        store = self.open()
        records = seeded(200)
        store.write_records(records[:120])
        store.write_records(records[80:] + records[80:90])
        store.write_records(records)
        # The same request id with other figures (a replay of an older copy) is still the first one.
        store.write_records([attrs.evolve(r, cost_usd=Decimal(99), latency_ms=1.0) for r in records[:50]])
        self.check(store, records, group_bys=(("model",), ("hour", "key"), ("day", "route")))
        hourly = [r for r in self.rollup_rows(store) if r[0] == "hour:total"]
        self.assertEqual(sum(r[7] for r in hourly), len(records))  # type: ignore[attr-defined]

    def test_backfill_builds_the_writers_rollup(self) -> None:
        """A ledger from before the rollup migrates to exactly the rows the writers made, and the same answers."""
        store = self.open()
        records = seeded()
        for i in range(0, len(records), 70):
            store.write_records(records[i:i + 70])
        written = self.rollup_rows(store)
        self.rebuild_by_backfill(store)
        self.assertEqual(self.rollup_rows(store), written)  # type: ignore[attr-defined]
        self.check(store, records, group_bys=(("model",), ("day", "key"), ("hour", "provider"), ("team", "route")))

    def test_extreme_values_never_fail_a_batch(self) -> None:
        """Huge token counts, dates outside the calendar, huge or negative latencies and 40-digit money: stored, summed exactly."""
        store = self.open()
        money = Decimal("123456789012345678901.1234567890123456789")
        records = [
            UsageRecord(request_id="x1", endpoint="e", prompt_tokens=2**62, completion_tokens=-(2**62), created_at=T0,
                        latency_ms=1e308, cost_usd=money, cost_requested_usd=money),
            UsageRecord(request_id="x2", endpoint="e", prompt_tokens=2**62, created_at=T0 + 1, latency_ms=-3.0,
                        cost_usd=money, cost_requested_usd=Decimal("1E-30")),
            UsageRecord(request_id="x3", endpoint="e", created_at=1e300, latency_ms=1.0),
            UsageRecord(request_id="x4", endpoint="e", created_at=-1e300, latency_ms=1.0),
        ]
        store.write_records(records)
        [row] = store.usage_summary(T0, T0 + HOUR, ("model",)).groups
        with localcontext(Context(prec=100)):
            sums = (2, 2 * TOKEN_LIMIT, -TOKEN_LIMIT, 2 * money, money + Decimal("1E-30"))
        self.assertEqual(  # type: ignore[attr-defined]
            (row.requests, row.prompt_tokens, row.completion_tokens, row.cost_usd, row.cost_requested_usd), sums
        )
        self.assertEqual((row.latency_p50_ms, row.latency_p95_ms), (0.5, 1e308))  # type: ignore[attr-defined]
        self.assertEqual(store.usage_summary(-1e300, 1e300, ("day",)).totals.requests, 2)  # type: ignore[attr-defined]

    def hypothesis_store(self) -> Any:
        if self.kind == "sqlite":
            store = SQLiteLedger(":memory:")
            self.addCleanup(store.close)  # type: ignore[attr-defined]
            return store
        if not hasattr(self, "_pg"):
            self._pg = self.open()
        with self._pg._transaction() as conn:
            conn.execute("TRUNCATE usage, usage_daily, usage_rollup")
        return self._pg


_instants = (
    st.floats(T0 - HOUR, T0 + 3 * DAY)
    | st.integers(-1, 72).map(lambda h: T0 + h * HOUR)
    | st.integers(0, 72).map(lambda h: math.nextafter(T0 + h * HOUR, 0))
)
_money = st.none() | st.decimals(min_value=-1, max_value=10, places=3) | st.decimals(min_value=0, max_value=1, places=12)
_records = st.builds(
    UsageRecord,
    request_id=st.just(""),
    endpoint=st.just("/v1/chat/completions"),
    key_id=st.sampled_from((None, "", "k1", "k2")),
    team=st.sampled_from((None, "", "t1")),
    provider=st.sampled_from((None, "", "openai", "anthropic")),
    model_requested=st.sampled_from((None, "", "m1", "m2")),
    model=st.sampled_from((None, "", "m1", "m3")),
    route_rule=st.sampled_from((None, "", "default", "cheap")),
    prompt_tokens=st.none() | st.integers(0, 10**7),
    completion_tokens=st.none() | st.integers(0, 10**6),
    cost_usd=_money,
    cost_requested_usd=_money,
    shadow_model=st.sampled_from((None, "", "m2")),
    cost_shadow_usd=_money,
    status=st.sampled_from((200, 399, 400, 429, 499, 500)),
    disconnected=st.booleans(),
    latency_ms=st.floats(0, 700_000) | st.sampled_from(LATENCY_BOUNDS_MS),
    created_at=_instants,
)


def _random_records_test() -> Any:
    """A fresh Hypothesis test per store class (one function per executor, so replays stay per store)."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def test_random_records_and_ranges_equal_the_definition(self: Any, data: st.DataObject) -> None:
        """Hypothesis: random records written in random batches, random ranges and group_by: as the raw definition says."""
        store = self.hypothesis_store()
        records = data.draw(st.lists(_records, min_size=0, max_size=40))
        records = [attrs.evolve(r, request_id=f"h-{i}") for i, r in enumerate(records)]
        cut = data.draw(st.integers(0, len(records)))
        store.write_records(records[:cut])
        store.write_records(records[max(0, cut - 3):])
        for _ in range(3):
            start = data.draw(_instants)
            end = start + data.draw(st.floats(0.001, 4 * DAY) | st.integers(1, 96).map(lambda h: h * HOUR))
            group_by = data.draw(st.sampled_from(GROUP_BYS))
            self.assertEqual(answered(store, start, end, group_by), expected(records, start, end, group_by))

    return test_random_records_and_ranges_equal_the_definition


class SQLiteRollupTests(_StoreTests, SynchronousTestCase):
    kind = "sqlite"
    test_random_records_and_ranges_equal_the_definition = _random_records_test()

    def test_money_functions_are_exact(self) -> None:
        """dec_add and dec_sum add decimal text exactly, past the 28 digits of Python's default context."""
        conn = sqlite3.connect(":memory:")
        sqlite_rollup.register_exact(conn)
        a, b = "12345678901234567890.123456789012345678", "0.000000000000000000001"
        self.assertEqual(
            Decimal(conn.execute("SELECT dec_add(?, ?)", (a, b)).fetchone()[0]),
            Decimal("12345678901234567890.123456789012345678001"),
        )
        conn.execute("CREATE TABLE m (v TEXT)")
        conn.executemany("INSERT INTO m VALUES (?)", [(a,), (b,), ("-1E-40",)])
        self.assertEqual(
            Decimal(conn.execute("SELECT dec_sum(v) FROM m").fetchone()[0]),
            Decimal("12345678901234567890.1234567890123456780009999999999999999999"),
        )


class PostgresRollupTests(_StoreTests, SynchronousTestCase):
    kind = "postgres"
    test_random_records_and_ranges_equal_the_definition = _random_records_test()

    def test_failed_rollup_write_takes_the_records_with_it(self) -> None:
        """The rollup is written in the records' transaction: when it fails, neither is stored; the retry counts once."""
        store = self.open()
        records = seeded(60)
        real = postgres_module._ROLLUP_UPSERT
        postgres_module._ROLLUP_UPSERT = "INSERT INTO no_such_table VALUES (1)"  # type: ignore[assignment]
        try:
            with self.assertRaises(psycopg.Error):
                store.write_records(records)
        finally:
            postgres_module._ROLLUP_UPSERT = real
        self.assertEqual(store.read_records(), [])
        store.write_records(records)
        self.check(store, records, group_bys=(("team",), ("hour",)))

    def test_same_json_as_sqlite(self) -> None:
        """The same records give the same answer, byte for byte, on both stores."""
        records = seeded()
        pg = self.open()
        pg.write_records(records)
        lite = SQLiteLedger(":memory:")
        self.addCleanup(lite.close)
        lite.write_records(records)
        for start, end in RANGES:
            for group_by in GROUP_BYS:
                self.assertEqual(
                    pg.usage_summary(start, end, group_by).to_json(), lite.usage_summary(start, end, group_by).to_json()
                )
