"""
Budget alerts end to end: the treq poster against a real loopback webhook
stand-in, then real proxies (the tap's service, the fake OpenAI upstream,
the openai SDK as client) with a daily budget and an alert at half of it:
the requests that cross it give exactly one POST with the expected text,
also when two proxy instances share one SQLite ledger file and race.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dd0c_route.alerts.interfaces import WebhookRefused
from dd0c_route.alerts.watcher import AlertWatcher
from dd0c_route.alerts.webhook import TreqWebhookPoster
from dd0c_route.testing.webhooks import start_webhook_receiver

from .live import in_thread, start_live_proxy
from .pg import create_database

#: $40 per million tokens, in and out: the fake's answer to "hello" is
#: 8 + 17 tokens, so every request costs exactly $0.001.
PRICES = {"gpt-4o-mini": {"input": 40, "output": 40}}
BUDGET = {"team:team-a": {"daily_usd": "0.005"}}


def wait_until(predicate: Any, seconds: float = 20.0) -> Any:
    @inlineCallbacks
    def poll() -> Any:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting")
            yield deferLater(reactor, 0.05, lambda: None)

    return poll()


def watcher_of(live: Any) -> AlertWatcher:
    [found] = [s for s in live.built.service if isinstance(s, AlertWatcher)]
    return found


class _Silent(Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> Any:
        return NOT_DONE_YET


class PosterTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        self.hook = yield start_webhook_receiver(reactor, statuses=[200, 500])
        self.addCleanup(self.hook.stop)

    @inlineCallbacks
    def test_posts_json_without_credentials_and_judges_the_status(self) -> Any:
        """A 2xx fires None; the POST has only Content-Type and User-Agent of ours; a 500 is a retryable refusal."""
        poster = TreqWebhookPoster(reactor, timeout=5)
        yield poster.post(self.hook.url(), b'{"text": "hi"}')
        [(path, headers, body)] = self.hook.posts
        assert path == "/hooks/budget" and body == {"text": "hi"}
        assert headers["content-type"] == ["application/json"]
        assert not {"authorization", "x-api-key", "cookie"} & set(headers)
        try:
            yield poster.post(self.hook.url(), b"{}")
        except WebhookRefused as refused:
            assert refused.status == 500 and refused.retry
        else:
            raise AssertionError("a 500 was taken for success")

    @inlineCallbacks
    def test_a_silent_webhook_times_out(self) -> Any:
        """No answer within the timeout: the attempt fails with TimeoutError (not a bare cancel)."""
        port = reactor.listenTCP(0, Site(_Silent()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        poster = TreqWebhookPoster(reactor, timeout=0.3)
        try:
            yield poster.post(f"http://127.0.0.1:{port.getHost().port}/x", b"{}")
        except TimeoutError:
            pass
        else:
            raise AssertionError("no timeout")


class LiveAlertTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.hook = yield start_webhook_receiver(reactor)
        self.addCleanup(self.hook.stop)
        self.alerts = [{"scope": "team:team-a", "period": "daily", "threshold": 0.5, "webhook_url": self.hook.url()}]

    def proxy(self, ledger: str = "", key_name: str = "test", url: str = "") -> Any:
        extra: dict[str, Any] = {"prices": PRICES, "budgets": BUDGET, "alerts": self.alerts}
        if ledger:
            extra["ledger"] = {"path": ledger}
        if url:
            extra["ledger"] = {"url": url}
        return start_live_proxy(self, extra, kinds=("openai",), key_name=key_name)

    def ask(self, live: Any) -> Any:
        client = live.openai_client()
        return in_thread(
            client.chat.completions.create, model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )

    @inlineCallbacks
    def test_crossing_half_the_daily_budget_posts_once(self) -> Any:
        """$0.001, $0.002: nothing; $0.003 crosses $0.0025: one POST with the text; a 4th request: still one."""
        live = yield self.proxy()
        watcher = watcher_of(live)
        for _ in range(2):
            yield self.ask(live)
        yield wait_until(lambda: not watcher.busy)
        assert self.hook.posts == []
        yield self.ask(live)
        yield wait_until(lambda: self.hook.posts and not watcher.busy)
        yield self.ask(live)
        yield wait_until(lambda: not watcher.busy)
        assert len(self.hook.posts) == 1
        _, headers, body = self.hook.posts[0]
        day = time.strftime("%Y-%m-%d", time.gmtime())
        assert body["text"] == (
            f"dd0c-route budget alert: team:team-a has spent $0.003 today ({day}, UTC), "
            "reaching 50% of its daily budget of $0.005."
        )
        assert (body["scope"], body["period"], body["threshold"], body["limit_usd"]) == (
            "team:team-a", "daily", "0.5", "0.005",
        )
        assert live.key not in repr(headers) + repr(body)
        assert live.provider_keys["openai"] not in repr(headers) + repr(body)
        rows = yield in_thread(live.built.store.list_alerts)
        assert [(r.scope, r.status, r.attempts) for r in rows] == [("team:team-a", "sent", 1)]

    @inlineCallbacks
    def test_two_instances_on_one_ledger_post_once(self) -> Any:
        """Two proxies share a SQLite file and both see the crossing: the claim lets exactly one POST."""
        first = yield self.proxy()
        second = yield self.proxy(ledger=os.path.join(first.tmpdir, "ledger.sqlite3"), key_name="second")
        assert first.built.store.path == second.built.store.path
        yield self.race(first, second)

    @inlineCallbacks
    def test_two_instances_on_one_postgres_post_once(self) -> Any:
        """The same race on one real PostgreSQL database: exactly one POST per crossing."""
        url = create_database(self)
        first = yield self.proxy(url=url)
        second = yield self.proxy(url=url, key_name="second")
        assert first.built.store.conninfo == second.built.store.conninfo
        yield self.race(first, second)

    @inlineCallbacks
    def race(self, first: Any, second: Any) -> Any:
        """Both instances spend past the line; each claims the crossing once, one claim wins, one POST."""
        watchers = [watcher_of(first), watcher_of(second)]
        claims: list[bool] = []
        for live in (first, second):
            def counted(alert: Any, real: Any = live.built.store.claim_alert) -> bool:
                won = real(alert)
                claims.append(won)
                return bool(won)

            live.built.store.claim_alert = counted
        for _ in range(2):
            yield self.ask(first)
            yield self.ask(second)
        yield wait_until(lambda: self.hook.posts and not any(w.busy for w in watchers))
        for live in (first, second):
            yield self.ask(live)
        yield wait_until(lambda: not any(w.busy for w in watchers))
        assert len(self.hook.posts) == 1, [body["text"] for _, _, body in self.hook.posts]
        assert sorted(claims) == [False, True], claims
        text = self.hook.posts[0][2]["text"]
        assert re.fullmatch(r"dd0c-route budget alert: team:team-a has spent \$0\.00[34] today .*", text), text
        rows = yield in_thread(first.built.store.list_alerts)
        assert [(r.scope, r.status) for r in rows] == [("team:team-a", "sent")]
