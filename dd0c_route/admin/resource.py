# Tests: tests/test_admin_live.py, tests/test_metrics.py
"""
The admin listener's one resource: ``/metrics``, ``/livez``, ``/readyz``.

It is served on its own port (``[admin] listen``, loopback by default) so
that it can be firewalled apart from the API.  Without ``[admin]
require_key`` it answers anyone who can reach that port; with it, only a
proxy key created with ``dd0c-route keys create --admin`` (checked against
the same key cache as the API, so a revoked admin key stops working within
its TTL).  Answers are JSON except the Prometheus exposition.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..ledger.interfaces import KeyInfo
from ..web.auth import presented_key
from .health import Readiness
from .metrics import ProxyMetrics

__all__ = ["AdminResource"]

log = Logger()

_JSON = b"application/json"


def _answer(request: IRequest, status: int, body: bytes, ctype: bytes = _JSON) -> None:
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(b"content-type", [ctype])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def _error(request: IRequest, status: int, message: str, code: str) -> None:
    body = {"error": {"message": message, "type": "admin_error", "code": code}}
    _answer(request, status, json.dumps(body).encode())


class AdminResource(Resource):
    """Serves the admin endpoints; see the module docstring."""

    isLeaf = True

    def __init__(
        self, metrics: Optional[ProxyMetrics], readiness: Readiness, keys: Any, require_key: bool,
        dashboard: Any = None,
    ) -> None:
        super().__init__()
        #: The dashboard and admin API (admin/dashboard.py): ``/``, ``/static/``,
        #: ``/admin/...``; they authenticate themselves, always.
        self.dashboard = dashboard
        self.metrics = metrics
        self.readiness = readiness
        self.keys = keys
        self.require_key = require_key
        self._routes: dict[bytes, Callable[[IRequest], None]] = {
            b"/metrics": self._metrics,
            b"/livez": self._livez,
            b"/readyz": self._readyz,
        }

    def render(self, request: IRequest) -> Any:
        route = self._routes.get(request.path)
        if route is None and self.dashboard is not None:
            self.dashboard.serve(request)
            return NOT_DONE_YET
        if route is None:
            _error(request, 404, "Unknown admin path (serving /metrics, /livez, /readyz)", "not_found")
            return NOT_DONE_YET
        if request.method not in (b"GET", b"HEAD"):
            _error(request, 405, "Admin endpoints answer GET only", "method_not_allowed")
            return NOT_DONE_YET
        if not self.require_key:
            route(request)
            return NOT_DONE_YET
        key = presented_key(request)
        if key is None:
            _error(request, 401, "This admin listener requires an admin key: Authorization: Bearer <key>", "invalid_api_key")
            return NOT_DONE_YET
        found = self.keys.lookup(key)
        if isinstance(found, Deferred):
            found.addCallback(lambda info: self._authorized(request, route, info))
            found.addErrback(self._lookup_failed, request)
        else:
            self._authorized(request, route, found)
        return NOT_DONE_YET

    def _authorized(self, request: IRequest, route: Callable[[IRequest], None], info: Optional[KeyInfo]) -> None:
        if info is None:
            _error(request, 401, "Invalid API key provided.", "invalid_api_key")
        elif not info.admin:
            _error(request, 403, "This key is not an admin key (dd0c-route keys create --admin)", "not_admin")
        else:
            route(request)

    def _lookup_failed(self, failure: Any, request: IRequest) -> None:
        log.failure("checking an admin key failed", failure)
        _error(request, 503, "Could not check the key (the key store failed)", "key_store_unavailable")

    def _metrics(self, request: IRequest) -> None:
        if self.metrics is None:
            _error(request, 404, "Metrics are off", "not_found")
            return
        _answer(request, 200, self.metrics.exposition(), CONTENT_TYPE_LATEST.encode())

    def _livez(self, request: IRequest) -> None:
        _answer(request, 200, b'{"status":"ok"}')

    def _readyz(self, request: IRequest) -> None:
        ready, checks = self.readiness.report()
        body = json.dumps({"status": "ready" if ready else "not_ready", "checks": checks}).encode()
        _answer(request, 200 if ready else 503, body)
