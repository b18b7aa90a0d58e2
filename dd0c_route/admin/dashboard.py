# Tests: tests/test_dashboard_browser.py, tests/test_admin_security.py, tests/test_sessions_live.py
"""
The dashboard at ``/`` of the admin listener: three static files shipped in
the wheel (``static/``: plain HTML, CSS and our own small JS drawing SVG;
no CDN, nothing fetched from anywhere but this listener), and the session
endpoints the page uses:

- ``POST /admin/login`` with ``{"key": "..."}`` (JSON only, so another
  site's form cannot post it): an admin key buys a session cookie
  (``HttpOnly; SameSite=Strict; Path=/; Max-Age``) and the CSRF token;
- ``GET /admin/session``: the CSRF token of the cookie's session (401 if none);
- ``POST /admin/logout``: ends the session (needs the CSRF token).

Sessions are kept in the ledger (:mod:`.sessions`), so a login on one
worker or instance is good on every other one on the same database.

The page renders every value with ``textContent``; a strict
Content-Security-Policy (``script-src 'self'``, no inline script) backs that.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ..boundedjson import InvalidJSON, loads_bounded
from ..ledger.interfaces import KeyInfo
from .api import AdminApi
from .api_call import ApiError, respond_json
from .sessions import COOKIE, Session

__all__ = ["STATIC_FILES", "Dashboard"]

log = Logger()

#: What a session endpoint answers: status, JSON body, extra headers.
Answer = tuple[int, Any, tuple[tuple[bytes, bytes], ...]]

STATIC_FILES: dict[bytes, tuple[str, bytes]] = {
    b"/": ("index.html", b"text/html; charset=utf-8"),
    b"/static/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    b"/static/app.css": ("app.css", b"text/css; charset=utf-8"),
}
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _static(name: str) -> bytes:
    return resources.files("dd0c_route.admin").joinpath("static", name).read_bytes()


class Dashboard:
    """Static files and the session endpoints; the API does the rest."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self._files = {path: (_static(name), ctype) for path, (name, ctype) in STATIC_FILES.items()}

    def serve(self, request: IRequest) -> None:
        path = request.path
        if path.startswith(b"/admin/v1/"):
            self.api.serve(request)
        elif path in self._files:
            if request.method not in (b"GET", b"HEAD"):
                respond_json(request, 405, ApiError(405, "GET only", "method_not_allowed").body())
                return
            body, ctype = self._files[path]
            request.setResponseCode(200)
            headers = request.responseHeaders
            headers.setRawHeaders(b"content-type", [ctype])
            headers.setRawHeaders(b"content-length", [str(len(body)).encode()])
            headers.setRawHeaders(b"content-security-policy", [CSP])
            headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
            headers.setRawHeaders(b"x-frame-options", [b"DENY"])
            headers.setRawHeaders(b"referrer-policy", [b"no-referrer"])
            headers.setRawHeaders(b"cache-control", [b"no-cache"])
            if request.method != b"HEAD":
                request.write(body)
            request.finish()
        elif path == b"/admin/login" and request.method == b"POST":
            self._login(request)
        elif path == b"/admin/session" and request.method == b"GET":
            self._answer(request, self.api.session_of(request).addCallback(_session_answer))
        elif path == b"/admin/logout" and request.method == b"POST":
            self._answer(request, self.api.session_of(request).addCallback(self._logout, request))
        else:
            respond_json(request, 404, ApiError(404, "Unknown admin path", "not_found").body())

    def _login(self, request: IRequest) -> None:
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        content = request.content
        try:
            if ctype != b"application/json":
                raise InvalidJSON("send the key as JSON")
            body = loads_bounded(content.read() if content is not None else b"")
        except InvalidJSON:
            respond_json(request, 400, ApiError(400, 'Send {"key": "<admin key>"} as application/json', "invalid_json").body())
            return
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            respond_json(request, 400, ApiError(400, 'Send {"key": "<admin key>"}', "invalid_value", "key").body())
            return
        found = self.api.keys.lookup(key)
        d: Deferred[Optional[KeyInfo]] = found if isinstance(found, Deferred) else Deferred()
        if not isinstance(found, Deferred):
            d.callback(found)

        def check(info: Optional[KeyInfo]) -> Any:
            if info is None:
                raise ApiError(401, "Invalid API key provided.", "invalid_api_key")
            if not info.admin:
                raise ApiError(403, "This key is not an admin key", "not_admin")
            return self.api.sessions.create(info.key_id).addCallbacks(lambda session: logged_in(session, info), stored_failed)

        def logged_in(session: Session, info: KeyInfo) -> Answer:
            cookie = _cookie(session.session_id.encode(), int(self.api.sessions.ttl))
            body = {"csrf_token": session.csrf_token, "expires": session.expires, "key_name": info.name}
            return 200, body, ((b"set-cookie", cookie),)

        def stored_failed(failure: Any) -> None:
            log.failure("storing a dashboard session failed", failure)
            raise ApiError(503, "Could not start a session (the ledger failed)", "session_store_unavailable")

        def key_failed(failure: Any) -> None:
            raise ApiError(503, "Could not check the key (the key store failed)", "key_store_unavailable")

        self._answer(request, d.addCallbacks(check, key_failed))

    def _logout(self, session: Optional[Session], request: IRequest) -> Any:
        csrf = request.getHeader(b"x-csrf-token")
        if session is None or not session.csrf_ok(None if csrf is None else csrf.decode("latin-1")):
            raise ApiError(403, "Logging out needs the session's X-CSRF-Token", "csrf_failed")
        ended = self.api.sessions.end(session)
        return ended.addCallback(lambda _: (200, {"logged_out": True}, ((b"set-cookie", _cookie(b"", 0)),)))

    def _answer(self, request: IRequest, d: Deferred[Any]) -> None:
        """
        Finish ``request`` with the (status, body, headers) ``d`` fires, or
        its ApiError; nothing once the client has gone (the ledger's answer
        may come after a disconnect).
        """
        gone: list[bool] = []
        cast(Request, request).notifyFinish().addErrback(lambda _: gone.append(True))

        def done(answer: Answer) -> None:
            if not gone:
                respond_json(request, *answer)

        def failed(failure: Any) -> None:
            error = failure.value
            if not isinstance(error, ApiError):
                log.failure("a dashboard session call failed", failure)
                error = ApiError(500, "The dashboard failed (see the proxy's log)", "internal_error")
            if not gone:
                respond_json(request, error.status, error.body())

        d.addCallbacks(done, failed)


def _session_answer(session: Optional[Session]) -> Answer:
    if session is None:
        return 401, ApiError(401, "Not logged in", "no_session").body(), ()
    return 200, {"csrf_token": session.csrf_token, "expires": session.expires}, ()


def _cookie(value: bytes, max_age: int) -> bytes:
    return COOKIE + b"=" + value + b"; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + str(max_age).encode()


