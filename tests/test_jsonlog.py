"""JSON log lines and the access event (dd0c_route/jsonlog.py, accesslog.py)."""

from __future__ import annotations

import io
import json

from twisted.logger import LogPublisher, textFileLogObserver

from dd0c_route.accesslog import log_access
from dd0c_route.jsonlog import use_json_lines
from dd0c_route.ledger.keys import generate_key
from dd0c_route.ledger.records import UsageRecord
from dd0c_route.redacting_log import RedactingObserver


def test_json_lines_behind_the_redactor_hold_no_secret(monkeypatch):
    out = io.StringIO()
    sinks = LogPublisher()
    use_json_lines(sinks)
    sinks.addObserver(textFileLogObserver(out))
    front = LogPublisher()
    front.addObserver(RedactingObserver([sinks]))
    from dd0c_route import accesslog

    monkeypatch.setattr(accesslog._log, "observer", front)
    key = generate_key()
    log_access(UsageRecord(request_id="req_1", key_id="key_1", model=f"bad {key}", status=200, latency_ms=12.5, endpoint="/v1/chat/completions"))
    accesslog._log.info("multi\nline {secret}", secret=key)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "\x1e" not in out.getvalue()
    events = [json.loads(line) for line in lines]
    assert events[0]["request_id"] == "req_1" and events[0]["status"] == 200 and events[0]["key_id"] == "key_1"
    assert events[0]["text"].startswith("access req_1 /v1/chat/completions key_1 model=")
    assert key not in out.getvalue()
