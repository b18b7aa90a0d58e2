"""
Shared limits on a Clock with the in-memory link: the lease bounds the
overshoot of a burst across instances, spend is shared and re-synced, an
outage falls back to local shares (or 503 when closed), nothing pending is
lost; the fake link and the real one pass one contract.
"""

from __future__ import annotations

import calendar
from decimal import Decimal

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from dd0c_route.config import BudgetConfig
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.routing.budgets import Budgets
from dd0c_route.routing.errors import BudgetExceeded, RateLimited, Refusal, StateUnavailable
from dd0c_route.state.counters import SYNC_SCRIPT, SharedCounters, micros
from dd0c_route.state.interfaces import ISharedCounters, IStateLink
from dd0c_route.state.reconciler import Reconciler
from dd0c_route.testing.statelink import FakeRedis, FakeStateLink

from .redis_live import new_prefix

NOON = float(calendar.timegm((2026, 3, 14, 12, 0, 10, 0, 0, 0)))
KEY = KeyInfo("key-1", "test", "h", 0.0, "team-a")


class Instance:
    def __init__(self, redis: FakeRedis, clock: Clock, budgets: list[BudgetConfig], name: str, **kw) -> None:
        self.link = FakeStateLink(redis)
        self.counters = SharedCounters("t:", **kw)
        self.reconciler = Reconciler(self.counters, self.link, clock, instance=name, interval=0.1,
                                     closed_when_down=kw.get("closed_when_down", False))
        self.reconciler.link_changed(True)
        self.budgets = Budgets(budgets, clock, self.counters)

    def admit(self, tokens: int = 10) -> bool:
        try:
            self.budgets.admit(KEY, tokens)
        except Refusal:
            return False
        return True


def cluster(budgets, n=2, **kw):
    clock = Clock()
    clock.advance(NOON)
    redis = FakeRedis()
    instances = [Instance(redis, clock, budgets, f"i{i}", **kw) for i in range(n)]
    for inst in instances:
        inst.reconciler.round()
    return clock, redis, instances


def test_fakes_provide_their_interfaces():
    """The fake link and the counters provide the seams they claim."""
    verifyObject(IStateLink, FakeStateLink(FakeRedis()))
    verifyObject(ISharedCounters, SharedCounters("p:"))


def test_burst_across_instances_overshoots_at_most_the_bound():
    """
    rpm = 30, 2 x 40 requests within 50 ms with rounds every 10 ms: at most
    30 + max(20 % of 30, 2 per instance) are admitted, and most of the 30 are.
    """
    clock, _, instances = cluster([BudgetConfig("*", requests_per_minute=30)])
    admitted = 0
    for step in range(40):
        for inst in instances:
            admitted += inst.admit()
        if step % 8 == 7:
            clock.advance(0.01)
            for inst in instances:
                inst.reconciler.round()
    assert admitted <= 30 + max(6, 2 * 2)
    assert admitted >= 15


def test_without_rounds_each_instance_is_held_to_its_lease():
    """No reconciliation at all during a burst: each instance admits only its lease (+1)."""
    _clock, _, instances = cluster([BudgetConfig("*", requests_per_minute=100)])
    counts = [sum(inst.admit() for _ in range(100)) for inst in instances]
    # lease = 0.2 * 100 / 2 instances = 10 each
    assert counts == [10, 10]


def test_spend_is_shared_and_refuses_on_the_other_instance():
    """
    A daily cap spent on one instance refuses on the other once it has
    reconciled (an instance that never saw the key admits one request: the
    documented one-request allowance).
    """
    clock, _, (a, b) = cluster([BudgetConfig("*", daily_usd=Decimal("1.00"))])
    assert a.admit()
    assert b.admit()
    from dd0c_route.ledger.records import UsageRecord

    record = UsageRecord(request_id="r1", created_at=clock.seconds(), key_id=KEY.key_id, team=KEY.team,
                         endpoint="/v1/chat/completions", status=200, cost_usd=Decimal("1.50"))
    a.budgets.observe(record)
    a.reconciler.round()
    b.reconciler.round()
    with pytest.raises(BudgetExceeded, match="across all instances"):
        b.budgets.admit(KEY, 10)


def test_outage_falls_back_to_a_local_share_and_resyncs():
    """
    Redis down: each instance admits its share (headroom / instances seen);
    the deltas stay pending and reach Redis when it is back.
    """
    _clock, redis, (a, b) = cluster([BudgetConfig("*", requests_per_minute=40)])
    for inst in (a, b):
        inst.link.up = False
        inst.reconciler.link_changed(False)
    assert sum(a.admit() for _ in range(50)) == 20
    assert a.counters.pending_total == 20
    a.link.up = True
    a.reconciler.link_changed(True)
    assert a.counters.pending_total == 0
    assert sum(redis.values.values()) == 20


def test_closed_mode_refuses_while_down():
    """on_redis_down = "closed": a 503 refusal while down, admitted again when back."""
    _clock, _, (a,) = cluster([BudgetConfig("*", requests_per_minute=40)], n=1, closed_when_down=True)
    a.link.up = False
    a.reconciler.link_changed(False)
    with pytest.raises(StateUnavailable):
        a.budgets.admit(KEY, 10)
    a.link.up = True
    a.reconciler.link_changed(True)
    assert a.admit()


def test_redis_losing_its_keys_is_rebuilt_from_the_views():
    """A restarted Redis gets the highest view back (max(stored, view) + delta)."""
    _clock, redis, (a, b) = cluster([BudgetConfig("*", requests_per_minute=100)])
    for _ in range(8):
        a.admit()
    b.admit()
    a.reconciler.round()
    b.reconciler.round()
    assert max(redis.values.values()) == 9
    redis.values.clear()
    b.admit()
    b.reconciler.round()
    assert max(redis.values.values()) == 10


def test_window_slides_across_the_minute():
    """A full minute still refuses just after it ends (the sliding window), and frees up later."""
    clock, _, (a,) = cluster([BudgetConfig("*", requests_per_minute=5)], n=1, lease_fraction=1.0)
    for _ in range(5):
        assert a.admit()
        a.reconciler.round()
    assert not a.admit()
    clock.advance(60 - (clock.seconds() % 60) + 1)  # 1 s into the next minute
    a.budgets._buckets.clear()  # the local bucket would refuse too; look at the shared window alone
    with pytest.raises(RateLimited):
        a.budgets.admit(KEY, 10)
    clock.advance(30)
    a.reconciler.round()
    assert a.admit()


def test_micros_round_up():
    """Spend is counted in whole micro-dollars, never under."""
    assert micros(Decimal("0.0000001")) == 1
    assert micros(Decimal("1.5")) == 1_500_000


class LinkContract:
    """What the reconciler needs of a link; run on the fake and on Redis."""

    def link(self):
        raise NotImplementedError

    def test_script_adds_deltas_and_keeps_the_highest_view(self):
        link, prefix = self.link()
        keys = [prefix + "instances", prefix + "c1"]
        first = self.run(link.call_script(SYNC_SCRIPT, keys, ["me", "100.0", "3.0", "0", "5", "60"]))
        assert [int(v) for v in first] == [1, 5]
        second = self.run(link.call_script(SYNC_SCRIPT, keys, ["me", "100.1", "3.0", "12", "1", "60"]))
        assert [int(v) for v in second] == [1, 13]


class TestFakeLink(LinkContract):
    def link(self):
        return FakeStateLink(FakeRedis()), new_prefix()

    def run(self, d):
        out = []
        d.addCallback(out.append)
        return out[0]


def test_state_config_hides_the_password_and_workers_need_state():
    """[state]: the URL's password is a Secret (not in the repr); workers > 1 with budgets and no [state] fails."""
    from dd0c_route.config import ConfigError, parse_config
    from dd0c_route.state.config import parse_state

    secret = "pw-" + "x" * 12
    state = parse_state({"redis_url": f"rediss://user:{secret}@cache.internal:6380/2"}, {})
    assert state is not None and state.tls and state.db == 2 and state.port == 6380
    assert secret not in repr(state) and secret not in state.display_url
    assert state.password is not None and state.password.reveal() == secret
    with pytest.raises(ConfigError, match="need \\[state\\]"):
        parse_config({"server": {"workers": 2}, "budgets": {"*": {"requests_per_minute": 5}}}, {})
    assert parse_config({"server": {"workers": "auto"}}, {}).server.worker_count >= 1
