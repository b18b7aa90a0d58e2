# Tests: tests/test_provider_contract.py
"""
What every adapter's upstream request carries whatever the provider:
JSON in, JSON or an event stream out, and our ``Via`` (the loop guard).
"""

from __future__ import annotations

from ..loop import VIA

__all__ = ["JSON", "base_headers"]

JSON = [b"application/json"]
_ACCEPT = [b"application/json, text/event-stream"]
_VIA = [VIA]


def base_headers() -> dict[bytes, list[bytes]]:
    """A fresh dict of the shared upstream headers (the adapter adds its key)."""
    return {b"content-type": JSON, b"accept": _ACCEPT, b"via": _VIA}
