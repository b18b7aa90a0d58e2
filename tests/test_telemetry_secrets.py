"""
Every kind of usage and telemetry event, serialized to JSON, holds no key:
usage records (built by the meter from secret-laden client input), key
records, and log events as a JSON log sink receives them.
"""

from __future__ import annotations

import io
import json
import secrets

import attrs
from twisted.logger import Logger, LogPublisher, jsonFileLogObserver
from twisted.python.failure import Failure

from dd0c_route.config import parse_config
from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key
from dd0c_route.ledger.records import record_to_json
from dd0c_route.metering.meter import Meter, Outcome, RequestInfo
from dd0c_route.metering.prices import Prices
from dd0c_route.metering.usage import UsageFacts
from dd0c_route.redacting_observer import RedactingObserver


def generated_secrets() -> list[str]:
    """One fake secret of each shape the redactor knows."""
    tail = "FAKE" + secrets.token_urlsafe(32)
    return ["sk-" + tail, "sk-proj-" + tail, "sk-ant-api03-" + tail, "sk-ant-admin01-" + tail, generate_key()]


def assert_clean(text: str, fed: list[str]) -> None:
    for secret in fed:
        assert secret not in text, f"{secret[:10]}… leaked"


def test_usage_records_never_hold_keys():
    """
    A client that pastes keys into the model name and the path: the record
    the meter builds, serialized as the CLI prints it, holds none of them.
    """
    fed = generated_secrets()
    records = []
    meter = Meter(records.append, Prices.load(), lambda f, *a: None)
    for secret in fed:
        info = RequestInfo(
            request_id="req_x", started=1.0, endpoint=f"/v1/{secret}", key_id="key_abc",
            model_requested=secret, model=secret, provider="openai", stream=False,
        )
        facts = UsageFacts()
        facts.take_body({"id": f"chatcmpl-{secret}", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        meter.finalize(info, facts, Outcome(status=404, ended=2.0, error_type=f"bad {secret}"))
    assert len(records) == len(fed)
    assert_clean(json.dumps([record_to_json(r) for r in records]), fed)


def test_key_records_hold_only_hashes():
    """A stored key serializes to its id, name and SHA-256, never the key."""
    key = generate_key()
    info = KeyInfo("key_1", "ops", hash_key(key), 1.0, "team")
    assert_clean(json.dumps(attrs.asdict(info)), [key])


def test_config_repr_and_json_hold_no_provider_key():
    """The config (as a log line or a dump would format it) hides provider keys."""
    fed = generated_secrets()
    config = parse_config({"providers": {"openai": {"api_key": fed[1]}, "anthropic": {"api_key": fed[2]}}}, {})
    assert_clean(repr(config), fed)
    assert_clean(json.dumps(attrs.asdict(config, recurse=True), default=repr), fed)


def test_json_log_events_are_redacted():
    """
    Log events carrying keys in format arguments, extra fields and a
    failure reach a JSON log file redacted.
    """
    fed = generated_secrets()
    out = io.StringIO()
    publisher = LogPublisher(RedactingObserver([jsonFileLogObserver(out)]))
    log = Logger(observer=publisher, namespace="test")
    log.info("calling with {header}", header={"authorization": "Bearer " + fed[0]})
    log.warn("provider said {body}", body=f'{{"error": "bad key {fed[1]}"}}', key=fed[2])
    try:
        raise ValueError(f"upstream rejected {fed[3]}")
    except ValueError:
        log.failure("request failed for {model}", Failure(), model=fed[4])
    text = out.getvalue()
    assert text.count("\x1e") == 3
    assert_clean(text, fed)
