# Tests: tests/test_anthropic_errors.py
"""
Errors on the Anthropic path, in OpenAI's words.

Two directions meet here.  ``TranslationError`` is *our* refusal: a chat
completion request that cannot be expressed faithfully as a Messages API call
becomes a 400 before anything is sent (and billed).  The ``anthropic_error_*``
functions turn *Anthropic's* errors -- an error response or an ``error`` event
in the middle of a stream -- into OpenAI's ``{"error": {...}}`` shape, because
the OpenAI SDKs only understand that shape.

No message from upstream is trusted to be free of secrets: an authentication
error always gets a fixed text, and anything that looks like an Anthropic key
is masked in every other message.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Union

import attrs

from ..redaction import PROVIDER_KEY_PATTERN
from .errors import CannotServe

__all__ = [
    "UPSTREAM_AUTH_MESSAGE",
    "TranslationError",
    "anthropic_error_to_openai",
    "anthropic_error_to_openai_payload",
]

UPSTREAM_AUTH_MESSAGE = "Invalid API key for the upstream provider"

#: What a key is replaced with in a translated error message.
_MASK = "[redacted]"


@attrs.frozen(auto_exc=True)
class TranslationError(CannotServe):
    """
    A request we refuse to translate, with the OpenAI error it becomes
    (``param`` names the field at fault, e.g. ``"messages[2].tool_calls[0]"``).
    """

    def to_openai(self) -> dict[str, Any]:
        """
        The ``ErrorResponse`` body for this refusal.
        """
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


@attrs.frozen
class _Mapping:
    status: int
    type: str
    code: Optional[str]
    default_message: str


# Anthropic error type -> what an OpenAI client should see.  529 stays 529 so
# that "the provider is overloaded" remains distinguishable from a 500.
_ERRORS: dict[str, _Mapping] = {
    "invalid_request_error": _Mapping(
        400, "invalid_request_error", None, "Invalid request."
    ),
    "authentication_error": _Mapping(
        401, "authentication_error", "invalid_api_key", UPSTREAM_AUTH_MESSAGE
    ),
    "billing_error": _Mapping(
        402, "billing_error", "billing_error", "Upstream billing problem."
    ),
    "permission_error": _Mapping(
        403, "permission_error", None, "Permission denied by the upstream provider."
    ),
    "not_found_error": _Mapping(
        404, "not_found_error", None, "Not found at the upstream provider."
    ),
    "request_too_large": _Mapping(
        413, "invalid_request_error", "request_too_large", "Request too large."
    ),
    "rate_limit_error": _Mapping(
        429, "rate_limit_error", "rate_limit_exceeded", "Rate limit exceeded."
    ),
    "api_error": _Mapping(
        500, "server_error", None, "The upstream provider had an internal error."
    ),
    "timeout_error": _Mapping(
        504, "timeout_error", "timeout", "The upstream provider timed out."
    ),
    "overloaded_error": _Mapping(
        529, "overloaded_error", "overloaded", "The upstream provider is overloaded."
    ),
}

# Only the headers whose meaning is the same on both sides.  Anthropic's reset
# headers are RFC 3339 instants while OpenAI's are durations: not obvious,
# so they are not mapped.
_HEADERS = {
    "retry-after": "retry-after",
    "anthropic-ratelimit-requests-limit": "x-ratelimit-limit-requests",
    "anthropic-ratelimit-requests-remaining": "x-ratelimit-remaining-requests",
    "anthropic-ratelimit-tokens-limit": "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-tokens-remaining": "x-ratelimit-remaining-tokens",
}


def _scrub(message: str) -> str:
    return PROVIDER_KEY_PATTERN.sub(_MASK, message)


def _inner_error(error: Any) -> Mapping[str, Any]:
    """
    The ``{"type", "message"}`` part, whether given the whole body / event
    (``{"type": "error", "error": {...}}``) or the inner object.
    """
    if isinstance(error, Mapping):
        inner = error.get("error")
        if isinstance(inner, Mapping):
            return inner
        return error
    return {}


def _openai_error(inner: Mapping[str, Any], status: int) -> tuple[int, dict[str, Any]]:
    kind = inner.get("type")
    mapping = _ERRORS.get(kind) if isinstance(kind, str) else None
    raw = inner.get("message")
    if mapping is None:
        status = status if status >= 400 else 502
        message = raw if isinstance(raw, str) and raw else (
            f"The upstream provider returned an error (HTTP {status})."
        )
        return status, {
            "error": {
                "message": _scrub(message),
                "type": "upstream_error",
                "param": None,
                "code": None,
            }
        }
    if kind == "authentication_error" or not (isinstance(raw, str) and raw):
        message = mapping.default_message
    else:
        message = _scrub(raw)
    return mapping.status, {
        "error": {
            "message": message,
            "type": mapping.type,
            "param": None,
            "code": mapping.code,
        }
    }


def anthropic_error_to_openai(
    status: int,
    body: Union[bytes, Mapping[str, Any]],
    headers: Mapping[str, str],
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """
    Translate an Anthropic error response into ``(status, body, headers)``
    for the client.

    The status follows the Anthropic error *type* when it is known (it is the
    stable contract), else the received status (502 if that was not an
    error).  Returned header names are lower case; only ``retry-after`` and
    the rate-limit headers with an exact OpenAI equivalent survive.  This
    function never raises, whatever the body holds.
    """
    parsed: Any = body
    if isinstance(body, (bytes, bytearray)):
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
    new_status, payload = _openai_error(_inner_error(parsed), status)
    out_headers: dict[str, str] = {}
    for name, value in headers.items():
        mapped = _HEADERS.get(name.lower())
        if mapped is not None:
            out_headers[mapped] = value
    return new_status, payload, out_headers


def anthropic_error_to_openai_payload(error: Mapping[str, Any]) -> dict[str, Any]:
    """
    The ``data:`` payload to send when an Anthropic stream carries an
    ``error`` event; the OpenAI SDKs raise ``APIError`` on a chunk with an
    ``"error"`` key.  Accepts the event data or its inner ``error`` object.
    """
    return _openai_error(_inner_error(error), 500)[1]
