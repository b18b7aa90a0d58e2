"""
The meter: provider usage first, local counts only for the gaps, Claude
calibrated, unknown prices unknown, exactly one record.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from dd0c_route.metering import meter as meter_module
from dd0c_route.metering.meter import CLIENT_TEXT_LIMIT, Meter, Outcome, RequestInfo, client_text
from dd0c_route.metering.prices import Prices
from dd0c_route.metering.usage import UsageFacts


class WordCounter:
    """A counter whose answers are easy to predict: one token per word."""

    def count_text(self, model, text):
        return len(text.split())

    def count_prompt(self, model, messages):
        return sum(len(str(m.get("content", "")).split()) for m in messages) + 3


class Harness:
    def __init__(self):
        self.records = []
        self.threads: list[Deferred] = []
        self.meter = Meter(self.records.append, Prices.load(), self.run, WordCounter())

    def run(self, f, *args):
        d = maybeDeferred(f, *args)
        self.threads.append(d)
        return d


def info(model="gpt-4o", stream=True, messages=None, started=100.0):
    return RequestInfo(
        request_id="req_1", started=started, endpoint="/v1/chat/completions", key_id="key_1",
        provider="openai", model_requested=model, model=model, stream=stream,
        messages=messages if messages is not None else [{"role": "user", "content": "one two three four"}],
    )


class MeterTests(SynchronousTestCase):
    def test_provider_usage_is_the_record(self):
        """With provider usage nothing is counted locally; cost is Decimal from the table."""
        h = Harness()
        facts = UsageFacts()
        facts.take_usage({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
        h.meter.finalize(info(), facts, Outcome(status=200, ended=100.5, ttfb=100.1))
        (record,) = h.records
        self.assertEqual(h.threads, [])
        self.assertEqual((record.prompt_tokens, record.completion_tokens), (1000, 500))
        self.assertEqual(record.tokens_counted_locally, "")
        price = Prices.load().price_for("gpt-4o").rates.base
        expected = (price.input * 1000 + price.output * 500) / Decimal(1_000_000)
        self.assertEqual(record.cost_usd, expected)
        self.assertEqual((record.price_source, record.price_tier), (Prices.load().dataset.source, "standard"))
        self.assertIsInstance(record.cost_usd, Decimal)
        self.assertEqual(record.latency_ms, 500.0)
        self.assertEqual(record.ttfb_ms, 100.0)

    def test_cut_stream_bills_delivered_text(self):
        """A stream cut short: completion counted on the delivered text, prompt too."""
        h = Harness()
        facts = UsageFacts()
        facts.delivered.extend(["Hello ", "there ", "friend"])
        h.meter.finalize(info(), facts, Outcome(status=200, ended=101.0, disconnected=True))
        (record,) = h.records
        self.assertEqual(record.completion_tokens, 3)
        self.assertEqual(record.prompt_tokens, 7)
        self.assertEqual(record.tokens_counted_locally, "prompt,completion")
        self.assertTrue(record.disconnected)

    def test_disconnect_before_first_token(self):
        """Nothing delivered: 0 completion tokens, the prompt still billed."""
        h = Harness()
        h.meter.finalize(info(), UsageFacts(), Outcome(status=0, ended=101.0, disconnected=True))
        (record,) = h.records
        self.assertEqual(record.completion_tokens, 0)
        self.assertEqual(record.prompt_tokens, 7)
        self.assertGreater(record.cost_usd, 0)

    def test_provider_refusal_costs_nothing(self):
        """A provider 4xx is not billable: no local counting, no cost."""
        h = Harness()
        h.meter.finalize(info(), UsageFacts(), Outcome(status=429, ended=101.0, error_type="rate_limit_exceeded"))
        (record,) = h.records
        self.assertIsNone(record.prompt_tokens)
        self.assertIsNone(record.completion_tokens)
        self.assertEqual(h.threads, [])

    def test_unknown_model_cost_is_unknown(self):
        """A model missing from the price table: cost None, never zero."""
        h = Harness()
        facts = UsageFacts()
        facts.take_usage({"prompt_tokens": 10, "completion_tokens": 5})
        h.meter.finalize(info(model="my-local-llama"), facts, Outcome(status=200, ended=101.0))
        self.assertIsNone(h.records[0].cost_usd)

    def test_claude_output_calibrated_by_reported_prompt(self):
        """
        A Claude stream cut after message_start: the provider reported the
        prompt (twice our local count here), so the local output count is
        scaled by the same ratio.
        """
        h = Harness()
        facts = UsageFacts()
        facts.take_usage({"input_tokens": 14, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
        facts.completion_tokens = None  # message_start's placeholder is not a final count
        facts.delivered.extend(["a b c d e"])
        h.meter.finalize(info(model="claude-sonnet-4-5"), facts, Outcome(status=200, ended=101.0, disconnected=True))
        (record,) = h.records
        self.assertEqual(record.prompt_tokens, 14)
        self.assertEqual(record.completion_tokens, 10)
        self.assertEqual(record.tokens_counted_locally, "completion")

    def test_drain_waits_for_counting(self):
        """drain() fires only once every record being counted is submitted."""
        h = Harness()
        pending: Deferred = Deferred()
        h.meter._run_in_thread = lambda f, *a: pending.addCallback(lambda _: f(*a))
        h.meter.finalize(info(), UsageFacts(), Outcome(status=0, ended=1.0, disconnected=True))
        drained = h.meter.drain()
        self.assertNoResult(drained)
        self.assertEqual(h.records, [])
        pending.callback(None)
        self.successResultOf(drained)
        self.assertEqual(len(h.records), 1)


class UnreachableNotBilledTests(SynchronousTestCase):
    def test_502_unreachable_costs_nothing(self):
        """A provider that was never reached bills nothing: no local counts."""
        h = Harness()
        h.meter.finalize(info(), UsageFacts(), Outcome(status=502, ended=101.0, error_type="upstream_unreachable"))
        (record,) = h.records
        self.assertIsNone(record.prompt_tokens)
        self.assertEqual(h.threads, [])


class BatchingTests(SynchronousTestCase):
    def test_one_thread_hand_off_per_turn(self):
        """
        With a clock, every count needed in one reactor turn goes to the
        thread as one call (a mass disconnect is one hand-off), and each
        record is still submitted exactly once.
        """
        from twisted.internet.task import Clock

        h = Harness()
        clock = Clock()
        calls = []

        def run(f, *args):
            calls.append(args)
            return maybeDeferred(f, *args)

        h.meter = Meter(h.records.append, Prices.load(), run, WordCounter(), clock=clock)
        for _ in range(5):
            facts = UsageFacts()
            facts.delivered.append("two words")
            h.meter.finalize(info(), facts, Outcome(status=200, ended=101.0, disconnected=True))
        self.assertEqual(h.records, [])
        self.assertEqual(h.meter.pending, 5)
        clock.advance(0)
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(h.records), 5)
        self.assertEqual({r.completion_tokens for r in h.records}, {2})
        self.assertEqual(h.meter.pending, 0)

    def test_one_failing_count_does_not_sink_the_batch(self):
        """A job whose counting raises still gets its record; the others are counted."""
        from twisted.internet.task import Clock

        class Fussy(WordCounter):
            def count_text(self, model, text):
                if "boom" in text:
                    raise ValueError("cannot count")
                return super().count_text(model, text)

        records = []
        clock = Clock()
        meter = Meter(records.append, Prices.load(), maybeDeferred, Fussy(), clock=clock)
        for text in ("fine text", "boom"):
            facts = UsageFacts()
            facts.delivered.append(text)
            meter.finalize(info(), facts, Outcome(status=200, ended=101.0, disconnected=True))
        clock.advance(0)
        self.assertEqual(len(records), 2)
        self.assertEqual(records[0].completion_tokens, 2)
        self.assertEqual(records[1].tokens_counted_locally, "")
        self.flushLoggedErrors()

    def test_drain_flushes_queued_jobs(self):
        """drain() sends jobs still waiting for their turn and waits for them."""
        from twisted.internet.task import Clock

        records = []
        clock = Clock()
        meter = Meter(records.append, Prices.load(), maybeDeferred, WordCounter(), clock=clock)
        meter.finalize(info(), UsageFacts(), Outcome(status=0, ended=1.0, disconnected=True))
        self.successResultOf(meter.drain())
        self.assertEqual(len(records), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class DeliveredLimitTests(SynchronousTestCase):
    def test_delivered_text_is_bounded_and_extrapolated(self):
        """
        Past the per-request limit delivered text is only measured, so a
        stream's memory stays bounded; its count is extrapolated by length.
        """
        from dd0c_route.metering import usage

        h = Harness()
        facts = UsageFacts()
        original = usage.DELIVERED_LIMIT
        usage.DELIVERED_LIMIT = 40
        try:
            for _ in range(10):
                facts.delivered.append("word " * 2)  # 10 characters, 2 words
        finally:
            usage.DELIVERED_LIMIT = original
        self.assertEqual(facts.delivered.chars, 40)
        self.assertEqual(facts.delivered.dropped, 60)
        self.assertEqual(len(facts.delivered), 4)
        h.meter.finalize(info(), facts, Outcome(status=200, ended=101.0, disconnected=True))
        # 8 words counted in the 40 kept characters, scaled to 100: 20.
        self.assertEqual(h.records[0].completion_tokens, 20)




class ClientTextTests(SynchronousTestCase):
    """client_text with its memo of plain strings (issue #18) is client_text without it."""

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(max_size=40) | st.sampled_from(["gpt-4o", "sk-" + "a" * 40, "model sk-proj-" + "b" * 40]), max_size=8))
    def test_memo_changes_nothing(self, values: list[str]) -> None:
        """Any sequence of strings, seen once or again: the same answer as a fresh redaction."""
        from dd0c_route.redaction import redact_sensitive

        for value in values + values:
            expected = redact_sensitive(value) if len(value) <= CLIENT_TEXT_LIMIT else None
            got = client_text(value)
            if expected is not None:
                assert got == expected

    def test_only_unchanged_strings_are_kept(self) -> None:
        """A string that needed redaction never enters the memo (it holds no credential)."""
        key = "sk-proj-" + "c" * 40
        assert key not in client_text(f"gpt-4o {key}")
        assert not any(key in kept for kept in meter_module._PLAIN)
        client_text("gpt-4o-mini")
        assert "gpt-4o-mini" in meter_module._PLAIN
