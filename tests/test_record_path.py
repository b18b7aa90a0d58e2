"""
One record path: a finished request becomes one UsageRecord in the meter,
with what routing learned (attempts, shadow model) read from the request's
info, published to every subscriber; one that raises loses nothing for the
others.
"""

from __future__ import annotations

from twisted.internet.defer import maybeDeferred
from twisted.logger import globalLogPublisher

from dd0c_route.metering.meter import Meter, Outcome, RequestInfo
from dd0c_route.metering.prices import Prices
from dd0c_route.metering.usage import UsageFacts


def finished_request(**extra) -> tuple[RequestInfo, UsageFacts]:
    info = RequestInfo(
        request_id="req_1", started=10.0, endpoint="/v1/chat/completions", key_id="key_1",
        provider="openai", model_requested="gpt-4o", model="gpt-4o", **extra,
    )
    facts = UsageFacts()
    facts.take_usage({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200})
    return info, facts


def test_a_raising_subscriber_never_loses_the_record_for_the_others() -> None:
    got_first, got_last, logged = [], [], []

    def broken(record):
        got_first.append(record)
        raise RuntimeError("subscriber bug")

    def observer(event):
        if event.get("log_failure") is not None:
            logged.append(event)

    meter = Meter(None, Prices.load(), maybeDeferred)
    meter.subscribe(broken)
    meter.subscribe(got_last.append)
    globalLogPublisher.addObserver(observer)
    try:
        info, facts = finished_request()
        meter.finalize(info, facts, Outcome(status=200, ended=10.5))
    finally:
        globalLogPublisher.removeObserver(observer)
    assert len(got_first) == 1
    assert got_last == got_first, "the later subscriber got the same record"
    assert len(logged) == 1 and logged[0]["log_failure"].check(RuntimeError)


def test_routing_notes_travel_on_the_info_into_the_record() -> None:
    records = []
    prices = Prices.load()
    meter = Meter(records.append, prices, maybeDeferred)
    info, facts = finished_request(attempts="gpt-4o@a:429,gpt-4o@b:200", shadow_model="gpt-4o-mini")
    meter.finalize(info, facts, Outcome(status=200, ended=10.5))
    (record,) = records
    assert record.attempts == "gpt-4o@a:429,gpt-4o@b:200"
    assert record.shadow_model == "gpt-4o-mini"
    expected = prices.cost_usd("gpt-4o-mini", 1000, 200)
    assert expected is not None and expected > 0
    assert record.cost_shadow_usd == expected


def test_no_shadow_cost_without_a_shadow_model() -> None:
    records = []
    meter = Meter(records.append, Prices.load(), maybeDeferred)
    info, facts = finished_request()
    meter.finalize(info, facts, Outcome(status=200, ended=10.5))
    assert (records[0].shadow_model, records[0].cost_shadow_usd, records[0].attempts) == (None, None, None)
