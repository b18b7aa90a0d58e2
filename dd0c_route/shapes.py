# Tests: tests/test_provider_contract.py, tests/test_upstream_answers.py
"""
The providers' error shapes, built in one place.

Every error that leaves the proxy -- an answer of our own, a provider error
that was not JSON, an event that ends a broken stream -- is one of two wire
shapes: OpenAI's ``ErrorResponse`` (``{"error": {message, type, param,
code}}``) or Anthropic's (``{"type": "error", "error": {type, message}}``).
This leaf module builds both, and the SSE frame that carries one, so that
the relay, the provider adapters and the web layer cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Optional

__all__ = ["anthropic_error", "anthropic_error_type", "openai_error", "openai_error_type", "sse_error_frame"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}


def openai_error_type(status: int) -> str:
    """The ``type`` OpenAI gives an error of this HTTP status."""
    return _OPENAI_TYPES.get(status, "server_error")


def anthropic_error_type(status: int) -> str:
    """The ``type`` Anthropic gives an error of this HTTP status."""
    return _ANTHROPIC_TYPES.get(status, "api_error")


def openai_error(message: str, type: str = "server_error", param: Optional[str] = None, code: Optional[str] = None) -> dict[str, Any]:
    """OpenAI's ``ErrorResponse`` object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def anthropic_error(message: str, type: str = "api_error") -> dict[str, Any]:
    """Anthropic's error object."""
    return {"type": "error", "error": {"type": type, "message": message}}


def sse_error_frame(payload: dict[str, Any], event: Optional[str] = None) -> bytes:
    """One SSE event carrying an error payload (``event: error`` when named)."""
    head = b"event: " + event.encode("ascii") + b"\n" if event else b""
    return head + b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n"
