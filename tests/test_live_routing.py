"""
Routing, live: the tap's service with fake OpenAI and Anthropic providers
and the official SDKs.  Rules rewrite the model, fallbacks happen only
before the first byte, budgets stop requests, shadow mode records savings,
and every response and record explains itself.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario

from .live import in_thread, start_live_proxy

SIMPLE = [{"role": "user", "content": "Hi there, how are you?"}]
PROOF = [{"role": "user", "content": "Prove that the square root of 2 is irrational."}]

CHEAP_RULE = {
    "name": "cheap",
    "match": {"model": "gpt-4o", "complexity": ["simple"]},
    "action": {"model": "gpt-4o-mini"},
    "fallbacks": ["claude-haiku-4-5"],
}


def routing(mode: str = "enforce", rules: list | None = None, **extra) -> dict:
    return {"routing": dict({"mode": mode, "rules": [CHEAP_RULE] if rules is None else rules}, **extra)}


def sent_model(fake, index: int = -1) -> str:
    return json.loads(fake.state.requests[index].body)["model"]


class Reply:
    """A plain HTTP answer: status, lowercased headers, body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def post(live, body: dict, key: str | None = None, path: str = "/v1/chat/completions") -> Reply:
    """POST a JSON body with a blocking client (run it in a thread)."""
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=20)
    try:
        conn.request(
            "POST", path, json.dumps(body).encode(),
            {"authorization": "Bearer " + (key or live.key), "content-type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


class RuleTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_simple_prompt_rewritten_to_cheaper_model(self):
        """
        A simple prompt for gpt-4o reaches the provider as gpt-4o-mini; the
        headers and the record say which rule fired, the class, and what the
        requested model would have cost (more than what was paid).
        """
        live = yield start_live_proxy(self, routing())
        client = live.openai_client()
        raw = yield in_thread(lambda: client.chat.completions.with_raw_response.create(model="gpt-4o", messages=SIMPLE))
        self.assertEqual(sent_model(live.openai), "gpt-4o-mini")
        self.assertEqual(raw.headers["x-dd0c-model"], "gpt-4o-mini")
        self.assertEqual(raw.headers["x-dd0c-provider"], "openai")
        self.assertEqual(raw.headers["x-dd0c-route"], "cheap")
        self.assertEqual(raw.headers["x-dd0c-complexity"], "simple")
        records = yield live.records()
        (record,) = records
        self.assertEqual((record.model_requested, record.model, record.provider), ("gpt-4o", "gpt-4o-mini", "openai"))
        self.assertEqual((record.route_rule, record.complexity), ("cheap", "simple"))
        self.assertIsNone(record.attempts)
        self.assertGreater(record.cost_requested_usd, record.cost_usd)
        # The features the rule matched on are on the record (for what-if), never the text.
        estimate = sum(len(m["content"]) for m in SIMPLE) // 4
        self.assertEqual(
            (record.prompt_tokens_estimate, record.tools, record.images, record.json_mode, record.long_context),
            (estimate, False, False, False, False),
        )

    @inlineCallbacks
    def test_complex_prompt_kept_and_streaming_explains_too(self):
        """A proof is not rewritten (route default); a stream carries the same headers."""
        live = yield start_live_proxy(self, routing())
        client = live.openai_client()

        def run():
            with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=PROOF, stream=True) as response:
                text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
                return response.headers, text

        headers, text = yield in_thread(run)
        self.assertTrue(text.startswith("Echo:"))
        self.assertEqual(sent_model(live.openai), "gpt-4o")
        self.assertEqual(headers["x-dd0c-route"], "default")
        self.assertEqual(headers["x-dd0c-complexity"], "reasoning")
        self.assertEqual(headers["x-dd0c-model"], "gpt-4o")
        (record,) = yield live.records()
        self.assertEqual((record.route_rule, record.complexity, record.model), ("default", "reasoning", "gpt-4o"))
        self.assertEqual(record.cost_requested_usd, record.cost_usd)

    @inlineCallbacks
    def test_rule_to_another_provider_is_translated(self):
        """A rule sending gpt-4o to Claude: the Anthropic fake gets a Messages call, the client an OpenAI reply."""
        rule = {"name": "to-claude", "match": {"model": "gpt-4o"}, "action": {"model": "claude-haiku-4-5"}}
        live = yield start_live_proxy(self, routing(rules=[rule]))
        client = live.openai_client()
        raw = yield in_thread(lambda: client.chat.completions.with_raw_response.create(model="gpt-4o", messages=SIMPLE))
        completion = raw.parse()
        self.assertTrue(completion.choices[0].message.content.startswith("Echo:"))
        self.assertEqual(live.anthropic.state.requests[-1].path, "/v1/messages")
        self.assertEqual(sent_model(live.anthropic), "claude-haiku-4-5")
        self.assertEqual(len(live.openai.state.requests), 0)
        self.assertEqual((raw.headers["x-dd0c-provider"], raw.headers["x-dd0c-model"]), ("anthropic", "claude-haiku-4-5"))
        (record,) = yield live.records()
        self.assertEqual((record.provider, record.model, record.model_requested), ("anthropic", "claude-haiku-4-5", "gpt-4o"))

    @inlineCallbacks
    def test_alias_auto(self):
        """`auto` is served as the router chooses and counts as its target for savings."""
        live = yield start_live_proxy(self, routing(aliases={"auto": "gpt-4o"}))
        client = live.openai_client()
        yield in_thread(lambda: client.chat.completions.create(model="auto", messages=SIMPLE))
        yield in_thread(lambda: client.chat.completions.create(model="auto", messages=PROOF))
        self.assertEqual([sent_model(live.openai, i) for i in (0, 1)], ["gpt-4o-mini", "gpt-4o"])
        records = yield live.records()
        self.assertEqual([(r.model_requested, r.model) for r in records], [("gpt-4o", "gpt-4o-mini"), ("gpt-4o", "gpt-4o")])

    @inlineCallbacks
    def test_native_messages_routed_among_claude_models(self):
        """/v1/messages: a rule to a cheaper Claude rewrites only the body's model."""
        rule = {"name": "haiku", "match": {"model": "claude-opus-*", "complexity": ["simple"]}, "action": {"model": "claude-haiku-4-5"}}
        live = yield start_live_proxy(self, routing(rules=[rule]))
        client = live.anthropic_client()
        raw = yield in_thread(
            lambda: client.messages.with_raw_response.create(model="claude-opus-4-1", max_tokens=50, messages=SIMPLE)
        )
        self.assertEqual(sent_model(live.anthropic), "claude-haiku-4-5")
        self.assertEqual(raw.headers["x-dd0c-route"], "haiku")
        (record,) = yield live.records()
        self.assertEqual((record.model_requested, record.model), ("claude-opus-4-1", "claude-haiku-4-5"))


class FallbackTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_429_falls_back_before_the_client_sees_anything(self):
        """
        The first provider answers 429: the client gets the fallback's 200
        (never the 429), the record lists both attempts, and the provider
        that refused is not billed.
        """
        live = yield start_live_proxy(self, routing())
        live.openai.state.push(Scenario(status=429, headers={"retry-after": "7"}))
        client = live.openai_client()
        raw = yield in_thread(lambda: client.chat.completions.with_raw_response.create(model="gpt-4o", messages=SIMPLE))
        self.assertEqual(raw.status_code, 200)
        self.assertNotIn("retry-after", raw.headers)
        self.assertTrue(raw.parse().choices[0].message.content.startswith("Echo:"))
        self.assertEqual(len(live.openai.state.requests), 1)
        self.assertEqual(sent_model(live.anthropic), "claude-haiku-4-5")
        self.assertEqual((raw.headers["x-dd0c-provider"], raw.headers["x-dd0c-model"]), ("anthropic", "claude-haiku-4-5"))
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "gpt-4o-mini@openai:429,claude-haiku-4-5@anthropic:200")
        self.assertEqual((record.status, record.provider, record.model), (200, "anthropic", "claude-haiku-4-5"))
        self.assertGreater(record.prompt_tokens, 0)

    @inlineCallbacks
    def test_stream_5xx_falls_back(self):
        """A streamed request whose first provider answers 503 streams from the fallback."""
        live = yield start_live_proxy(self, routing())
        live.openai.state.push(Scenario(status=503))
        client = live.openai_client()

        def run():
            return "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(model="gpt-4o", messages=SIMPLE, stream=True)
                if c.choices
            )

        text = yield in_thread(run)
        self.assertTrue(text.startswith("Echo:"))
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "gpt-4o-mini@openai:503,claude-haiku-4-5@anthropic:200")
        self.assertTrue(record.stream)

    @inlineCallbacks
    def test_failure_after_first_byte_is_not_retried(self):
        """A stream reset after its first chunks is never retried: the fallback provider sees nothing."""
        live = yield start_live_proxy(self, routing())
        live.openai.state.push(Scenario(reset_after_chunks=2, chunk_count=6))
        client = live.openai_client()

        def run():
            got = []
            try:
                for chunk in client.chat.completions.create(model="gpt-4o", messages=SIMPLE, stream=True):
                    got.append(chunk)
            except Exception as error:  # the SDK raises on the error event
                return got, error
            return got, None

        chunks, error = yield in_thread(run)
        self.assertTrue(chunks)
        self.assertIsNotNone(error)
        self.assertEqual(len(live.anthropic.state.requests), 0)
        (record,) = yield live.records()
        self.assertIsNone(record.attempts)
        self.assertEqual(record.model, "gpt-4o-mini")
        self.assertEqual(record.error_type, "upstream_error")

    @inlineCallbacks
    def test_connect_failure_falls_back(self):
        """A provider that refuses connections is skipped for the next model, noted as connect_failed."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        extra = routing(rules=[{"name": "r", "match": {}, "action": {"model": "dead-1"}, "fallbacks": ["gpt-4o-mini"]}])
        live = yield start_live_proxy(self, extra | {"providers": {"dead": {"kind": "openai", "base_url": f"http://127.0.0.1:{dead}/v1", "models": ["dead-1"]}}})
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["x-dd0c-provider"], "openai")
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "dead-1@dead:connect_failed,gpt-4o-mini@openai:200")

    @inlineCallbacks
    def test_first_byte_timeout_falls_back_and_says_it_may_be_billed(self):
        """A first-byte timeout falls back, and the record says the provider may bill the first attempt."""
        live = yield start_live_proxy(self, routing() | {"timeouts": {"first_byte": 0.3}})
        live.openai.state.push(Scenario(hang=True))
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(response.status_code, 200)
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "gpt-4o-mini@openai:timeout_after_send,claude-haiku-4-5@anthropic:200")
        yield live.openai.state.wait_for_open_connections(0)

    @inlineCallbacks
    def test_no_fallback_after_send_when_disabled(self):
        """With fallback_after_send = false a timeout is answered 504, never retried."""
        live = yield start_live_proxy(self, routing(fallback_after_send=False) | {"timeouts": {"first_byte": 0.3}})
        live.openai.state.push(Scenario(hang=True))
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(response.status_code, 504)
        self.assertEqual(response.headers["x-dd0c-route"], "cheap")
        self.assertEqual(len(live.anthropic.state.requests), 0)

    @inlineCallbacks
    def test_last_attempt_error_is_relayed(self):
        """When every model of the chain fails, the client gets the last provider's error."""
        live = yield start_live_proxy(self, routing())
        live.openai.state.push(Scenario(status=500))
        live.anthropic.state.push(Scenario(status=529))
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertGreaterEqual(response.status_code, 500)
        self.assertEqual(response.headers["x-dd0c-provider"], "anthropic")
        (record,) = yield live.records()
        self.assertEqual(record.attempts, "gpt-4o-mini@openai:500,claude-haiku-4-5@anthropic:529")

    @inlineCallbacks
    def test_circuit_breaker_skips_a_failing_provider(self):
        """After `failures` failures the provider is skipped: the next request goes straight to the fallback."""
        live = yield start_live_proxy(self, routing(circuit_breaker={"failures": 1, "cooldown": 60}))
        live.openai.state.push(Scenario(status=500))
        first = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        second = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual((first.status_code, second.status_code), (200, 200))
        self.assertEqual(len(live.openai.state.requests), 1)
        self.assertEqual(len(live.anthropic.state.requests), 2)
        records = yield live.records()
        self.assertEqual(records[1].attempts, "gpt-4o-mini@openai:circuit_open,claude-haiku-4-5@anthropic:200")
        self.assertEqual(live.app.routing.breaker.open_providers(), ["openai"])

    @inlineCallbacks
    def test_all_circuits_open_is_a_503(self):
        """When every provider of the chain is cooling down, the answer is a 503 with retry-after."""
        rule = {"name": "only", "match": {}, "action": {"keep": True}}
        live = yield start_live_proxy(self, routing(rules=[rule], circuit_breaker={"failures": 1, "cooldown": 60}))
        live.openai.state.push(Scenario(status=500))
        first = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        second = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual((first.status_code, second.status_code), (500, 503))
        self.assertEqual(second.json()["error"]["code"], "circuit_open")
        self.assertLessEqual(int(second.headers["retry-after"]), 60)
        self.assertEqual(len(live.openai.state.requests), 1)


class BudgetTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_daily_budget_stops_with_429(self):
        """Once a key's spend reaches its daily cap, the next request is a 429 budget_exceeded."""
        live = yield start_live_proxy(self, {"budgets": {"test": {"daily_usd": "0.000001"}}})
        first = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(first.status_code, 200)
        yield live.records()  # the first record has been counted
        second = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(second.status_code, 429)
        error = second.json()["error"]
        self.assertEqual(error["code"], "budget_exceeded")
        self.assertIn("daily limit of $0.000001", error["message"])
        self.assertGreater(int(second.headers["retry-after"]), 0)
        self.assertEqual(second.headers["x-dd0c-route"], "default")
        self.assertEqual(len(live.openai.state.requests), 1)
        records = yield live.records()
        self.assertEqual([r.status for r in records], [200, 429])
        self.assertEqual(records[1].error_type, "budget_exceeded")

    @inlineCallbacks
    def test_rate_limit_by_team(self):
        """A team's requests-per-minute limit refuses the extra request with rate_limited."""
        live = yield start_live_proxy(self, {"budgets": {"team:team-a": {"requests_per_minute": 2}}})
        statuses = []
        for _ in range(3):
            response = yield in_thread(post, live, {"model": "gpt-4o-mini", "messages": SIMPLE})
            statuses.append(response.status_code)
        self.assertEqual(statuses, [200, 200, 429])
        self.assertEqual(response.json()["error"]["code"], "rate_limited")
        self.assertIn("retry-after", response.headers)
        other, _ = live.add_key("other", team="team-b")
        response = yield in_thread(post, live, {"model": "gpt-4o-mini", "messages": SIMPLE}, other)
        self.assertEqual(response.status_code, 200)

    @inlineCallbacks
    def test_anthropic_sdk_sees_a_rate_limit_error(self):
        """A native Anthropic client gets the 429 in its own error shape."""
        live = yield start_live_proxy(self, {"budgets": {"*": {"requests_per_minute": 1}}})
        client = live.anthropic_client()
        yield in_thread(lambda: client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=SIMPLE))
        import anthropic

        with self.assertRaises(anthropic.RateLimitError):
            yield in_thread(lambda: client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=SIMPLE))


class ShadowTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_shadow_records_savings_without_applying(self):
        """Shadow: the provider gets the requested model; the record keeps the rule, its model and its cost."""
        live = yield start_live_proxy(self, routing("shadow"))
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(sent_model(live.openai), "gpt-4o")
        self.assertEqual(response.headers["x-dd0c-route"], "shadow:cheap")
        self.assertEqual(response.headers["x-dd0c-model"], "gpt-4o")
        (record,) = yield live.records()
        self.assertEqual((record.route_rule, record.model, record.shadow_model), ("shadow:cheap", "gpt-4o", "gpt-4o-mini"))
        self.assertIsNotNone(record.cost_shadow_usd)
        self.assertLess(record.cost_shadow_usd, record.cost_usd)

    @inlineCallbacks
    def test_off_mode_still_explains(self):
        """Routing off: no rule applies, and the headers still say default and the class."""
        live = yield start_live_proxy(self, routing("off"))
        response = yield in_thread(post, live, {"model": "gpt-4o", "messages": SIMPLE})
        self.assertEqual(sent_model(live.openai), "gpt-4o")
        self.assertEqual((response.headers["x-dd0c-route"], response.headers["x-dd0c-complexity"]), ("default", "simple"))
