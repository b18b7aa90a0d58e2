"""
No secret leaves through the side doors: a live ``twistd dd0c-route`` with
a real log file is fed generated secrets in the Authorization header, the
query string, the message content, a provider error body that echoes the
key, and a request that makes the proxy fail internally; afterwards none of
them appears in the log file, the ledger database, or any response.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import tempfile
import urllib.error
import urllib.request

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import Scenario, start_fake_provider

from .live import in_thread
from .twistd_proc import Twistd, free_port, run_cli, write_config


def fake_secret(prefix: str) -> str:
    """A generated, obviously-fake secret of a real shape."""
    return prefix + "FAKEtest" + secrets.token_urlsafe(30)


def call(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(  # noqa: S310 - an http URL we built, on loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - an http URL we built, on loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class RedactionLiveTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_no_secret_in_log_ledger_or_responses(self):
        """Every secret fed in is absent from the log, the ledger and every response."""
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_secret("sk-proj-")
        leaky_key = fake_secret("AIza")
        fake.state.expected_key = provider_key
        header_secret = fake_secret("sk-")
        query_secret = fake_secret("")
        content_secret = fake_secret("sk-ant-api03-")
        workdir = tempfile.mkdtemp(prefix="dd0c-redact-")
        port = free_port()
        config = write_config(
            workdir, port,
            f"""
[providers.openai]
base_url = "{fake.base_url}"
api_key = "{provider_key}"
[providers.leaky]
kind = "openai"
base_url = "http://[::1/v1?key={leaky_key}"
api_key = "{leaky_key}"
models = ["leaky-model"]
""",
        )
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "redact")
        proxy_key = created.stdout.strip().splitlines()[-1]
        logfile = os.path.join(workdir, "twistd.log")
        proc = Twistd(config, workdir, logfile, port)
        self.addCleanup(proc.stop)
        yield in_thread(proc.wait_ready)
        base = f"http://127.0.0.1:{port}/v1/chat/completions"
        auth = {"Authorization": f"Bearer {proxy_key}"}
        responses = []
        # 1. A provider-looking key presented to the proxy.
        responses.append((yield in_thread(call, base, {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, {"Authorization": f"Bearer {header_secret}"})))
        # 2. Secrets in the query string.
        responses.append((yield in_thread(call, f"{base}?key={query_secret}&api_key={query_secret}", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, auth)))
        # 3. A secret in message content: relayed to the provider unchanged
        #    (the fake answers without echoing it: model output is not ours
        #    to rewrite).
        fake.state.push(Scenario(reply_text="noted"))
        responses.append((yield in_thread(call, base, {"model": "gpt-4o", "messages": [{"role": "user", "content": f"my key is {content_secret}"}]}, auth)))
        self.assertTrue(any(content_secret.encode() in r.body for r in fake.state.requests))
        # 4. A provider error body that echoes the provider key.
        fake.state.push(Scenario(status=401, error_body={"error": {"message": f"Incorrect API key provided: {provider_key}", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}))
        responses.append((yield in_thread(call, base, {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, auth)))
        self.assertEqual(responses[-1][0], 401)
        # 5. A provider whose URL holds a key and cannot be used: the proxy
        #    fails internally and logs it.
        responses.append((yield in_thread(call, base, {"model": "leaky-model", "messages": [{"role": "user", "content": "x"}]}, auth)))
        self.assertGreaterEqual(responses[-1][0], 500)
        yield in_thread(proc.stop)

        secrets_fed = [provider_key, leaky_key, header_secret, query_secret, content_secret, proxy_key]
        with open(logfile, encoding="utf-8", errors="replace") as f:
            log_text = f.read()
        # The internal failure was logged, with its traceback, redacted.
        self.assertIn("Traceback", log_text)
        ledger = b"".join(open(p, "rb").read() for p in glob.glob(f"{workdir}/ledger.sqlite3*"))
        for secret in secrets_fed:
            self.assertNotIn(secret, log_text, "secret in the log file")
            self.assertNotIn(secret.encode(), ledger, "secret in the ledger")
            for status, headers, body in responses:
                self.assertNotIn(secret.encode(), body, f"secret in a {status} response body")
                self.assertNotIn(secret, json.dumps(headers), "secret in response headers")
        for status, headers, body in responses:
            self.assertTrue(headers.get("Content-Type", "").startswith("application/json"), (status, headers))
            json.loads(body)
