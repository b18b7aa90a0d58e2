"""
The admin listener, live: the tap's service with ``[admin] listen`` on
loopback, requests through the official SDK, then ``/metrics`` parsed by
``prometheus_client.parser`` and compared with the ledger; ``/readyz``
before the key cache loads, after, and while draining; admin keys; the loop
guard; paths without ``/v1``; X-Request-ID.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any, Optional

import openai
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.ledger.sqlite import SQLiteLedger
from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy

MESSAGES = [{"role": "user", "content": "Count the requests please"}]
ADMIN = {"admin": {"listen": "tcp:0:interface=127.0.0.1"}}


def http(url: str, method: str = "GET", headers: Optional[dict[str, str]] = None, body: Optional[bytes] = None) -> tuple[int, dict[str, str], bytes]:
    """A blocking request (call it in a thread): status, headers, body."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback test server
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback test server
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def admin_port(live: Any) -> Deferred[int]:
    d: Deferred[int] = Deferred()

    def got(port: Any) -> Any:
        d.callback(port.getHost().port)
        return port

    live.built.admin_server._waitingForPort.addCallback(got)
    return d


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted labels: value} of one sample name in an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class MetricsTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_counters_equal_requests_and_cost_equals_ledger(self):
        """
        3 non-stream gpt-4o-mini, 2 streamed gpt-4o, 1 provider 500 and 1
        unknown model: the request counter is exactly that per label set,
        token and cost counters equal the ledger's sums, gauges are there.
        """
        live = yield start_live_proxy(self, extra_config=ADMIN)
        port = yield admin_port(live)
        client = live.openai_client()
        for _ in range(3):
            yield in_thread(client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES)
        for _ in range(2):
            stream = yield in_thread(
                client.chat.completions.create, model="gpt-4o", messages=MESSAGES, stream=True
            )
            yield in_thread(lambda s=stream: list(s))
        live.openai.state.push(Scenario(status=500))
        with self.assertRaises(openai.InternalServerError):
            yield in_thread(client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES)
        with self.assertRaises(openai.NotFoundError):
            yield in_thread(client.chat.completions.create, model="no-such-model", messages=MESSAGES)
        records = yield live.records()
        self.assertEqual(len(records), 7)

        status, headers, body = yield in_thread(http, f"http://127.0.0.1:{port}/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        text = body.decode()
        requests = samples(text, "dd0c_route_requests_total")

        def count(model: str, status: str, provider: str = "openai") -> float:
            key = (("endpoint", "/v1/chat/completions"), ("model", model), ("provider", provider), ("route", "default"), ("status", status))
            return requests.get(key, 0)

        self.assertEqual(count("gpt-4o-mini", "200"), 3)
        self.assertEqual(count("gpt-4o", "200"), 2)
        self.assertEqual(count("gpt-4o-mini", "500"), 1)
        self.assertEqual(count("no-such-model", "404", provider="none"), 1)
        self.assertEqual(sum(requests.values()), 7)

        cost = sum(samples(text, "dd0c_route_cost_usd_total").values())
        ledger_cost = sum((r.cost_usd or Decimal(0)) for r in records)
        self.assertGreater(ledger_cost, 0)
        self.assertAlmostEqual(cost, float(ledger_cost), places=9)
        prompt = sum(samples(text, "dd0c_route_prompt_tokens_total").values())
        self.assertEqual(prompt, sum(r.prompt_tokens or 0 for r in records))
        completion = sum(samples(text, "dd0c_route_completion_tokens_total").values())
        self.assertEqual(completion, sum(r.completion_tokens or 0 for r in records))
        latency = samples(text, "dd0c_route_request_duration_seconds_count")
        self.assertEqual(sum(latency.values()), 7)
        for gauge in (
            "dd0c_route_active_requests", "dd0c_route_active_streams", "dd0c_route_upstream_connections_open",
            "dd0c_route_ledger_queue_depth", "dd0c_route_ledger_oldest_record_age_seconds",
            "dd0c_route_key_cache_keys", "dd0c_route_key_cache_hit_ratio", "dd0c_route_ready",
        ):
            self.assertIn(gauge, samples(text, gauge) and gauge, gauge)
            self.assertEqual(len(samples(text, gauge)), 1, gauge)
        self.assertEqual(samples(text, "dd0c_route_active_requests")[()], 0)
        self.assertEqual(samples(text, "dd0c_route_breaker_open")[(("provider", "openai"),)], 0)
        self.assertGreaterEqual(samples(text, "dd0c_route_key_cache_hits_total")[()], 6)
        self.assertEqual(samples(text, "dd0c_route_key_cache_keys")[()], 1)
        # The proxy key never appears on the admin side.
        self.assertNotIn(live.key, text)
        self.assertNotIn(live.key_id, text)

    @inlineCallbacks
    def test_per_key_label_only_when_configured(self):
        """``[admin] metrics_per_key = true`` adds key_id to the request counter."""
        live = yield start_live_proxy(
            self, extra_config={"admin": {"listen": "tcp:0:interface=127.0.0.1", "metrics_per_key": True}}
        )
        port = yield admin_port(live)
        client = live.openai_client()
        yield in_thread(client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES)
        yield live.records()
        _, _, body = yield in_thread(http, f"http://127.0.0.1:{port}/metrics")
        (labels,) = samples(body.decode(), "dd0c_route_requests_total")
        self.assertIn(("key_id", live.key_id), labels)


class ReadinessTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_not_ready_until_keys_load_then_ready_then_draining(self):
        """
        /readyz is 503 while the key cache's first load is held back, 200
        once it finishes, and 503 again from the moment the drain starts;
        /livez is 200 throughout.
        """
        gate = threading.Event()
        original = SQLiteLedger.list_keys

        def slow_list_keys(store: Any) -> Any:
            gate.wait(20)
            return original(store)

        self.patch(SQLiteLedger, "list_keys", slow_list_keys)
        self.addCleanup(gate.set)
        live = yield start_live_proxy(self, extra_config=ADMIN)
        port = yield admin_port(live)
        base = f"http://127.0.0.1:{port}"
        status, _, body = yield in_thread(http, base + "/readyz")
        self.assertEqual(status, 503)
        report = json.loads(body)
        self.assertEqual(report["status"], "not_ready")
        self.assertFalse(report["checks"]["key_cache_loaded"])
        self.assertTrue(report["checks"]["not_draining"])
        status, _, _ = yield in_thread(http, base + "/livez")
        self.assertEqual(status, 200)

        gate.set()
        for _ in range(100):
            status, _, body = yield in_thread(http, base + "/readyz")
            if status == 200:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "ready", "checks": {
            "not_draining": True, "key_cache_loaded": True, "budgets_seeded": True, "ledger_backlog": True,
        }})

        # A stream in flight holds the drain open; /readyz answers 503 meanwhile.
        live.openai.state.push(Scenario(chunk_count=20, chunk_delay=0.05))
        client = live.openai_client()
        streamed = in_thread(
            lambda: "".join(
                (c.choices[0].delta.content or "") if c.choices else ""
                for c in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            )
        )
        while live.app.active == 0:
            yield deferLater(reactor, 0.01, lambda: None)
        stopping = live.built.service.stopService()
        status, _, body = yield in_thread(http, base + "/readyz")
        self.assertEqual(status, 503)
        self.assertFalse(json.loads(body)["checks"]["not_draining"])
        text = yield streamed
        self.assertTrue(text.startswith("Echo:"))
        yield stopping
        records = list(SQLiteLedger(live.built.store.path).read_records())
        self.assertEqual([(r.status, r.disconnected) for r in records], [(200, False)])


class AdminKeyTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_require_key_admits_only_admin_keys(self):
        """With require_key, no key is 401, a plain proxy key 403, an admin key 200."""
        live = yield start_live_proxy(
            self, extra_config={"admin": {"listen": "tcp:0:interface=127.0.0.1", "require_key": True}}
        )
        port = yield admin_port(live)
        admin_key = generate_key()
        live.built.store.add_key(KeyInfo(new_key_id(), "ops", hash_key(admin_key), 1.0, admin=True))
        url = f"http://127.0.0.1:{port}/metrics"
        status, _, _ = yield in_thread(http, url)
        self.assertEqual(status, 401)
        status, _, _ = yield in_thread(http, url, headers={"Authorization": f"Bearer {live.key}"})
        self.assertEqual(status, 403)
        status, _, body = yield in_thread(http, url, headers={"Authorization": f"Bearer {admin_key}"})
        self.assertEqual(status, 200)
        self.assertIn(b"dd0c_route_requests", body)


class GuardTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_loop_unprefixed_paths_and_request_id(self):
        """
        Upstream requests carry ``Via: 1.1 dd0c-route``; a request carrying
        it is answered 508 (OpenAI-shaped); /chat/completions and /models
        work without /v1; X-Request-ID is adopted, echoed and recorded.
        """
        live = yield start_live_proxy(self)
        auth = {"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"}
        body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
        status, headers, answer = yield in_thread(
            http, live.base_url + "/chat/completions", "POST", dict(auth, **{"X-Request-ID": "trace-42 <x>"}), body
        )
        self.assertEqual(status, 200, answer)
        self.assertEqual(headers["x-request-id"], "trace-42x")
        self.assertEqual(live.openai.state.requests[-1].headers["via"], ["1.1 dd0c-route"])
        status, _, answer = yield in_thread(http, live.base_url + "/models", headers=auth)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer)["object"], "list")

        status, headers, answer = yield in_thread(
            http, live.base_url + "/v1/chat/completions", "POST", dict(auth, Via="1.1 other, 1.1 dd0c-route"), body
        )
        self.assertEqual(status, 508)
        self.assertEqual(json.loads(answer)["error"]["code"], "loop_detected")
        self.assertEqual(len(live.openai.state.requests), 1)
        records = yield live.records()
        self.assertEqual([r.status for r in records], [200, 200, 508])
        self.assertEqual(records[0].client_request_id, "trace-42x")
        self.assertEqual(records[0].endpoint, "/v1/chat/completions")
        self.assertTrue(records[0].request_id.startswith("req_"))
