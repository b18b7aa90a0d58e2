# Tests: tests/test_live_models.py, tests/test_bad_input.py
"""
``GET /v1/models``: the listing the
:class:`~dd0c_route.providers.catalog.ModelCatalog` keeps, answered from
memory (it never waits for a provider).
"""

from __future__ import annotations

from .call import Call
from .errors import ProxyError

__all__ = ["models"]


def models(call: Call) -> None:
    if call.method not in (b"GET", b"HEAD"):
        raise ProxyError(405, "Method not allowed: use GET", code="method_not_allowed")
    call.respond_json(200, call.app.catalog.body())
