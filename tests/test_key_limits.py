"""
A key's own limits (set from the admin API, carried on its KeyInfo) as a
budget of scope ``key:ID``, on a task.Clock: a daily cap refuses with the
provider-shaped 429 once reached and admits again when raised; a team
changed on the key counts toward that team's ``[budgets]`` cap; per-key
requests and tokens per minute; both a config scope and the key's own cap
apply; and the one-key seed from the ledger when no ``[budgets]`` exist.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from dd0c_route.config import BudgetConfig, parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.providers.registry import ProviderRegistry
from dd0c_route.routing.budgets import Budgets
from dd0c_route.routing.key_limits import own_budget
from dd0c_route.routing.service import Routing
from dd0c_route.testing.doubles import InMemoryLedger, SynchronousRunner

from .test_routing_limits import NOON, clock_at, refused, spent


def key(**limits: Any) -> KeyInfo:
    team = limits.pop("team", "core")
    return KeyInfo("key_1", "dev", "hash", 0.0, team, **limits)


def test_no_limits_no_scope():
    """A key without limits of its own adds no scope; each limit alone makes one named key:ID."""
    assert own_budget(key()) is None
    budget = own_budget(key(requests_per_minute=5))
    assert budget is not None and budget.scope == "key:key_1" and budget.requests_per_minute == 5


def test_own_daily_cap_refuses_then_a_raise_admits():
    """daily_usd on the key: refused with budget_exceeded once reached; a raised cap (a new KeyInfo) admits."""
    clock = clock_at()
    budgets = Budgets([], clock)
    capped = key(daily_usd=Decimal("0.003"))
    for _ in range(3):
        budgets.admit(capped, 10)
        budgets.observe(spent("0.001"))
    error = refused(budgets, capped)
    assert error.code == "budget_exceeded" and "daily limit of $0.003" in error.message
    assert dict(error.headers)["retry-after"] == str(12 * 3600)
    # The key cache hands over an equal copy every reload: still refused.
    refused(budgets, attrs.evolve(capped))
    raised = attrs.evolve(capped, daily_usd=Decimal("0.005"))
    budgets.admit(raised, 10)
    budgets.observe(spent("0.002"))
    refused(budgets, raised)
    budgets.admit(attrs.evolve(raised, daily_usd=None), 10)
    clock.advance(12 * 3600)
    budgets.admit(raised, 10)


def test_own_monthly_cap():
    """monthly_usd on the key counts the whole UTC month."""
    budgets = Budgets([], clock_at())
    budgets.admit(key(monthly_usd=Decimal("1")), 10)
    budgets.observe(spent("0.8", when=NOON - 5 * 86400))
    budgets.observe(spent("0.2"))
    error = refused(budgets, key(monthly_usd=Decimal("1")))
    assert "monthly limit of $1" in error.message


def test_team_set_on_the_key_counts_toward_that_teams_budget():
    """A key moved to team "gold" (from the API) is held by [budgets."team:gold"] at once, with gold's spend."""
    budgets = Budgets([BudgetConfig("team:gold", daily_usd=Decimal("1"))], clock_at())
    budgets.observe(spent("1", team="gold"))
    budgets.admit(key(team="core"), 10)
    assert refused(budgets, key(team="gold")).code == "budget_exceeded"


def test_config_scope_and_own_cap_both_apply():
    """[budgets.dev] daily 10 and the key's own daily 1: the smaller one refuses."""
    budgets = Budgets([BudgetConfig("dev", daily_usd=Decimal("10"))], clock_at())
    budgets.observe(spent("1"))
    budgets.admit(key(), 10)
    assert "daily limit of $1 " in refused(budgets, key(daily_usd=Decimal("1"))).message


def test_own_requests_per_minute_and_a_changed_limit():
    """requests_per_minute on the key; raising it resizes the bucket, lowering it never leaves more than the new size."""
    clock = clock_at()
    budgets = Budgets([], clock)
    two = key(requests_per_minute=2)
    budgets.admit(two, 1)
    budgets.admit(two, 1)
    error = refused(budgets, two)
    assert error.code == "rate_limited" and "2 requests per minute" in error.message
    clock.advance(30)  # one request refilled
    sixty = attrs.evolve(two, requests_per_minute=60)
    budgets.admit(sixty, 1)
    refused(budgets, sixty)  # the bucket keeps its level when resized up ...
    clock.advance(1)
    budgets.admit(sixty, 1)  # ... and refills at the new rate, one a second
    clock.advance(60)
    one = attrs.evolve(two, requests_per_minute=1)
    budgets.admit(one, 1)
    refused(budgets, one)


def test_own_tokens_per_minute_debited_by_records():
    """tokens_per_minute on the key: admitted while the bucket holds the estimate, debited by records."""
    budgets = Budgets([], clock_at())
    limited = key(tokens_per_minute=600)
    budgets.admit(limited, 500)
    budgets.observe(spent("0", tokens=550))
    assert "600 tokens per minute" in refused(budgets, limited, tokens=100).message


def test_a_key_first_capped_is_seeded_from_the_ledger():
    """No [budgets]: the first admit of a capped key reads its stored spend (today, month) as a floor, once per cap."""
    clock = clock_at()
    config = parse_config({"providers": {"openai": {"api_key": "fake"}}}, {})
    routing = Routing(config, ProviderRegistry(config), clock)
    store = InMemoryLedger()
    store.write_records([spent("0.004", when=NOON - 60), spent("0.5", when=NOON - 86400), spent("9", when=NOON + 5)])
    routing.seed(store, SynchronousRunner().run)
    budgets = routing.budgets
    budgets.observe(spent("7"))  # no cap yet: not counted here (the ledger has it)
    budgets.admit(key(), 10)  # no cap of its own: nothing to read
    assert store.calls.get("spend_between", 0) == 0
    budgets.admit(key(daily_usd=Decimal("0.005")), 10)
    assert store.calls["spend_between"] == 2
    assert budgets.spent(key_id="key_1") == (Decimal("0.004"), Decimal("0.504"))
    budgets.observe(spent("0.001"))
    refused(budgets, key(daily_usd=Decimal("0.005")))
    budgets.admit(key(daily_usd=Decimal("1")), 10)  # a changed cap is not a new one
    assert store.calls["spend_between"] == 2
    # The cap lifted, spend stored meanwhile, the cap back: read again, a floor (never added twice).
    budgets.admit(key(), 10)
    store.write_records([spent("0.001"), spent("0.01")])
    budgets.admit(key(daily_usd=Decimal("1")), 10)
    assert store.calls["spend_between"] == 4
    assert budgets.spent(key_id="key_1") == (Decimal("0.015"), Decimal("0.515"))


def test_with_shared_state_the_ledgers_stored_spend_is_the_floor():
    """[state]: a cap appearing asks for the stored spend of every instance; it refuses once the floor reaches the cap."""
    from dd0c_route.state.counters import SharedCounters

    clock = clock_at()
    budgets = Budgets([BudgetConfig("team:core", daily_usd=Decimal("100"))], clock, shared=SharedCounters("t:"))
    asked: list[str] = []
    budgets.seed_needed = asked.append
    capped = key(daily_usd=Decimal("0.003"))
    budgets.admit(capped, 10)
    assert asked == ["key_1"]
    budgets.seed_key("key_1", Decimal("0.003"), Decimal("0.003"))
    assert budgets.spent(key_id="key_1") == (Decimal(0), Decimal(0))  # the full seed owns this process's figures
    error = refused(budgets, attrs.evolve(capped))
    assert "across all instances" in error.message
    budgets.admit(attrs.evolve(capped, daily_usd=Decimal("1")), 10)
    assert asked == ["key_1"]


def test_no_limit_at_all_counts_nothing():
    """No [budgets] and no key limits: admit and observe keep no per-key state beyond the key's empty scope list."""
    budgets = Budgets([], clock_at())
    budgets.admit(key(), 10)
    budgets.observe(spent("5"))
    assert budgets.spent(key_id="key_1") == (Decimal(0), Decimal(0))
    assert budgets.spent(team="core") == (Decimal(0), Decimal(0))
