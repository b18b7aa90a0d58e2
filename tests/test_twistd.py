"""
The product as an operator runs it: ``dd0c-route keys create`` then
``twistd -n dd0c-route --config FILE`` in a real process, the official
``openai`` SDK as client, the fake provider upstream; SIGTERM flushes every
record; ``dd0c-route usage --json`` reports them.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile

import openai
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .openapi_schema import validate_sse_stream
from .twistd_proc import Twistd, free_port, run_cli, write_config


class TwistdTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_operator_flow(self):
        """
        Keys created by the CLI work against a live twistd; a revoked key is
        refused; stream and non-stream relay; SIGTERM flushes; usage --json
        has one line per request with the documented fields.
        """
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        workdir = tempfile.mkdtemp(prefix="dd0c-twistd-")
        port = free_port()
        config = write_config(
            workdir, port,
            f'key_cache_ttl = 1.0\n[providers.openai]\nbase_url = "{fake.base_url}"\n'
            'api_key_env = "DD0C_TEST_PROVIDER_KEY"\n',
        )
        os.environ["DD0C_TEST_PROVIDER_KEY"] = provider_key
        self.addCleanup(os.environ.pop, "DD0C_TEST_PROVIDER_KEY", None)

        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "ci", "--team", "qa")
        self.assertEqual(created.returncode, 0, created.stderr)
        key = created.stdout.strip().splitlines()[-1]
        self.assertTrue(key.startswith("dd0c-"))
        second = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "doomed")
        doomed = second.stdout.strip().splitlines()[-1]

        logfile = os.path.join(workdir, "twistd.log")
        proc = Twistd(config, workdir, logfile, port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=20)
        self.addCleanup(client.close)
        reply = yield in_thread(
            lambda: client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi there"}])
        )
        self.assertTrue(reply.choices[0].message.content.startswith("Echo:"))
        chunks = yield in_thread(
            lambda: list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "stream"}], stream=True))
        )
        validate_sse_stream([c.model_dump(exclude_unset=True) for c in chunks])

        doomed_client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=doomed, max_retries=0, timeout=20)
        self.addCleanup(doomed_client.close)
        yield in_thread(lambda: doomed_client.models.list())
        revoked = yield in_thread(run_cli, "--config", config, "keys", "revoke", "doomed")
        self.assertEqual(revoked.returncode, 0, revoked.stderr)

        def refused_within_5s():
            import time

            deadline = time.monotonic() + 5.5
            while time.monotonic() < deadline:
                try:
                    doomed_client.models.list()
                except openai.AuthenticationError:
                    return True
                time.sleep(0.2)
            return False

        self.assertTrue((yield in_thread(refused_within_5s)))

        code = yield in_thread(proc.stop)
        # twistd re-raises the signal that stopped it: a clean SIGTERM stop.
        self.assertIn(code, (0, -signal.SIGTERM))

        usage = yield in_thread(run_cli, "--config", config, "usage", "--json")
        self.assertEqual(usage.returncode, 0, usage.stderr)
        lines = [json.loads(line) for line in usage.stdout.splitlines() if line.strip()]
        chat = [r for r in lines if r["endpoint"] == "/v1/chat/completions"]
        self.assertEqual(len(chat), 2)
        for record in chat:
            for field in ("request_id", "response_id", "key_id", "provider", "model_requested", "model",
                          "prompt_tokens", "completion_tokens", "cost_usd", "status", "stream",
                          "disconnected", "ttfb_ms", "latency_ms"):
                self.assertIn(field, record)
            self.assertEqual(record["status"], 200)
            self.assertIsInstance(record["cost_usd"], str)
        self.assertEqual({r["stream"] for r in chat}, {True, False})
        self.assertIn(reply.id, {r["response_id"] for r in chat})
        self.assertTrue(any(r["status"] == 401 for r in lines))
        with open(logfile) as f:
            log = f.read()
        for secret in (key, doomed, provider_key):
            self.assertNotIn(secret, log)
            self.assertNotIn(secret, usage.stdout)
