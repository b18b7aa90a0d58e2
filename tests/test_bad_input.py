"""
Bad input always gets an OpenAI-shaped JSON error, the process keeps
serving, and each request still leaves one usage record.
"""

from __future__ import annotations

import json
import socket

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from .live import in_thread, start_live_proxy
from .openapi_schema import validate


def raw_http(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange over a plain socket; returns status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            response = b"".join(chunks)
            head, sep, body = response.partition(b"\r\n\r\n")
            if sep:
                headers = _headers(head)
                length = headers.get("content-length")
                if length is not None and len(body) >= int(length):
                    break
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, _headers(head), body


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out[name.decode().strip().lower()] = value.decode().strip()
    return out


def post(port: int, path: str, body: bytes, key: str | None, extra: str = "", method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    return raw_http(port, request)


class BadInputTests(TestCase):
    timeout = 60

    def assertOpenAIError(self, status, headers, body, expected_status, code=None):
        self.assertEqual(status, expected_status, body)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        parsed = json.loads(body)
        validate("ErrorResponse", parsed)
        if code is not None:
            self.assertEqual(parsed["error"]["code"], code)
        self.assertNotIn(b"Traceback", body)
        self.assertNotIn(b"<html", body.lower())
        return parsed

    @inlineCallbacks
    def test_each_bad_input_case(self):
        """
        Invalid JSON 400, missing model 400, missing messages 400, unknown
        model 404 model_not_found, wrong method 405, missing key 401, unknown
        key 401 without echoing it, over-limit body 413 — each JSON, each
        recorded, and the proxy still serves a good request afterwards.
        """
        live = yield start_live_proxy(self, extra_config={"server": {"max_body_bytes": 4096}})
        port = live.port
        key = live.key
        cases = [
            (lambda: post(port, "/v1/chat/completions", b"{not json", key), 400, "invalid_json"),
            (lambda: post(port, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', key), 400, None),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "gpt-4o"}', key), 400, None),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "gpt-4o", "messages": "hi"}', key), 400, None),
            (lambda: post(port, "/v1/chat/completions", b'[1, 2]', key), 400, "invalid_json"),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', key), 404, "model_not_found"),
            (lambda: post(port, "/v1/chat/completions", b"", key, method="GET"), 405, None),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}', None), 401, "invalid_api_key"),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}', "dd0c-" + "Q" * 43), 401, "invalid_api_key"),
            (lambda: post(port, "/v1/chat/completions", b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"x" * 8000 + b'"}]}', key), 413, "request_too_large"),
        ]
        for send, expected, code in cases:
            status, headers, body = yield in_thread(send)
            self.assertOpenAIError(status, headers, body, expected, code)
            self.assertNotIn(b"Q" * 43, body)
            self.assertNotIn(key.encode(), body)
        # Still serving.
        client = live.openai_client()
        reply = yield in_thread(
            lambda: client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "still there?"}])
        )
        self.assertTrue(reply.choices[0].message.content)
        records = yield live.records()
        self.assertEqual(len(records), len(cases) + 1)
        statuses = sorted(r.status for r in records)
        self.assertEqual(statuses, sorted([c[1] for c in cases] + [200]))
        self.assertEqual(live.openai.state.request_count if hasattr(live.openai.state, "request_count") else len(live.openai.state.requests), 1)

    @inlineCallbacks
    def test_sdk_errors_for_bad_key_and_model(self):
        """
        The openai SDK raises its own exception types for our errors:
        AuthenticationError for an unknown key, NotFoundError for an
        unknown model.
        """
        import openai

        live = yield start_live_proxy(self)
        bad = live.openai_client(api_key="dd0c-" + "Z" * 43)
        with self.assertRaises(openai.AuthenticationError) as ctx:
            yield in_thread(lambda: bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]))
        self.assertNotIn("Z" * 43, str(ctx.exception))
        good = live.openai_client()
        with self.assertRaises(openai.NotFoundError):
            yield in_thread(lambda: good.chat.completions.create(model="nope-1", messages=[{"role": "user", "content": "x"}]))

    @inlineCallbacks
    def test_unknown_path_and_healthz(self):
        """Unknown paths get JSON 404; /healthz answers JSON without a key."""
        live = yield start_live_proxy(self)
        status, headers, body = yield in_thread(post, live.port, "/nowhere", b"", live.key, method="GET")
        self.assertOpenAIError(status, headers, body, 404)
        status, headers, body = yield in_thread(post, live.port, "/healthz", b"", None, method="GET")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "ok")

    @inlineCallbacks
    def test_models_list(self):
        """GET /v1/models lists served models in OpenAI's schema."""
        live = yield start_live_proxy(self)
        yield live.app.catalog.refresh()  # the providers' own lists
        client = live.openai_client()
        raw = yield in_thread(lambda: client.models.with_raw_response.list())
        body = json.loads(raw.text)
        validate("ListModelsResponse", body)
        ids = {m["id"] for m in body["data"]}
        self.assertIn("gpt-4o", ids)
        self.assertIn("claude-sonnet-4-20250514", ids)
