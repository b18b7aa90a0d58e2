"""
Dashboard sessions shared through the ledger, live: two proxy instances
(the tap's services, each with its admin listener) on one SQLite file and
on one real PostgreSQL database — a login on A is a session on B (reads,
and a change with A's CSRF token), a logout on A ends it on B within the
session cache's 2 s, an expired session is refused by both, and revoking
the admin key on B ends its sessions on A.  Then a real ``twistd`` with
``workers = 2``: a login survives the SIGKILL of the worker that serves the
admin listener, answered by the process that replaced it.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.ledger.interfaces import KeyInfo
from dd0c_route.ledger.keys import generate_key, hash_key, new_key_id
from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread, start_live_proxy
from .pg import create_database
from .test_admin_live import admin_port, http
from .test_workers_live import both_workers, wait_for
from .twistd_proc import Twistd, free_port, run_cli, write_config

ADMIN = {"admin": {"listen": "tcp:0:interface=127.0.0.1"}}


class Browser:
    """One dashboard user: a cookie and a CSRF token from a login, sent to any admin listener."""

    def __init__(self) -> None:
        self.cookie = ""
        self.csrf = ""

    def login(self, base: str, key: str) -> int:
        status, headers, raw = http(base + "/admin/login", "POST", {"Content-Type": "application/json"}, json.dumps({"key": key}).encode())
        if status == 200:
            self.cookie = headers["set-cookie"].split(";")[0]
            self.csrf = json.loads(raw)["csrf_token"]
        return status

    def call(self, base: str, path: str, method: str = "GET", body: Optional[dict[str, Any]] = None) -> tuple[int, Any]:
        headers = {"Cookie": self.cookie}
        data = None
        if method != "GET":
            headers.update({"Content-Type": "application/json", "X-CSRF-Token": self.csrf})
            data = json.dumps(body or {}).encode()
        status, _, raw = http(base + path, method, headers, data)
        return status, json.loads(raw) if raw else None


def refused_within(browser: Browser, base: str, seconds: float) -> float:
    """Seconds until ``base`` refuses the browser's cookie with 401 (fails after ``seconds``)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if browser.call(base, "/admin/v1/keys")[0] == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{base} still accepts the session after {seconds}s")


class _TwoInstances:
    timeout = 90

    def ledger(self) -> dict[str, Any]:
        raise NotImplementedError

    @inlineCallbacks
    def pair(self) -> Any:
        ledger = self.ledger()
        a = yield start_live_proxy(self, {**ADMIN, "ledger": ledger}, kinds=("openai",))
        b_ledger = ledger if "url" in ledger else {"path": a.built.store.path}
        b = yield start_live_proxy(self, {**ADMIN, "ledger": b_ledger}, kinds=("openai",), key_name="second")
        self.admin_key = generate_key()
        self.admin_id = new_key_id()
        a.built.store.add_key(KeyInfo(self.admin_id, "ops", hash_key(self.admin_key), time.time(), admin=True))
        ports = []
        for live in (a, b):
            ports.append((yield admin_port(live)))
        return a, b, [f"http://127.0.0.1:{port}" for port in ports]

    @inlineCallbacks
    def test_a_login_on_one_instance_is_a_session_on_the_other(self):
        """Cookie and CSRF token from A work on B (read, create); logout on A: B refuses within 2 s (plus a read)."""
        _, _, (on_a, on_b) = yield self.pair()
        browser = Browser()

        def run() -> tuple[Any, ...]:
            assert browser.login(on_a, self.admin_key) == 200
            read = browser.call(on_b, "/admin/v1/keys")[0]
            session = browser.call(on_b, "/admin/session")
            created = browser.call(on_b, "/admin/v1/keys", "POST", {"name": "made-on-b"})[0]
            forged = http(on_b + "/admin/v1/keys", "POST", {"Cookie": browser.cookie, "Content-Type": "application/json"}, b'{"name": "x"}')[0]
            out = browser.call(on_a, "/admin/logout", "POST")[0]
            here = browser.call(on_a, "/admin/v1/keys")[0]
            there = refused_within(browser, on_b, 3.0)
            return read, session, created, forged, out, here, there

        read, session, created, forged, out, here, there = yield in_thread(run)
        self.assertEqual((read, session[0]), (200, 200), session)
        self.assertEqual(session[1]["csrf_token"], browser.csrf)
        self.assertEqual((created, forged, out, here), (201, 403, 200, 401))
        self.assertLess(there, 2.5)

    @inlineCallbacks
    def test_an_expired_session_is_refused_by_both(self):
        """A session of 1 s: after it, A and B both answer 401."""
        a, _, (on_a, on_b) = yield self.pair()
        a.built.admin.site.resource.dashboard.api.sessions.ttl = 1.0
        browser = Browser()

        def run() -> tuple[int, int, int, int]:
            assert browser.login(on_a, self.admin_key) == 200
            before = browser.call(on_b, "/admin/v1/keys")[0]
            time.sleep(1.1)
            return before, browser.call(on_a, "/admin/v1/keys")[0], browser.call(on_b, "/admin/v1/keys")[0], \
                browser.call(on_b, "/admin/session")[0]

        self.assertEqual((yield in_thread(run)), (200, 401, 401, 401))

    @inlineCallbacks
    def test_revoking_the_admin_key_on_one_ends_its_sessions_on_the_other(self):
        """The admin key revoked through B's API (with the session itself): B refuses at once, A within 2 s."""
        _, _, (on_a, on_b) = yield self.pair()
        browser = Browser()

        def run() -> tuple[int, int, float]:
            assert browser.login(on_a, self.admin_key) == 200
            assert browser.call(on_a, "/admin/v1/keys")[0] == 200
            revoked = browser.call(on_b, f"/admin/v1/keys/{self.admin_id}/revoke", "POST")[0]
            return revoked, browser.call(on_b, "/admin/v1/keys")[0], refused_within(browser, on_a, 3.0)

        revoked, here, there = yield in_thread(run)
        self.assertEqual((revoked, here), (200, 401))
        self.assertLess(there, 2.5)


class SQLiteSessionsLive(_TwoInstances, TestCase):
    def ledger(self) -> dict[str, Any]:
        return {}


class PostgresSessionsLive(_TwoInstances, TestCase):
    def ledger(self) -> dict[str, Any]:
        return {"url": create_database(self)}


class WorkersSessionsLive(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_a_login_survives_the_admin_worker_being_killed(self):
        """
        workers = 2 (worker 0 serves the admin listener): log in, SIGKILL
        worker 0; the worker that replaces it, a new process, takes the
        cookie and its CSRF token; a logout there ends the session.
        """
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        workdir = tempfile.mkdtemp(prefix="dd0c-sessions-")
        port, admin = free_port(), free_port()
        config = write_config(
            workdir, port,
            f'[admin]\nlisten = "tcp:{admin}:interface=127.0.0.1"\n'
            f'[providers.openai]\nbase_url = "{fake.base_url}"\napi_key = "{provider_key}"\n',
        )
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", "[server]\nworkers = 2\n", 1))
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "ops", "--admin")
        self.assertEqual(created.returncode, 0, created.stderr)
        key = created.stdout.strip().splitlines()[-1]
        proc = Twistd(config, workdir, os.path.join(workdir, "proxy.log"), port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        base = f"http://127.0.0.1:{admin}"
        browser = Browser()

        def run() -> tuple[Any, ...]:
            workers = both_workers(port)
            wait_for(lambda: browser.login(base, key) == 200)
            before = browser.call(base, "/admin/v1/keys")[0]
            os.kill(workers[0], signal.SIGKILL)

            def replaced() -> Optional[int]:
                try:
                    status = browser.call(base, "/admin/v1/keys")[0]
                except OSError:
                    return None
                return status if both_workers(port)[0] != workers[0] else None

            after = wait_for(replaced)
            made = browser.call(base, "/admin/v1/keys", "POST", {"name": "after-restart"})[0]
            out = browser.call(base, "/admin/logout", "POST")[0]
            return before, after, made, out, browser.call(base, "/admin/v1/keys")[0]

        self.assertEqual((yield in_thread(run)), (200, 200, 201, 200, 401))
