"""
Every admin API endpoint refuses a client (non-admin) key with 403 and no
key (or an unknown one) with 401, in OpenAI's error shape, even though the
listener is on loopback without ``[admin] require_key``; a session cookie
alone never authorizes a change (no X-CSRF-Token: 403).
"""

from __future__ import annotations

import json

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.keys import generate_key

from .admin_fixtures import open_store, serve_admin
from .test_admin_live import http

ENDPOINTS = (
    ("GET", "/admin/v1/openapi.json"), ("GET", "/admin/v1/keys"), ("POST", "/admin/v1/keys"),
    ("PATCH", "/admin/v1/keys/client"), ("GET", "/admin/v1/usage/summary"), ("GET", "/admin/v1/overview"),
    ("GET", "/admin/v1/requests"), ("GET", "/admin/v1/routing"), ("POST", "/admin/v1/whatif"),
    ("GET", "/admin/v1/alerts"),
    # Last: the admin's own call revokes the client key.
    ("POST", "/admin/v1/keys/client/revoke"),
)


class AdminSecurityTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_every_endpoint_refuses_client_keys_and_no_key(self):
        """403 for a client key, 401 for none or an unknown one; the admin key is served (not 401/403)."""
        served = yield serve_admin(self, open_store(self, "sqlite"))
        body = {"name": "x", "routing": {"rules": []}}
        for method, path in ENDPOINTS:
            for key, want in (("client", 403), (None, 401), (generate_key(), 401)):
                status, answer = yield served.call(method, path, body, key=key)
                self.assertEqual(status, want, (method, path, key))
                self.assertEqual(set(answer["error"]), {"message", "type", "param", "code"})
            status, _ = yield served.call(method, path, body)
            self.assertNotIn(status, (401, 403), (method, path))

    @inlineCallbacks
    def test_session_cookie_reads_but_never_mutates_without_csrf(self):
        """Logged in: a GET with the cookie works; a POST with the cookie and no token is 403."""
        served = yield serve_admin(self, open_store(self, "sqlite"))

        def run():
            login = json.dumps({"key": served.admin_key}).encode()
            status, headers, raw = http(served.base + "/admin/login", "POST", {"Content-Type": "application/json"}, login)
            cookie = headers["set-cookie"].split(";")[0]
            csrf = json.loads(raw)["csrf_token"]
            read = http(served.base + "/admin/v1/keys", headers={"Cookie": cookie})[0]
            body = json.dumps({"name": "by-cookie"}).encode()
            forged = http(served.base + "/admin/v1/keys", "POST", {"Cookie": cookie, "Content-Type": "application/json"}, body)[0]
            honest = http(served.base + "/admin/v1/keys", "POST",
                          {"Cookie": cookie, "Content-Type": "application/json", "X-CSRF-Token": csrf}, body)[0]
            form = http(served.base + "/admin/login", "POST", {"Content-Type": "application/x-www-form-urlencoded"},
                        b"key=" + served.admin_key.encode())[0]
            return status, headers["set-cookie"], read, forged, honest, form

        status, set_cookie, read, forged, honest, form = yield deferToThread(run)
        self.assertEqual(status, 200)
        self.assertIn("HttpOnly", set_cookie)
        self.assertIn("SameSite=Strict", set_cookie)
        self.assertIn("Max-Age=", set_cookie)
        self.assertEqual((read, forged, honest, form), (200, 403, 201, 400))
