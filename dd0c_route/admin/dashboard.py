# Tests: tests/test_dashboard_browser.py, tests/test_admin_security.py
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

The page renders every value with ``textContent``; a strict
Content-Security-Policy (``script-src 'self'``, no inline script) backs that.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from ..boundedjson import InvalidJSON, loads_bounded
from ..ledger.interfaces import KeyInfo
from .api import AdminApi
from .api_call import ApiError, respond_json
from .sessions import COOKIE

__all__ = ["STATIC_FILES", "Dashboard"]

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
            session = self.api.session_of(request)
            if session is None:
                respond_json(request, 401, ApiError(401, "Not logged in", "no_session").body())
            else:
                respond_json(request, 200, {"csrf_token": session.csrf_token, "expires": session.expires})
        elif path == b"/admin/logout" and request.method == b"POST":
            session = self.api.session_of(request)
            csrf = request.getHeader(b"x-csrf-token")
            if session is None or not session.csrf_ok(None if csrf is None else csrf.decode("latin-1")):
                respond_json(request, 403, ApiError(403, "Logging out needs the session's X-CSRF-Token", "csrf_failed").body())
                return
            self.api.sessions.revoke(session.session_id)
            respond_json(request, 200, {"logged_out": True}, ((b"set-cookie", _cookie(b"", 0)),))
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

        def check(info: Optional[KeyInfo]) -> None:
            if info is None:
                respond_json(request, 401, ApiError(401, "Invalid API key provided.", "invalid_api_key").body())
            elif not info.admin:
                respond_json(request, 403, ApiError(403, "This key is not an admin key", "not_admin").body())
            else:
                session = self.api.sessions.create(info.key_id)
                cookie = _cookie(session.session_id.encode(), int(self.api.sessions.ttl))
                body = {"csrf_token": session.csrf_token, "expires": session.expires, "key_name": info.name}
                respond_json(request, 200, body, ((b"set-cookie", cookie),))

        def failed(failure: Any) -> None:
            respond_json(request, 503, ApiError(503, "Could not check the key (the key store failed)", "key_store_unavailable").body())

        d.addCallbacks(check, failed)


def _cookie(value: bytes, max_age: int) -> bytes:
    return COOKIE + b"=" + value + b"; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + str(max_age).encode()


