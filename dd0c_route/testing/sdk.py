# Tests: tests/test_fakeprovider.py
"""
Run the blocking ``openai``/``anthropic`` SDKs from reactor-driven tests.

The official SDKs are the clients we must stay compatible with, and they
block; running them in the reactor's thread pool lets the reactor keep
serving the fake provider (and the proxy) the SDK is talking to.
"""

from __future__ import annotations

__all__ = ["in_thread"]

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

_T = TypeVar("_T")


def in_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Deferred[_T]:
    """Call ``fn(*args, **kwargs)`` in the global reactor's thread pool."""
    return deferToThread(fn, *args, **kwargs)
