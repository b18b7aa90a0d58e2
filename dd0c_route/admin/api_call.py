# Tests: tests/test_admin_api.py, tests/test_admin_security.py
"""
One admin API call as its endpoint sees it: the parsed request, the
OpenAI-shaped error that ends it, the JSON answer, and the checks of its
arguments (each error names the parameter at fault).  Shared by the
endpoint modules (:mod:`.api_keys`, :mod:`.api_usage`, :mod:`.api_routing`)
and the dispatcher (:mod:`.api`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

import attrs
from twisted.web.iweb import IRequest

from ..ledger.usage_query import period_bounds

__all__ = [
    "ApiError", "Call", "Handler", "parse_int", "parse_limit", "parse_money", "parse_range", "parse_text",
    "parse_time", "respond_json", "str_or_none",
]


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        elif self.status == 403:
            kind = "permission_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def respond_json(request: IRequest, status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(data)).encode()])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
    for name, value in headers:
        request.responseHeaders.addRawHeader(name, value)
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def parse_time(text: Optional[str], name: str, default: float) -> float:
    """An ISO 8601 instant (naive means UTC) as a timestamp."""
    if text is None or text == "":
        return default
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date or time, like 2025-01-31T00:00:00Z", "invalid_time", name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_money(value: Any, name: str) -> Optional[Decimal]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ApiError(400, f"{name} must be a number of USD (or null)", "invalid_value", name)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ApiError(400, f"{name} must be a number of USD (or null)", "invalid_value", name) from None
    if not amount.is_finite() or amount < 0:
        raise ApiError(400, f"{name} must be a non-negative number of USD", "invalid_value", name)
    return amount


def parse_limit(value: Any, name: str) -> Optional[int]:
    """A per-minute limit: a positive whole number, or null for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**53:
        raise ApiError(400, f"{name} must be a positive whole number (or null)", "invalid_value", name)
    return value


def parse_text(body: dict[str, Any], name: str, required: bool = False) -> Optional[str]:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ApiError(400, f"{name} must be a non-empty string of at most 200 characters", "invalid_value", name)
    return value.strip()


@attrs.define
class Call:
    """A routed request: its method, query, path match and body (read once)."""

    request: IRequest
    method: bytes
    args: dict[bytes, list[bytes]]
    match: re.Match[str]
    body: bytes
    ctype: str

    def arg(self, name: str) -> Optional[str]:
        values = self.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "The body must be a JSON object", "invalid_json") from None
        if not isinstance(value, dict):
            raise ApiError(400, "The body must be a JSON object", "invalid_json")
        return value


Handler = Callable[[Call], Any]


def parse_range(call: Call, now: float, default_start: Optional[float] = None) -> tuple[float, float]:
    """``from`` and ``to`` (default: this month so far, or from ``default_start``)."""
    start = parse_time(call.arg("from"), "from", period_bounds("monthly", now)[0] if default_start is None else default_start)
    end = parse_time(call.arg("to"), "to", now + 1)
    if end <= start:
        raise ApiError(400, "to must be after from", "invalid_time", "to")
    return start, end


def parse_int(text: Optional[str], name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", "invalid_value", name) from None
    if value < 0:
        raise ApiError(400, f"{name} must not be negative", "invalid_value", name)
    return value


def str_or_none(value: Any, name: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, f"{name} must be an ISO 8601 string", "invalid_time", name)
