"""
Budget alerts (dd0c_route/alerts/): the [[alerts]] config rules, the
crossing logic and its webhook body, and the watcher on a Clock with a
recording poster over a real SQLite ledger: one POST per crossing, retried
with backoff, a claim that makes two watchers on one ledger send once, and
rows marked sent or failed; and the claim itself raced by threads on
separate connections to one SQLite file and one real PostgreSQL database.
"""

from __future__ import annotations

import calendar
from decimal import Decimal
from typing import Any, Optional

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dd0c_route.alerts.crossing import crossing, webhook_body
from dd0c_route.alerts.delivery import describe_failure
from dd0c_route.alerts.interfaces import IWebhookPoster, WebhookRefused
from dd0c_route.alerts.watcher import AlertWatcher
from dd0c_route.config import AlertConfig, BudgetConfig, ConfigError, parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.postgres import PostgresLedger
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.secret import Secret
from dd0c_route.testing.doubles import SynchronousRunner
from dd0c_route.testing.webhooks import HANG, RecordingPoster

from .pg import create_database

NOON = float(calendar.timegm((2025, 3, 10, 12, 0, 0, 0, 0, 0)))
HOOK = "https://hooks.example.test/services/T000/B000/" + "x" * 24
BUDGET = BudgetConfig(scope="team:a", daily_usd=Decimal("1.00"), monthly_usd=Decimal("20"))


def half(scope: str = "team:a", **kw: Any) -> AlertConfig:
    kw.setdefault("threshold", Decimal("0.5"))
    return AlertConfig(scope=scope, period="daily", webhook_url=Secret(HOOK), **kw)


class Rig:
    """A watcher on a Clock over a real SQLite file, writing records as the writer would."""

    def __init__(self, path: str, alerts: tuple[AlertConfig, ...], budgets: tuple[BudgetConfig, ...] = (BUDGET,),
                 poster: Optional[RecordingPoster] = None, clock: Optional[Clock] = None) -> None:
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(NOON)
        self.store = SQLiteLedger(path)
        self.poster = poster or RecordingPoster()
        self.watcher = AlertWatcher(
            alerts, budgets, self.store, SynchronousRunner().run, self.clock, self.poster, check_delay=1.0,
        )
        self.watcher.startService()
        self.seq = 0

    def spend(self, usd: str, key_id: str = "k1", team: Optional[str] = "a") -> None:
        self.seq += 1
        record = UsageRecord(
            request_id=f"r{id(self)}-{self.seq}", key_id=key_id, team=team, cost_usd=Decimal(usd),
            created_at=self.clock.seconds(), model="gpt-4o",
        )
        self.store.write_records([record])
        self.watcher.observe(record)


@pytest.fixture
def rig(tmp_path: Any) -> Any:
    made: list[Rig] = []

    def make(alerts: tuple[AlertConfig, ...] = (half(),), **kw: Any) -> Rig:
        made.append(Rig(str(tmp_path / "ledger.sqlite3"), alerts, **kw))
        return made[-1]

    yield make
    for r in made:
        r.watcher.stopService()
        assert r.clock.getDelayedCalls() == [], "a timer was left behind"
        r.store.close()


# --- config ---------------------------------------------------------------

BASE = {"providers": {"openai": {"api_key": "fake"}}}


def config(alerts: list[dict[str, Any]], budgets: Optional[dict[str, Any]] = None) -> Any:
    return parse_config({**BASE, "alerts": alerts, "budgets": budgets or {"team:a": {"daily_usd": 1}}}, {})


def test_config_reads_alerts_and_hides_the_webhook_url() -> None:
    """[[alerts]] become AlertConfigs; the URL (a credential) is a Secret absent from the repr."""
    got = config([{"scope": "team:a", "period": "daily", "threshold": 0.5, "webhook_url": HOOK},
                  {"scope": "k1", "period": "monthly", "amount_usd": "100", "webhook_url": HOOK}])
    assert got.alerts[0].threshold == Decimal("0.5") and got.alerts[1].amount_usd == Decimal("100")
    assert got.alerts[0].webhook_url.reveal() == HOOK
    assert "hooks.example" not in repr(got)


@pytest.mark.parametrize(
    ("entry", "budgets", "key", "words"),
    [
        ({"threshold": 0.5, "amount_usd": 3}, None, "alerts[0].threshold", "exactly one"),
        ({}, None, "alerts[0].threshold", "exactly one"),
        ({"threshold": 0.5, "period": "monthly"}, None, "alerts[0].threshold", "sets no monthly_usd"),
        ({"threshold": 0.5, "scope": "team:b"}, None, "alerts[0].threshold", 'budgets."team:b"'),
        ({"threshold": 1.5}, None, "alerts[0].threshold", "at most 1"),
        ({"threshold": 0}, None, "alerts[0].threshold", "greater than 0"),
        ({"amount_usd": 1, "period": "weekly"}, None, "alerts[0].period", "daily, monthly"),
        ({"amount_usd": 1, "webhook_url": "ftp://secret-host/x"}, None, "alerts[0].webhook_url", "http"),
    ],
)
def test_config_refuses_bad_alerts(entry: dict[str, Any], budgets: Any, key: str, words: str) -> None:
    """Exactly one of threshold/amount_usd; a threshold needs the scope's budget for its period."""
    raw = {"scope": "team:a", "period": "daily", "webhook_url": HOOK, **entry}
    with pytest.raises(ConfigError) as caught:
        config([raw], budgets)
    assert caught.value.key == key and words in str(caught.value)
    assert "secret-host" not in str(caught.value)


# --- crossing and body ----------------------------------------------------


def test_crossing_fires_at_the_line_and_not_below() -> None:
    """The line is threshold x budget; spend at the line is a crossing, a cent under is not."""
    alert = half()
    assert crossing(alert, row_scope="team:a", limit=Decimal(1), spent=Decimal("0.49"), period_start=0, now=1) is None
    got = crossing(alert, row_scope="team:a", limit=Decimal(1), spent=Decimal("0.50"), period_start=0, now=1)
    assert got is not None and got.threshold == "0.5" and got.limit_usd == Decimal(1)
    amount = half(threshold=None, amount_usd=Decimal("7"))
    assert crossing(amount, row_scope="team:a", limit=None, spent=Decimal("6.99"), period_start=0, now=1) is None
    assert crossing(amount, row_scope="team:a", limit=None, spent=Decimal(7), period_start=0, now=1).threshold == "$7"  # type: ignore[union-attr]


def test_webhook_body_is_slack_text_plus_fields() -> None:
    """The body carries Slack's text and the structured facts, money as decimal strings."""
    record = crossing(half(), row_scope="team:a", limit=Decimal(1), spent=Decimal("0.5123"), period_start=NOON - 43200, now=NOON)
    assert record is not None
    body = webhook_body(half(), record)
    assert body["text"] == (
        "dd0c-route budget alert: team:a has spent $0.5123 today (2025-03-10, UTC), "
        "reaching 50% of its daily budget of $1."
    )
    assert {k: body[k] for k in ("scope", "period", "spent_usd", "limit_usd", "threshold", "amount_usd")} == {
        "scope": "team:a", "period": "daily", "spent_usd": "0.5123", "limit_usd": "1", "threshold": "0.5",
        "amount_usd": None,
    }


# --- the watcher ----------------------------------------------------------


def test_a_crossing_posts_once_after_the_check_delay(rig: Any) -> None:
    """Below the line nothing is sent; the crossing POSTs once, later spend does not POST again; the row says sent."""
    r = rig()
    verifyObject(IWebhookPoster, r.poster)
    r.spend("0.30")
    r.clock.advance(1)
    assert r.poster.posts == []
    r.spend("0.25")
    r.clock.advance(0.5)
    assert r.poster.posts == [], "the check waits for the writer's batch"
    r.clock.advance(0.5)
    assert len(r.poster.posts) == 1
    url, body = r.poster.posts[0]
    assert url == HOOK and body["spent_usd"] == "0.55" and body["scope"] == "team:a"
    for _ in range(3):
        r.spend("0.10")
        r.clock.advance(1)
    assert len(r.poster.posts) == 1
    [row] = r.store.list_alerts()
    assert (row.scope, row.period, row.threshold, row.status, row.attempts) == ("team:a", "daily", "0.5", "sent", 1)
    assert row.period_start == NOON - 43200


def test_the_next_period_fires_again(rig: Any) -> None:
    """A new UTC day is a new crossing: one more POST, one more row."""
    r = rig()
    r.spend("0.60")
    r.clock.advance(1)
    r.clock.advance(86400)
    r.spend("0.20")
    r.clock.advance(1)
    assert len(r.poster.posts) == 1, "yesterday's spend does not count today"
    r.spend("0.40")
    r.clock.advance(1)
    assert len(r.poster.posts) == 2
    assert sorted(row.period_start for row in r.store.list_alerts()) == [NOON - 43200, NOON + 43200]


def test_two_watchers_on_one_ledger_send_once(rig: Any) -> None:
    """Two processes seeing the same crossing: the claim insert lets exactly one POST."""
    a = rig()
    b = rig(clock=a.clock)
    a.spend("0.30")
    b.spend("0.30")
    a.clock.advance(1)
    assert len(a.poster.posts) + len(b.poster.posts) == 1
    assert len(a.store.list_alerts()) == 1


def test_other_scopes_and_records_without_cost_do_not_check(rig: Any) -> None:
    """A record of another team, or without cost, schedules no check at all."""
    r = rig()
    r.spend("0.90", team="b")
    r.watcher.observe(UsageRecord(request_id="free", team="a", key_id="k1", created_at=r.clock.seconds()))
    assert r.clock.getDelayedCalls() == []


def test_each_key_scope_alerts_per_key(rig: Any) -> None:
    """scope "*" watches each key on its own: two keys crossing give two POSTs, rows *:KEY."""
    r = rig(alerts=(half("*"),), budgets=(BudgetConfig(scope="*", daily_usd=Decimal(1)),))
    r.spend("0.60", key_id="k1")
    r.spend("0.40", key_id="k2")
    r.clock.advance(1)
    assert [body["scope"] for _, body in r.poster.posts] == ["*:k1"]
    r.spend("0.20", key_id="k2")
    r.clock.advance(1)
    assert sorted(body["scope"] for _, body in r.poster.posts) == ["*:k1", "*:k2"]


def test_a_key_scope_by_name_sums_that_name(rig: Any) -> None:
    """An alert scoped by a key's name counts that key's spend (the name learned from the key store)."""
    r = rig(alerts=(half("ci-bot", threshold=None, amount_usd=Decimal("2")),), budgets=())
    r.store.add_key(KeyInfo("k9", "ci-bot", "hash9", NOON))
    r.spend("1.50", key_id="k9", team=None)
    r.spend("5.00", key_id="k1", team=None)
    r.clock.advance(1)
    assert r.poster.posts == []
    r.spend("0.50", key_id="k9", team=None)
    r.clock.advance(1)
    [(_, body)] = r.poster.posts
    assert body["scope"] == "ci-bot" and body["spent_usd"] == "2.00" and body["amount_usd"] == "2"


def test_failed_posts_are_retried_with_exponential_backoff(rig: Any) -> None:
    """Two refused connections, then a 2xx: attempts at +0, +1 s, +3 s; the row says sent after 3."""
    r = rig(poster=RecordingPoster([ConnectionRefusedError(), WebhookRefused(503)]))
    r.spend("0.50")
    r.clock.advance(1)
    assert len(r.poster.posts) == 1
    r.clock.advance(0.9)
    assert len(r.poster.posts) == 1
    r.clock.advance(0.1)
    assert len(r.poster.posts) == 2
    r.clock.advance(1.9)
    assert len(r.poster.posts) == 2
    r.clock.advance(0.1)
    assert len(r.poster.posts) == 3
    [row] = r.store.list_alerts()
    assert (row.status, row.attempts) == ("sent", 3)


def test_exhausted_retries_mark_failed_and_log_once_without_the_url(rig: Any) -> None:
    """Five 500s: the row says failed after 5 attempts, one warning names the status, never the URL."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        r = rig(poster=RecordingPoster([WebhookRefused(500)] * 9))
        r.spend("0.50")
        r.clock.advance(1)
        r.clock.pump([1, 2, 4, 8, 16])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(r.poster.posts) == 5
    [row] = r.store.list_alerts()
    assert (row.status, row.attempts) == ("failed", 5)
    from twisted.logger import formatEvent

    warnings = [formatEvent(e) for e in events if "Budget alert" in str(e.get("log_format"))]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]
    assert all("hooks.example" not in repr(e) for e in events)


def test_a_final_refusal_is_not_retried(rig: Any) -> None:
    """A 404 will be refused again: one attempt, marked failed."""
    r = rig(poster=RecordingPoster([WebhookRefused(404)]))
    r.spend("0.50")
    r.clock.advance(1)
    r.clock.pump([1, 2, 4])
    assert len(r.poster.posts) == 1
    assert r.store.list_alerts()[0].status == "failed"


def test_stop_cancels_a_hanging_delivery_and_marks_it(rig: Any) -> None:
    """At stop a POST in flight is cancelled and its row marked failed; no timer is left."""
    r = rig(poster=RecordingPoster([HANG]))
    r.spend("0.50")
    r.clock.advance(1)
    assert r.poster.hanging
    r.watcher.stopService()
    assert r.store.list_alerts()[0].status == "failed"
    assert r.clock.getDelayedCalls() == []


def test_failures_are_described_by_kind_only() -> None:
    """A failure's text may hold the URL: the log gets its class name or HTTP status."""
    assert describe_failure(ValueError(HOOK)) == "ValueError"
    assert describe_failure(WebhookRefused(502)) == "HTTP 502"
    assert WebhookRefused(429).retry and not WebhookRefused(400).retry



# --- the claim under real concurrency ----------------------------------------


class _ConcurrentClaims:
    """Many threads on separate connections claim one crossing at the same instant: one wins."""

    def stores(self, count: int) -> list[Any]:
        raise NotImplementedError

    def test_exactly_one_concurrent_claim_wins(self) -> None:
        """8 threads over 4 connections insert the same crossing behind a barrier: exactly one True."""
        import threading

        stores = self.stores(4)
        claim = crossing(half(), row_scope="team:a", limit=Decimal("1"), spent=Decimal("0.6"), period_start=NOON, now=NOON)
        assert claim is not None
        barrier = threading.Barrier(8)
        won: list[bool] = []

        def one(store: Any) -> None:
            barrier.wait()
            won.append(store.claim_alert(claim))

        threads = [threading.Thread(target=one, args=(stores[i % 4],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(won) == [False] * 7 + [True]
        assert [(r.scope, r.status) for r in stores[0].list_alerts()] == [("team:a", "pending")]


class SQLiteConcurrentClaimTests(_ConcurrentClaims, SynchronousTestCase):
    def stores(self, count: int) -> list[Any]:
        path = self.mktemp() + ".sqlite3"
        out = [SQLiteLedger(path) for _ in range(count)]
        for store in out:
            self.addCleanup(store.close)
        return out


class PostgresConcurrentClaimTests(_ConcurrentClaims, SynchronousTestCase):
    def stores(self, count: int) -> list[Any]:
        url = create_database(self)
        out = [PostgresLedger(url, pool_size=2) for _ in range(count)]
        for store in out:
            self.addCleanup(store.close)
        return out
