"""
A key's own limits set through the admin API, live: the tap's service with
its admin listener, the fake OpenAI upstream at $0.001 a request, and the
openai SDK on the API port.  A daily_usd set by PATCH refuses the request
after the cap with a 429 JSON error (``budget_exceeded``), a raised cap
admits again, requests_per_minute refuses with ``rate_limited``; and with
``[state]`` two instances on one ledger share the key's spend, and the one
that did not serve the PATCH (or a revocation) has it within a Redis round
trip, not at its key cache reload.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import openai
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id

from .live import in_thread, start_live_proxy
from .redis_live import clean_prefix, new_prefix, require_redis
from .test_admin_live import http

#: $40 per million tokens in and out: the fake's answer to "hello" is 8 + 17
#: tokens, so each request costs exactly $0.001.
PRICES = {"gpt-4o-mini": {"input": 40, "output": 40}}
ADMIN_LISTEN = {"listen": "tcp:0:interface=127.0.0.1"}


def ask(client: Any) -> tuple[int, Optional[dict[str, Any]]]:
    """(status, error body or None) of one chat completion."""
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        return 200, None
    except openai.APIStatusError as error:
        return error.status_code, error.response.json()


class KeyLimitsLive(TestCase):
    timeout = 90

    @inlineCallbacks
    def proxy(self, extra: Optional[dict[str, Any]] = None, ledger: str = "", key_name: str = "test") -> Any:
        config: dict[str, Any] = {"prices": PRICES, "admin": ADMIN_LISTEN, **(extra or {})}
        if ledger:
            config["ledger"] = {**config.get("ledger", {}), "path": ledger}
        live = yield start_live_proxy(self, config, kinds=("openai",), key_name=key_name)
        return live

    @inlineCallbacks
    def admin(self, live: Any) -> Any:
        """An admin key in the ledger, and a PATCH of the test key through the admin listener."""
        from .test_admin_live import admin_port

        port = yield admin_port(live)
        key = generate_key()
        live.built.store.add_key(KeyInfo(new_key_id(), "ops", hash_key(key), time.time(), admin=True))
        self.admin_port, self.admin_key = port, key

        def patch(body: dict[str, Any]) -> Any:
            status, _, raw = http(
                f"http://127.0.0.1:{port}/admin/v1/keys/{live.key_id}", "PATCH",
                {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, json.dumps(body).encode(),
            )
            assert status == 200, raw
            return json.loads(raw)

        return lambda body: in_thread(patch, body)

    @inlineCallbacks
    def spend(self, live: Any, client: Any, count: int, pause: float = 0.0) -> Any:
        """
        ``count`` requests, each metered before the next (and ``pause``
        seconds apart: with [state], past the lease of one reconciliation,
        docs/shared-state.md); their statuses.
        """
        statuses = []
        for _ in range(count):
            status, _ = yield in_thread(ask, client)
            statuses.append(status)
            yield live.built.app.meter.drain()
            if pause:
                yield deferLater(reactor, pause, lambda: None)
        return statuses

    @inlineCallbacks
    def test_daily_usd_from_the_api_refuses_then_a_raise_admits(self):
        """PATCH daily_usd 0.003: 3 requests pass, the 4th is a 429 budget_exceeded; PATCH 0.005: admitted again."""
        live = yield self.proxy()
        patch = yield self.admin(live)
        client = live.openai_client()
        answer = yield patch({"daily_usd": "0.003"})
        self.assertEqual(answer["daily_usd"], "0.003")
        self.assertEqual((yield self.spend(live, client, 3)), [200, 200, 200])
        status, body = yield in_thread(ask, client)
        self.assertEqual(status, 429)
        error = body["error"]
        self.assertEqual((error["code"], error["type"]), ("budget_exceeded", "rate_limit_error"))
        self.assertIn("daily limit of $0.003 reached", error["message"])
        self.assertNotIn(live.key, json.dumps(body))
        yield patch({"daily_usd": "0.005"})
        self.assertEqual((yield self.spend(live, client, 3)), [200, 200, 429])

    @inlineCallbacks
    def test_requests_per_minute_from_the_api(self):
        """PATCH requests_per_minute 2: the third request in the minute is a 429 rate_limited; null lifts it."""
        live = yield self.proxy()
        patch = yield self.admin(live)
        client = live.openai_client()
        answer = yield patch({"requests_per_minute": 2})
        self.assertEqual(answer["requests_per_minute"], 2)
        statuses = yield self.spend(live, client, 3)
        self.assertEqual(statuses, [200, 200, 429])
        status, body = yield in_thread(ask, client)
        self.assertEqual((status, body["error"]["code"]), (429, "rate_limited"))
        yield patch({"requests_per_minute": None})
        self.assertEqual((yield self.spend(live, client, 1)), [200])

    @inlineCallbacks
    def shared_pair(self, ttl: float) -> Any:
        """Two instances on one SQLite ledger and one Redis; A has the admin listener."""
        require_redis()
        prefix = new_prefix()
        self.addCleanup(clean_prefix, prefix)
        extra = {
            "ledger": {"key_cache_ttl": ttl},
            "state": {"redis_url": "redis://127.0.0.1:6379/0", "key_prefix": prefix},
        }
        a = yield self.proxy(extra)
        b = yield self.proxy({**extra, "admin": {}}, ledger=a.built.store.path, key_name="second")
        return a, b

    @inlineCallbacks
    def test_two_instances_share_the_keys_spend_and_see_the_change(self):
        """
        [state] and one SQLite ledger, key_cache_ttl 5 s.  B spends $0.001,
        then A sets the cap at $0.003: B's key cache has it within 0.5 s (the
        change is broadcast; the reload would take up to 2.5 s).  A counts
        B's stored spend (the shared view's floor) and refuses its third
        request; B, which spent before the cap, admits at most its one
        first-use request (docs/shared-state.md) and then refuses.  A raise
        on A admits on B again.
        """
        a, b = yield self.shared_pair(5.0)
        patch = yield self.admin(a)
        client_a = a.openai_client()
        client_b = b.openai_client(api_key=a.key)
        self.assertEqual((yield self.spend(b, client_b, 1)), [200])
        yield b.built.writer.flush()
        yield patch({"daily_usd": "0.003"})
        changed = time.monotonic()
        seen = yield self.wait_for(lambda: str(b.built.keys.lookup_cached(a.key)[1].daily_usd) == "0.003")
        self.assertLess(seen - changed, 0.5)
        self.assertEqual((yield self.spend(a, client_a, 3, pause=0.3)), [200, 200, 429])
        yield a.built.writer.flush()
        yield deferLater(reactor, 0.3, lambda: None)  # a few reconciliations (sync_interval 0.1 s)
        statuses = []
        for _ in range(2):
            status, body = yield in_thread(ask, client_b)
            statuses.append(status)
            yield b.built.app.meter.drain()
            yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(statuses[-1], 429, statuses)
        self.assertLessEqual(statuses.count(200), 1, statuses)
        self.assertEqual(body["error"]["code"], "budget_exceeded")
        records = yield a.records()
        self.assertLessEqual(sum(1 for r in records if r.status == 200), 3 + 1)
        yield patch({"daily_usd": "0.01"})
        changed = time.monotonic()
        seen = yield self.wait_for(lambda: str(b.built.keys.lookup_cached(a.key)[1].daily_usd) == "0.01")
        self.assertLess(seen - changed, 0.5)
        self.assertEqual((yield self.spend(b, client_b, 1)), [200])

    @inlineCallbacks
    def test_a_revocation_through_the_api_stops_the_key_on_the_other_instance(self):
        """[state], key_cache_ttl 5 s: revoked through A's admin API, the key is refused on B within 0.5 s."""
        a, b = yield self.shared_pair(5.0)
        yield self.admin(a)
        client_b = b.openai_client(api_key=a.key)
        self.assertEqual((yield self.spend(b, client_b, 1)), [200])
        status, _, raw = yield in_thread(
            http, f"http://127.0.0.1:{self.admin_port}/admin/v1/keys/{a.key_id}/revoke", "POST",
            {"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"}, b"{}",
        )
        self.assertEqual(status, 200, raw)
        revoked = time.monotonic()
        seen = yield self.wait_for(lambda: b.built.keys.lookup_cached(a.key) in ((True, None), (False, None)))
        self.assertLess(seen - revoked, 0.5)
        status, body = yield in_thread(ask, client_b)
        self.assertEqual((status, body["error"]["code"]), (401, "invalid_api_key"))

    @inlineCallbacks
    def wait_for(self, predicate: Any, seconds: float = 5.0) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if predicate():
                    return time.monotonic()
            except (AttributeError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting")
            yield deferLater(reactor, 0.02, lambda: None)
