# Tests: tests/test_live_openai.py
"""
Reading the client's proxy key from a request.

OpenAI clients send ``Authorization: Bearer <key>``; Anthropic clients send
``x-api-key: <key>`` (and some send a Bearer token).  The key is only ever
hashed and looked up: it is never logged, echoed or forwarded upstream.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["presented_key"]


def presented_key(request: Any) -> Optional[str]:
    """The key the client presented, or None."""
    headers = request.requestHeaders
    values = headers.getRawHeaders(b"authorization")
    if values:
        value = values[0].strip()
        if value[:7].lower() == b"bearer ":
            token = value[7:].strip()
            if token:
                return token.decode("utf-8", "replace")
        return None
    values = headers.getRawHeaders(b"x-api-key")
    if values and values[0].strip():
        return values[0].strip().decode("utf-8", "replace")
    return None
