"""
``[server] workers = 2`` as an operator runs it (issue #14): a real
``twistd dd0c-route`` parent with two worker processes on one port, the
fake provider upstream.  Both workers answer; a SIGKILLed worker is
survived and replaced; SIGTERM to the parent after 100 requests leaves
100 records in the ledger.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .twistd_proc import CLI, Twistd, env, free_port, run_cli, write_config


class Serve(Twistd):
    """``dd0c-route --config F serve`` (the same waits and SIGTERM as twistd); output to a file."""

    def __init__(self, config_path: str, workdir: str, logfile: str, port: int) -> None:
        self.port = port
        self.logfile = logfile
        with open(logfile, "wb") as out:
            self.process = subprocess.Popen(
                [*CLI, "--config", config_path, "serve"], cwd=workdir, env=env(), stdout=out, stderr=subprocess.STDOUT,
            )


def healthz(port: int) -> dict[str, Any]:
    """One /healthz on a fresh connection (so the kernel may pick either worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz", headers={"connection": "close"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def workers_seen(port: int, tries: int = 60) -> dict[int, int]:
    """Worker index → pid, over ``tries`` fresh connections."""
    seen: dict[int, int] = {}
    for _ in range(tries):
        worker = healthz(port)["worker"]
        seen[worker["index"]] = worker["pid"]
    return seen


def both_workers(port: int) -> dict[int, int]:
    """Both workers' pids, once both answer (the second may still be starting)."""
    return wait_for(lambda: (lambda seen: seen if len(seen) == 2 else None)(workers_seen(port, tries=20)))


def chat(port: int, key: str, count: int) -> list[str]:
    """``count`` chat completions, each on its own connection; their request ids."""
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    ids = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/v1/chat/completions", body, {"authorization": f"Bearer {key}", "content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            ids.append(response.getheader("x-dd0c-request-id") or "")
        finally:
            conn.close()
    return ids


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


class WorkersLiveTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def start(self, runner=Twistd):
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        self.workdir = tempfile.mkdtemp(prefix="dd0c-workers-")
        port = free_port()
        config = write_config(
            self.workdir, port,
            f'[providers.openai]\nbase_url = "{fake.base_url}"\napi_key = "{provider_key}"\n',
        )
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[server]\n", "[server]\nworkers = 2\n", 1))
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "workers")
        self.assertEqual(created.returncode, 0, created.stderr)
        self.key = created.stdout.strip().splitlines()[-1]
        proc = runner(config, self.workdir, os.path.join(self.workdir, "proxy.log"), port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        return proc

    @inlineCallbacks
    def test_two_workers_answer_on_one_port(self):
        """Fresh connections to the one port are answered by two distinct worker processes."""
        proc = yield self.start()
        seen = yield in_thread(both_workers, proc.port)
        self.assertEqual(sorted(seen), [0, 1])
        self.assertEqual(len(set(seen.values())), 2)
        self.assertNotIn(proc.process.pid, seen.values())

    @inlineCallbacks
    def test_sigkill_of_a_worker_is_survived_and_replaced(self):
        """
        A worker killed with SIGKILL: the other keeps serving every request
        meanwhile, and the parent starts a new process in its seat.
        """
        proc = yield self.start()
        seen = yield in_thread(both_workers, proc.port)
        victim = seen[1]
        os.kill(victim, signal.SIGKILL)
        # Served throughout: every request gets its 200 from a live worker.
        ids = yield in_thread(chat, proc.port, self.key, 20)
        self.assertEqual(len(ids), 20)

        def replaced():
            now = workers_seen(proc.port, tries=20)
            return now if 1 in now and now[1] != victim else None

        now = yield in_thread(wait_for, replaced)
        self.assertEqual(now[0], seen[0])
        self.assertIsNone(proc.process.poll())

    @inlineCallbacks
    def test_sigterm_to_the_parent_loses_no_record(self):
        """
        ``dd0c-route serve`` with two workers: 100 requests, then SIGTERM to
        the parent: it exits 0 after both workers flushed, and the ledger
        has all 100 records (no journal left to replay).
        """
        proc = yield self.start(Serve)
        yield in_thread(both_workers, proc.port)
        ids = yield in_thread(chat, proc.port, self.key, 100)
        code = yield in_thread(proc.stop)
        self.assertEqual(code, 0)
        with sqlite3.connect(os.path.join(self.workdir, "ledger.sqlite3")) as db:
            stored = {row[0] for row in db.execute("SELECT request_id FROM usage")}
        self.assertEqual(len(set(ids)), 100)
        self.assertEqual(set(ids) - stored, set())
        leftovers = [n for n in os.listdir(self.workdir) if ".journal" in n]
        self.assertEqual(leftovers, [])

    @inlineCallbacks
    def test_workers_stop_when_the_parent_is_killed(self):
        """The parent SIGKILLed (no SIGTERM to forward): its workers notice and exit on their own."""
        proc = yield self.start()
        pids = list((yield in_thread(both_workers, proc.port)).values())
        proc.process.kill()
        proc.process.wait(timeout=10)

        def all_gone():
            alive = []
            for pid in pids:
                try:
                    os.kill(pid, 0)
                    alive.append(pid)
                except ProcessLookupError:
                    pass
            return not alive

        yield in_thread(wait_for, all_gone)
