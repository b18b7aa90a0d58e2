# Tests: tests/test_errors.py
"""
Provider-shaped error bodies.

Every error the proxy itself produces is JSON in the shape the client's SDK
parses (OpenAI's ``{"error": {...}}`` or Anthropic's ``{"type": "error",
...}``), so that the SDK raises its usual exception type.  Messages are fixed
texts or built from values we checked: never from a header or a key.
"""

from __future__ import annotations

import json
from typing import Optional

import attrs

__all__ = ["ProxyError", "anthropic_error_body", "openai_error_body"]

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


@attrs.frozen
class ProxyError(Exception):
    """
    An error the proxy answers itself, before or instead of the provider.
    """

    status: int
    message: str
    code: Optional[str] = None
    param: Optional[str] = None
    type: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.code or ''}: {self.message}"


def openai_error_body(error: ProxyError) -> bytes:
    """The OpenAI ``ErrorResponse`` JSON for an error."""
    return json.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type or _OPENAI_TYPES.get(error.status, "server_error"),
                "param": error.param,
                "code": error.code,
            }
        }
    ).encode("utf-8")


def anthropic_error_body(error: ProxyError) -> bytes:
    """The Anthropic error JSON for an error."""
    return json.dumps(
        {
            "type": "error",
            "error": {
                "type": _ANTHROPIC_TYPES.get(error.status, "api_error"),
                "message": error.message,
            },
        }
    ).encode("utf-8")
