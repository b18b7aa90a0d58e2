"""
``kill -9`` in a burst loses no answered request's record (issue #17, item
8): a real ``twistd dd0c-route`` serves a 200-request burst from several
client threads, is SIGKILLed half way, and is started again on the same
ledger; every request that got its 200 more than 10 ms before the kill has
exactly one record afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .twistd_proc import Twistd, free_port, run_cli, write_config

BURST = 200
THREADS = 8
WINDOW = 0.010


def burst(port: int, key: str, kill_after: int, proc: Twistd) -> tuple[list[tuple[str, float]], float]:
    """Fire the burst; SIGKILL the proxy once ``kill_after`` answers arrived."""
    answered: list[tuple[str, float]] = []
    lock = threading.Lock()
    killed_at: list[float] = []
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(count):
            try:
                conn.request("POST", "/v1/chat/completions", body, {"authorization": f"Bearer {key}", "content-type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                return
            done = time.monotonic()
            if response.status != 200:
                continue
            with lock:
                answered.append((response.getheader("x-dd0c-request-id") or "", done))
                if len(answered) == kill_after and not killed_at:
                    killed_at.append(time.monotonic())
                    os.kill(proc.process.pid, signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(BURST // THREADS,)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered, killed_at[0] if killed_at else float("inf")


class KillTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def test_sigkill_in_a_burst_loses_no_answered_record(self):
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        workdir = tempfile.mkdtemp(prefix="dd0c-kill-")
        port = free_port()
        # A long store flush interval: without the journal, the records of
        # the last second before the kill would all be lost.
        config = write_config(
            workdir, port,
            f'flush_interval = 1.0\n[providers.openai]\nbase_url = "{fake.base_url}"\napi_key = "{provider_key}"\n',
        )
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "kill")
        self.assertEqual(created.returncode, 0, created.stderr)
        key = created.stdout.strip().splitlines()[-1]
        logfile = os.path.join(workdir, "twistd.log")
        proc = Twistd(config, workdir, logfile, port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        answered, killed_at = yield in_thread(burst, port, key, BURST // 2, proc)
        proc.process.wait(timeout=10)
        self.assertEqual(proc.process.returncode, -signal.SIGKILL)
        self.assertGreaterEqual(len(answered), BURST // 2)

        again = Twistd(config, workdir, logfile + ".2", port)
        self.addCleanup(again.stop)
        yield in_thread(again.wait_ready)
        yield in_thread(again.stop)  # SIGTERM: flushes everything, the replay included

        with sqlite3.connect(os.path.join(workdir, "ledger.sqlite3")) as db:
            stored = {row[0] for row in db.execute("SELECT request_id FROM usage")}
        must_have = [rid for rid, done in answered if done < killed_at - WINDOW]
        missing = [rid for rid in must_have if rid not in stored]
        late = [rid for rid, done in answered if done >= killed_at - WINDOW and rid not in stored]
        print(f"\nkill test: {len(answered)} answered, {len(must_have)} more than 10 ms before the kill, "
              f"{len(missing)} of those missing; {len(late)} of the last 10 ms missing")
        self.assertEqual(missing, [])
        self.assertEqual(len(stored), len(set(stored)))
