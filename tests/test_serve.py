"""
``dd0c-route serve`` as a container runs it: foreground, no pidfile, JSON
log lines on stdout, the listen address from the environment, SIGTERM
exits 0; a bad or self-pointing config exits 2 naming the key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dd0c_route.testing.fakeprovider import start_fake_provider

from .live import fake_provider_key, in_thread
from .twistd_proc import CLI, ROOT, env, free_port, run_cli, write_config


def _wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("serve did not become ready")


def _chat(port: int, key: str) -> int:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions?api_key=leak", data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback
        return response.status


class ServeTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_serve_in_foreground_with_json_logs(self):
        fake = yield start_fake_provider(reactor, "openai")
        self.addCleanup(fake.stop)
        provider_key = fake_provider_key()
        fake.state.expected_key = provider_key
        workdir = tempfile.mkdtemp(prefix="dd0c-serve-")
        file_port, port = free_port(), free_port()
        config = write_config(
            workdir, file_port,
            f'[providers.openai]\nbase_url = "{fake.base_url}"\napi_key = "{provider_key}"\n'
            '[log]\nformat = "json"\naccess = true\n',
        )
        created = yield in_thread(run_cli, "--config", config, "keys", "create", "--name", "ci")
        key = created.stdout.strip().splitlines()[-1]
        environ = dict(env(), DD0C_ROUTE_CONFIG=config, DD0C_ROUTE_SERVER_LISTEN=f"tcp:{port}:interface=127.0.0.1")
        process = subprocess.Popen(
            [*CLI, "serve"], cwd=workdir, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        yield in_thread(_wait_healthy, port, process)
        status = yield in_thread(_chat, port, key)
        self.assertEqual(status, 200)
        process.send_signal(signal.SIGTERM)
        out, err = yield in_thread(process.communicate, timeout=60)
        self.assertEqual(process.returncode, 0, err.decode())
        self.assertFalse(os.path.exists(os.path.join(workdir, "twistd.pid")))
        text = out.decode()
        lines = [line for line in text.splitlines() if line.strip()]
        events = [json.loads(line) for line in lines]  # every line is one JSON object
        self.assertNotIn("\x1e", text)
        (access,) = [e for e in events if e.get("log_namespace") == "dd0c_route.access"]
        self.assertEqual(access["status"], 200)
        self.assertTrue(access["request_id"].startswith("req_"))
        self.assertEqual(access["endpoint"], "/v1/chat/completions")
        for secret in (key, provider_key, "api_key=leak"):
            self.assertNotIn(secret, text + err.decode())

    def test_bad_and_self_pointing_configs_exit_2(self):
        workdir = tempfile.mkdtemp(prefix="dd0c-serve-")
        port = free_port()
        looping = write_config(workdir, port, f'[providers.openai]\nbase_url = "http://localhost:{port}/v1"\n')
        result = subprocess.run([*CLI, "--config", looping, "serve"], capture_output=True, text=True, env=env(), cwd=str(ROOT), timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("providers.openai.base_url", result.stderr)
        self.assertIn("own listen address", result.stderr)
        result = subprocess.run(
            [*CLI, "serve"], capture_output=True, text=True, cwd=str(ROOT), timeout=60,
            env=dict(env(), DD0C_ROUTE_SERVER_MAX_BODY_BYTES="lots"),
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn("DD0C_ROUTE_SERVER_MAX_BODY_BYTES", result.stderr)
