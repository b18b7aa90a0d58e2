# Tests: tests/test_bad_input.py, tests/test_live_openai.py
"""
The one writer of JSON answers the proxy builds itself (models, errors,
local token counts): status, ``content-type``, ``content-length``, the
caller's headers, the body, finished.
"""

from __future__ import annotations

from typing import Iterable

from twisted.web.iweb import IRequest

__all__ = ["write_json"]

_JSON = [b"application/json"]


def write_json(request: IRequest, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer ``request`` with ``body`` (no body for ``HEAD``) and finish it."""
    request.setResponseCode(status)
    out = request.responseHeaders
    out.setRawHeaders(b"content-type", _JSON)
    out.setRawHeaders(b"content-length", [str(len(body)).encode()])
    for name, value in headers:
        out.setRawHeaders(name, [value])
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
