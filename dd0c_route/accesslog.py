# Tests: tests/test_jsonlog.py, tests/test_admin_live.py
"""
``[log] access = true``: one access event per finished request.

A record subscriber (once per request, from the record, so errors and
disconnects are logged like successes): request id, the client's
``X-Request-ID``, key id, endpoint path (never a query string: the record
keeps the path only), model, status and latency.  Never a key: the record
holds only the key's id, and every event passes the redacting observer.
"""

from __future__ import annotations

from twisted.logger import Logger

from .ledger.records import UsageRecord

__all__ = ["log_access"]

_log = Logger(namespace="dd0c_route.access")


def log_access(record: UsageRecord) -> None:
    _log.info(
        "access {request_id} {endpoint} {key_id} model={model} status={status} {latency_ms:.1f}ms",
        request_id=record.request_id,
        client_request_id=record.client_request_id,
        key_id=record.key_id,
        endpoint=record.endpoint,
        model=record.model or record.model_requested,
        status=record.status,
        latency_ms=record.latency_ms,
        stream=record.stream,
        disconnected=record.disconnected,
    )
