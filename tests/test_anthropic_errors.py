"""
Tests for dd0c_route.providers.anthropic_errors: Anthropic errors in
OpenAI's shape, with no secret ever echoed.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from dd0c_route.providers.anthropic_translate import (
    UPSTREAM_AUTH_MESSAGE,
    anthropic_error_to_openai,
    anthropic_error_to_openai_payload,
)

try:
    from openapi_schema import validate
except ImportError:  # tests/ collected as a package
    from tests.openapi_schema import validate


def body(kind: str, message: str = "upstream says no") -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "kind", "new_status", "new_type", "code"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", None),
        (401, "authentication_error", 401, "authentication_error", "invalid_api_key"),
        (402, "billing_error", 402, "billing_error", "billing_error"),
        (403, "permission_error", 403, "permission_error", None),
        (404, "not_found_error", 404, "not_found_error", None),
        (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", 429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", 500, "server_error", None),
        (504, "timeout_error", 504, "timeout_error", "timeout"),
        (529, "overloaded_error", 529, "overloaded_error", "overloaded"),
    ],
)
def test_error_table(status: int, kind: str, new_status: int, new_type: str, code: Optional[str]) -> None:
    """
    Each Anthropic error type maps to its status, OpenAI type and code in a
    schema-valid ErrorResponse; 529 stays 529.
    """
    got_status, payload, _ = anthropic_error_to_openai(status, body(kind), {})
    validate("ErrorResponse", payload)
    assert got_status == new_status
    assert payload["error"]["type"] == new_type
    assert payload["error"]["code"] == code
    assert payload["error"]["param"] is None


def test_message_kept() -> None:
    """
    Upstream's message reaches the client for non-auth errors.
    """
    _, payload, _ = anthropic_error_to_openai(400, body("invalid_request_error", "max_tokens: too big"), {})
    assert payload["error"]["message"] == "max_tokens: too big"


@pytest.mark.parametrize("message", ["invalid x-api-key", "key sk-ant-api03-SECRET is revoked", ""])
def test_auth_message_fixed(message: str) -> None:
    """
    An authentication error always carries the fixed text, never upstream's
    message (which might quote the key).
    """
    _, payload, _ = anthropic_error_to_openai(401, body("authentication_error", message), {})
    assert payload["error"]["message"] == UPSTREAM_AUTH_MESSAGE
    assert "SECRET" not in json.dumps(payload)


def test_keylike_text_masked() -> None:
    """
    Anything shaped like an Anthropic key is masked in other messages too.
    """
    _, payload, _ = anthropic_error_to_openai(
        400, body("invalid_request_error", "bad header sk-ant-api03-abcDEF_123-xyz here"), {}
    )
    assert payload["error"]["message"] == "bad header [redacted] here"


def test_rate_limit_headers() -> None:
    """
    retry-after survives and Anthropic's rate-limit counters become the
    matching x-ratelimit-* headers; unrelated headers are dropped.
    """
    _, _, headers = anthropic_error_to_openai(
        429,
        body("rate_limit_error"),
        {
            "Retry-After": "7",
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "12",
            "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:07Z",
            "request-id": "req_1",
            "x-api-key": "sk-ant-secret",
        },
    )
    assert headers == {
        "retry-after": "7",
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-limit-tokens": "40000",
        "x-ratelimit-remaining-tokens": "12",
    }


@pytest.mark.parametrize(
    ("status", "raw", "new_status"),
    [
        (502, b"<html>Bad gateway</html>", 502),
        (503, b"", 503),
        (200, b"{}", 502),
        (418, {"error": {"type": "teapot_error", "message": "short and stout"}}, 418),
        (500, b"\xff\xfe", 500),
    ],
)
def test_unknown_errors(status: int, raw: Any, new_status: int) -> None:
    """
    Unparsable bodies and unknown types never raise: they become a valid
    upstream_error with the received status (502 if it was not an error).
    """
    got_status, payload, _ = anthropic_error_to_openai(status, raw, {})
    validate("ErrorResponse", payload)
    assert got_status == new_status
    assert payload["error"]["type"] == "upstream_error"


def test_dict_body() -> None:
    """
    An already-parsed body is accepted as well as bytes.
    """
    status, payload, _ = anthropic_error_to_openai(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, {}
    )
    assert (status, payload["error"]["message"]) == (529, "Overloaded")


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "overloaded_error", "message": "Overloaded"},
    ],
)
def test_stream_error_payload(event: dict[str, Any]) -> None:
    """
    A stream error event (or its inner error) becomes the {"error": ...}
    data payload the OpenAI SDK raises APIError on.
    """
    payload = anthropic_error_to_openai_payload(event)
    validate("ErrorResponse", payload)
    assert payload == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": "overloaded"}
    }
