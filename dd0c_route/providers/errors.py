# Tests: tests/test_provider_contract.py, tests/test_upstream_errors.py
"""
What a provider adapter reports when it cannot serve a request, and the one
pass-through for provider errors.

:class:`CannotServe` is raised before anything is sent upstream (a request
the adapter cannot translate, a model its endpoint cannot reach); the
fallback chain then tries the next model, and the web layer answers the last
one.  :func:`pass_error` relays a provider's error response as it is --
status, JSON body, the headers clients act on -- scrubbed of anything that
looks like a key; a body that is not a JSON object (a load balancer's HTML
page) becomes an error in the client's shape instead.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attrs

from ..redaction import redact_sensitive
from ..shapes import anthropic_error, anthropic_error_type, openai_error, openai_error_type

__all__ = ["CannotServe", "pass_anthropic_error", "pass_error", "pass_openai_error"]

_JSON = [b"application/json"]


@attrs.frozen(auto_exc=True)
class CannotServe(Exception):
    """
    A request an adapter refuses before sending it, with the OpenAI error
    it becomes (``status`` 400 unless said otherwise, ``param`` the field at
    fault, ``code`` a stable machine-readable value).
    """

    status: int
    message: str
    param: Optional[str] = None
    code: Optional[str] = None

    def __str__(self) -> str:
        return self.message


def pass_error(status: int, body: bytes, headers: dict[bytes, list[bytes]], *, anthropic: bool = False) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """A provider error relayed as is, scrubbed; see the module docstring."""
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        out = redact_sensitive(body.decode("utf-8", "replace")).encode("utf-8")
    else:
        message = f"The upstream provider answered {status} without a JSON body"
        payload = (
            anthropic_error(message, anthropic_error_type(status))
            if anthropic
            else openai_error(message, "server_error" if status >= 500 else openai_error_type(status), None, "upstream_error")
        )
        out = json.dumps(payload).encode("utf-8")
    headers = dict(headers)
    headers[b"content-type"] = _JSON
    return status, out, headers


def pass_openai_error(status: int, body: bytes, headers: dict[bytes, list[bytes]]) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """:func:`pass_error` for OpenAI-shaped clients."""
    return pass_error(status, body, headers)


def pass_anthropic_error(status: int, body: bytes, headers: dict[bytes, list[bytes]]) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """:func:`pass_error` for Anthropic-shaped clients."""
    return pass_error(status, body, headers, anthropic=True)
