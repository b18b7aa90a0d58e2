# Tests: tests/test_live_openai.py, tests/test_bad_input.py
"""
The API surface: one leaf resource that dispatches on the path.

Dispatch is a dict lookup (no child traversal); every path, known or not,
gets a provider-shaped JSON answer from here.  A request becomes a
:class:`~dd0c_route.web.call.Call`, is authenticated against the in-memory
key cache (a miss asks the store off the reactor), admitted by the budgets,
and handed to its endpoint; every call but ``/healthz`` ends in exactly one
usage record, errors included.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, cast

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..ledger.interfaces import KeyInfo, LedgerUnavailable
from ..loop import carries_our_via
from .auth import presented_key
from .call import Call
from .errors import ProxyError
from .paths import InvalidPath, normalize_path

__all__ = ["ApiResource"]

log = Logger()

_JSON = [b"application/json"]

#: Paths also served without the ``/v1`` prefix (clients whose base URL lacks it).
_UNPREFIXED = (b"/chat/completions", b"/responses", b"/embeddings", b"/models", b"/messages")


def _with_v1(request: IRequest) -> bytes:
    """``/chat/completions`` (and the like) as ``/v1/chat/completions``: path and URI."""
    path = request.path
    for prefix in _UNPREFIXED:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] in b"/?"):
            path = request.path = b"/v1" + path
            request.uri = b"/v1" + request.uri
            break
    return path


def _checked_path(request: IRequest) -> bytes:
    """
    The request's path normalized (:func:`normalize_path`), also set on the
    request (query kept as is) so that what is relayed is what was checked.
    """
    raw = request.path
    try:
        path = normalize_path(raw)
    except InvalidPath as why:
        raise ProxyError(400, f"Invalid request path: {why}", code="invalid_path") from None
    if path != raw:
        request.uri = path + request.uri[len(raw):]
        request.path = path
    return path


class ApiResource(Resource):
    """The leaf resource serving every path; see the module docstring."""

    isLeaf = True

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def render(self, request: IRequest) -> Any:
        app = self.app
        path = request.path
        if path == b"/healthz":
            return self._healthz(request)
        if not path.startswith(b"/v1/"):
            path = _with_v1(request)
        call = Call(app, request, anthropic_errors=path.startswith(b"/v1/messages"))
        app.active += 1
        app.live.add(call)
        cast(Request, request).notifyFinish().addErrback(call.client_lost)
        try:
            if carries_our_via(request.requestHeaders.getRawHeaders(b"via")):
                raise ProxyError(508, "Loop detected: this request already passed through dd0c-route (check the providers' base_url)", code="loop_detected")
            body = request.content
            if body is not None and getattr(body, "overflow", False):
                raise ProxyError(
                    413,
                    f"The request body is larger than the limit of {app.config.server.max_body_bytes} bytes",
                    code="request_too_large",
                )
            path = _checked_path(request)
            route = app.routes.get(path)
            if route is None and not path.startswith(b"/v1/"):
                raise ProxyError(404, "Unknown path: this proxy serves the OpenAI and Anthropic /v1 API", code="not_found")
            if route is None and not app.passthrough_allowed.allows(path):
                raise ProxyError(404, "Unknown endpoint: this path is not relayed by this proxy (see [server] passthrough)", code="unknown_endpoint")
            key = presented_key(request)
            if key is None:
                raise ProxyError(401, "You didn't provide an API key. Use the Authorization header: Bearer <your dd0c-route key>.", code="invalid_api_key")
            hit, info = app.keys.lookup_cached(key)
            if hit:
                self._authorized(call, route, info)
            else:
                d = app.keys.fetch(key)
                d.addCallback(lambda found: self._authorized(call, route, found))
                d.addErrback(self._key_check_failed, call)
        except Exception as error:
            call.fail(error, Failure())
        return NOT_DONE_YET

    def _authorized(self, call: Call, route: Optional[Callable[[Call], None]], info: Optional[KeyInfo]) -> None:
        if call.client_gone:
            return
        try:
            if info is None:
                raise ProxyError(401, "Invalid API key provided. Check your dd0c-route key.", code="invalid_api_key")
            call.key = info
            call.info.key_id = info.key_id
            call.info.team = info.team
            app = self.app
            if call.request.path != b"/v1/models":
                # Config budgets and the key's own limits (set from the admin API).
                app.routing.budgets.admit(info, len(call.raw_body) // 4)
            (route or app.passthrough)(call)
        except Exception as error:
            call.fail(error, Failure())

    def _key_check_failed(self, failure: Failure, call: Call) -> None:
        if failure.check(LedgerUnavailable):
            log.warn("Key check failed: the ledger database is unreachable")
        problem = failure.value
        call.fail(problem if problem is not None else Exception("key check failed"), failure)

    def _healthz(self, request: IRequest) -> bytes:
        app = self.app
        status: dict[str, Any] = {
            "status": "ok",
            "active_requests": app.active,
            "upstream_connections": app.upstream.counter.open,
        }
        if app.ledger_health is not None:
            status["ledger"] = app.ledger_health()
        if app.worker is not None:
            status["worker"] = app.worker
        body = json.dumps(status).encode()
        request.responseHeaders.setRawHeaders(b"content-type", _JSON)
        return body
