"""
Circuit breaker and budgets on a task.Clock: cool-downs, half-open,
spend caps per UTC day and month, rate limits, seeding, and the migration
that adds the routing columns to an existing ledger.
"""

from __future__ import annotations

import calendar
import os
import shutil
import sqlite3
import tempfile
from decimal import Decimal

import pytest
from twisted.internet.task import Clock

from dd0c_route.config import BudgetConfig, CircuitBreakerConfig
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import _MIGRATIONS, SCHEMA_VERSION, SQLiteLedger
from dd0c_route.routing.breaker import CircuitBreaker
from dd0c_route.routing.budgets import Budgets, day_and_month
from dd0c_route.routing.errors import Refusal
from dd0c_route.web.errors import ProxyError, error_for

NOON = float(calendar.timegm((2026, 3, 14, 12, 0, 0, 0, 0, 0)))


def clock_at(when: float = NOON) -> Clock:
    clock = Clock()
    clock.advance(when)
    return clock


# -- circuit breaker -------------------------------------------------------


def test_breaker_opens_after_failures_in_window():
    """N failures within the window open the circuit for the cool-down."""
    clock = clock_at()
    breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=3, window=10, cooldown=30))
    breaker.failure("openai")
    breaker.failure("openai")
    assert breaker.available("openai")
    breaker.failure("openai")
    assert not breaker.available("openai")
    assert breaker.retry_in("openai") == 30
    assert breaker.open_providers() == ["openai"]
    assert breaker.available("anthropic")
    clock.advance(30)
    assert breaker.available("openai")


def test_breaker_window_forgets_old_failures():
    """Failures older than the window do not count."""
    clock = clock_at()
    breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=2, window=10, cooldown=30))
    breaker.failure("openai")
    clock.advance(11)
    breaker.failure("openai")
    assert breaker.available("openai")


def test_breaker_half_open_reopens_on_first_failure_and_closes_on_success():
    """After the cool-down one failure reopens at once; one success closes."""
    clock = clock_at()
    breaker = CircuitBreaker(clock, CircuitBreakerConfig(failures=2, window=10, cooldown=5))
    breaker.failure("p")
    breaker.failure("p")
    clock.advance(5)
    assert breaker.available("p")
    breaker.failure("p")
    assert not breaker.available("p")
    clock.advance(5)
    breaker.success("p")
    breaker.failure("p")
    assert breaker.available("p")


def test_success_resets_the_count():
    """A success between failures starts the count again."""
    breaker = CircuitBreaker(clock_at(), CircuitBreakerConfig(failures=2, window=10, cooldown=5))
    breaker.failure("p")
    breaker.success("p")
    breaker.failure("p")
    assert breaker.available("p")


# -- budgets -----------------------------------------------------------------


def key(name: str = "dev", team: str = "core", key_id: str = "key_1") -> KeyInfo:
    return KeyInfo(key_id, name, "hash", 0.0, team)


def spent(amount: str, when: float = NOON, key_id: str = "key_1", team: str = "core", tokens: int = 0) -> UsageRecord:
    return UsageRecord(
        request_id=os.urandom(6).hex(), key_id=key_id, team=team, cost_usd=Decimal(amount),
        created_at=when, prompt_tokens=tokens, completion_tokens=0,
    )


def refused(budgets: Budgets, who: KeyInfo, tokens: int = 10) -> ProxyError:
    with pytest.raises(Refusal) as info:
        budgets.admit(who, tokens)
    error = error_for(info.value)
    assert error.status == 429
    return error


def test_daily_cap_by_key_name():
    """A key is refused once its spend today reaches the cap; retry-after is the next UTC midnight."""
    clock = clock_at()
    budgets = Budgets([BudgetConfig("dev", daily_usd=Decimal("1.00"))], clock)
    budgets.admit(key(), 10)
    budgets.observe(spent("0.60"))
    budgets.admit(key(), 10)
    budgets.observe(spent("0.40"))
    error = refused(budgets, key())
    assert error.code == "budget_exceeded"
    assert "daily limit of $1.00" in error.message
    assert dict(error.headers)["retry-after"] == str(12 * 3600)
    budgets.admit(key(name="other", key_id="key_2"), 10)
    clock.advance(12 * 3600)
    budgets.admit(key(), 10)


def test_monthly_cap_by_team_and_key_id():
    """A team cap counts every key of the team; a key-id cap only that key."""
    clock = clock_at()
    budgets = Budgets(
        [BudgetConfig("team:core", monthly_usd=Decimal("2")), BudgetConfig("key_3", daily_usd=Decimal("0.5"))],
        clock,
    )
    budgets.observe(spent("1.5", key_id="key_1"))
    budgets.observe(spent("0.5", key_id="key_2", when=NOON - 86400 * 3))
    error = refused(budgets, key(key_id="key_9", name="x"))
    assert error.code == "budget_exceeded" and "team core" in error.message
    next_month = calendar.timegm((2026, 4, 1, 0, 0, 0, 0, 0, 0))
    assert dict(error.headers)["retry-after"] == str(int(next_month - NOON))
    budgets.admit(key(team="other", key_id="key_4"), 10)
    budgets.observe(spent("0.5", key_id="key_3", team="other"))
    assert refused(budgets, key(team="other", key_id="key_3")).code == "budget_exceeded"


def test_requests_per_minute():
    """rpm: a bucket of N requests refilled over a minute; a refusal takes nothing."""
    clock = clock_at()
    budgets = Budgets([BudgetConfig("*", requests_per_minute=2)], clock)
    budgets.admit(key(), 1)
    budgets.admit(key(), 1)
    error = refused(budgets, key())
    assert error.code == "rate_limited" and dict(error.headers)["retry-after"] == "30"
    budgets.admit(key(key_id="key_2"), 1)  # "*" is per key
    clock.advance(30)
    budgets.admit(key(), 1)
    refused(budgets, key())


def test_tokens_per_minute_debited_by_records():
    """tpm: admitted while the bucket holds the estimate; records debit real tokens."""
    clock = clock_at()
    budgets = Budgets([BudgetConfig("dev", tokens_per_minute=600)], clock)
    budgets.admit(key(), 500)
    budgets.observe(spent("0", tokens=550))
    error = refused(budgets, key(), tokens=100)
    assert error.code == "rate_limited" and "600 tokens per minute" in error.message
    assert dict(error.headers)["retry-after"] == "5"
    clock.advance(5)
    budgets.admit(key(), 100)
    # A request larger than the whole bucket waits for a full bucket, not forever.
    clock.advance(60)
    budgets.admit(key(), 10_000)


def test_out_of_order_records_never_reset_today():
    """A record from yesterday arriving late adds nothing to today and resets nothing."""
    clock = clock_at()
    budgets = Budgets([BudgetConfig("dev", daily_usd=Decimal("1"))], clock)
    budgets.observe(spent("1"))
    budgets.observe(spent("5", when=NOON - 86400))
    assert budgets.spent(key_id="key_1") == (Decimal("1"), Decimal("6"))
    refused(budgets, key())


def test_seed_counts_only_records_before_start():
    """Seeding adds stored spend before the process start; later records come live."""
    clock = clock_at()
    budgets = Budgets([BudgetConfig("dev", daily_usd=Decimal("1"))], clock)
    counted = budgets.seed([spent("0.7", when=NOON - 60), spent("9", when=NOON + 1)], before=NOON)
    assert counted == 1
    assert budgets.spent(key_id="key_1")[0] == Decimal("0.7")
    assert budgets.spent(team="core")[0] == Decimal("0.7")


def test_no_budgets_no_work():
    """Without budgets admission is a no-op."""
    budgets = Budgets([], clock_at())
    assert not budgets.enabled
    budgets.admit(key(), 10**9)
    budgets.observe(spent("100"))


def test_day_and_month_boundaries():
    """UTC day/month and the seconds to the next ones, December included."""
    when = float(calendar.timegm((2026, 12, 31, 23, 0, 0, 0, 0, 0)))
    day, month, to_day, to_month = day_and_month(when)
    assert day == (2026, 12, 31) and month == (2026, 12)
    assert to_day == 3600 and to_month == 3600


# -- ledger migration --------------------------------------------------------


def test_migration_adds_routing_columns_to_an_existing_ledger():
    """A ledger written before routing (schema 1) gains the new columns (routing, then reasoning_tokens) and keeps its rows."""
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, "old.sqlite3")
        conn = sqlite3.connect(path)
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO usage (request_id, endpoint, tokens_counted_locally, status, stream, disconnected, latency_ms, created_at) VALUES ('old', '/v1/x', '', 200, 0, 0, 1.0, 5.0)")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
        with SQLiteLedger(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            (old,) = store.read_records()
            assert old.request_id == "old" and old.attempts is None and old.cost_shadow_usd is None
            assert old.price_source is None and old.price_tier is None and old.reasoning_tokens is None
            new = UsageRecord(request_id="new", attempts="a@p:429,b@q:200", shadow_model="m", cost_shadow_usd=Decimal("0.000001"), reasoning_tokens=7)
            store.write_records([new])
            assert store.read_records()[1] == new
    finally:
        shutil.rmtree(directory)


def test_migration_adds_price_columns_to_an_existing_ledger():
    """A ledger written before price provenance (schema 2) gains price_source/price_tier and keeps its rows."""
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, "old.sqlite3")
        conn = sqlite3.connect(path)
        for step in _MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute("INSERT INTO usage (request_id, endpoint, tokens_counted_locally, status, stream, disconnected, latency_ms, created_at, cost_usd) VALUES ('old', '/v1/x', '', 200, 0, 0, 1.0, 5.0, '0.5')")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()
        with SQLiteLedger(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            (old,) = store.read_records()
            assert old.cost_usd == Decimal("0.5") and old.price_source is None and old.price_tier is None
            new = UsageRecord(request_id="new", cost_usd=Decimal("1"), price_source="genai-prices 0.2.3", price_tier="batch+long_context")
            store.write_records([new])
            assert store.read_records()[1] == new
    finally:
        shutil.rmtree(directory)
