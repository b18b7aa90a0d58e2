# Tests: tests/test_admin_api.py, tests/test_admin_security.py, tests/test_sessions_live.py
"""
The admin JSON API, ``/admin/v1/...`` on the admin listener (docs: the
OpenAPI file beside this module, served at ``/admin/v1/openapi.json``).

Every call needs an admin key (``Authorization: Bearer``) whatever
``[admin] require_key`` says, because these endpoints create keys and show
spend: a client key is refused with 403, no key with 401.  The dashboard's
session cookie stands for the key on reads; a mutating call with a cookie
must also send the session's ``X-CSRF-Token`` (see :mod:`.sessions`).
Errors are OpenAI-shaped JSON.

Every store call runs off the reactor through the ledger's thread runner.
This module authenticates and dispatches; the endpoints live by concern in
:mod:`.api_keys`, :mod:`.api_usage` and :mod:`.api_routing`.
Answers never hold a prompt or a key (only key ids and names), and a key
is shown once, in the answer that created it.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ..config import Config
from ..ledger.interfaces import KeyInfo
from ..web.auth import presented_key
from .api_call import ApiError, Call, Handler, respond_json
from .api_keys import KeyEndpoints
from .api_routing import RoutingEndpoints
from .api_usage import UsageEndpoints
from .sessions import COOKIE, Session, SessionTable

__all__ = ["AdminApi"]

log = Logger()

_MUTATING = frozenset({b"POST", b"PATCH", b"PUT", b"DELETE"})


class AdminApi:
    """The ``/admin/v1`` endpoints; :meth:`serve` authenticates and dispatches."""

    def __init__(
        self, *, store: Any, run: Callable[..., Deferred[Any]], keys: Any, config: Config, prices: Any,
        clock: Any, sessions: SessionTable, announcer: Any = None,
    ) -> None:
        self.store, self.run, self.keys, self.config, self.prices = store, run, keys, config, prices
        self.clock, self.sessions = clock, sessions
        keys_api = KeyEndpoints(store=store, run=run, keys=keys, clock=clock, sessions=sessions, announcer=announcer)
        usage_api = UsageEndpoints(store=store, run=run, config=config, clock=clock)
        routing_api = RoutingEndpoints(store=store, run=run, config=config, prices=prices, clock=clock)
        self._routes: list[tuple[bytes, re.Pattern[str], Handler]] = [
            (b"GET", re.compile(r"/admin/v1/openapi\.json"), self.openapi),
            (b"GET", re.compile(r"/admin/v1/keys"), keys_api.list_keys),
            (b"POST", re.compile(r"/admin/v1/keys"), keys_api.create_key),
            (b"PATCH", re.compile(r"/admin/v1/keys/(?P<key>[^/]+)"), keys_api.update_key),
            (b"POST", re.compile(r"/admin/v1/keys/(?P<key>[^/]+)/revoke"), keys_api.revoke_key),
            (b"GET", re.compile(r"/admin/v1/usage/summary"), usage_api.summary),
            (b"GET", re.compile(r"/admin/v1/overview"), usage_api.overview),
            (b"GET", re.compile(r"/admin/v1/requests"), usage_api.requests),
            (b"GET", re.compile(r"/admin/v1/routing"), routing_api.routing),
            (b"POST", re.compile(r"/admin/v1/whatif"), routing_api.whatif),
            (b"GET", re.compile(r"/admin/v1/alerts"), usage_api.alerts),
        ]

    # -- dispatch and authentication ----------------------------------------

    def serve(self, request: IRequest) -> None:
        """Answer one ``/admin/v1`` request (always finishes it)."""
        path = request.path.decode("utf-8", "replace")
        method = b"GET" if request.method == b"HEAD" else request.method
        found: Optional[tuple[Handler, re.Match[str]]] = None
        allowed = False
        for verb, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is not None:
                allowed = True
                if verb == method:
                    found = (handler, match)
                    break
        if found is None:
            error = ApiError(405, "Method not allowed here", "method_not_allowed") if allowed else ApiError(
                404, f"Unknown admin API path {path!r} (see /admin/v1/openapi.json)", "not_found"
            )
            respond_json(request, error.status, error.body())
            return
        handler, match = found
        content = request.content
        body = content.read() if content is not None else b""
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1").split(";")[0].strip().lower()
        call = Call(request, method, request.args or {}, match, body, ctype)
        d = self._authorize(request, method)
        d.addCallback(lambda _: handler(call))
        d.addCallbacks(lambda answer: self._answer(request, answer), lambda f: self._failed(request, f))

    def _authorize(self, request: IRequest, method: bytes) -> Deferred[Any]:
        key = presented_key(request)
        if key is None:

            def check_session(session: Optional[Session]) -> Session:
                if session is None:
                    raise ApiError(401, "The admin API requires an admin key: Authorization: Bearer <key>", "invalid_api_key")
                if method in _MUTATING and not session.csrf_ok(_header(request, b"x-csrf-token")):
                    raise ApiError(403, "A dashboard change needs the session's X-CSRF-Token header", "csrf_failed")
                return session

            return self.session_of(request).addCallback(check_session)
        d: Deferred[Any] = Deferred()
        found = self.keys.lookup(key)
        if isinstance(found, Deferred):
            found.chainDeferred(d)
        else:
            d.callback(found)

        def check(info: Optional[KeyInfo]) -> KeyInfo:
            if info is None:
                raise ApiError(401, "Invalid API key provided.", "invalid_api_key")
            if not info.admin:
                raise ApiError(403, "This key is not an admin key (dd0c-route keys create --admin)", "not_admin")
            return info

        return d.addCallback(check)

    def session_of(self, request: IRequest) -> Deferred[Optional[Session]]:
        """
        The request's live dashboard session, or None; a ledger that cannot
        answer is a 503 (:class:`ApiError`), never a silent logout.
        """
        cookie = request.getCookie(COOKIE)
        d = self.sessions.get(cookie.decode("ascii", "replace") if cookie else None)

        def unavailable(failure: Any) -> Any:
            log.failure("checking a dashboard session failed", failure)
            raise ApiError(503, "Could not check the session (the ledger failed)", "session_store_unavailable")

        return d.addErrback(unavailable)

    def _answer(self, request: IRequest, answer: Any) -> None:
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        if not request.finished:  # type: ignore[attr-defined]
            respond_json(request, status, body)

    def _failed(self, request: IRequest, failure: Any) -> None:
        error = failure.value
        if not isinstance(error, ApiError):
            log.failure("admin API call failed", failure)
            error = ApiError(500, "The admin API failed (see the proxy's log)", "internal_error")
        if not request.finished:  # type: ignore[attr-defined]
            respond_json(request, error.status, error.body())

    # -- the API's own description ---------------------------------------------

    def openapi(self, call: Call) -> Any:
        text = resources.files("dd0c_route.admin").joinpath("openapi.json").read_text("utf-8")
        return json.loads(text)


def _header(request: IRequest, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")

