"""
Hostile clients against a live proxy (raw sockets, the fake provider
upstream): dot-segment and unlisted paths, smuggling framings, deep JSON,
long headers, huge client strings, slow clients -- each gets its stated
answer, nothing reaches the provider that should not, no traceback is
logged, and the proxy keeps serving.  Ends with a Hypothesis fuzz target
over the request head and body.
"""

from __future__ import annotations

import json
import socket
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from dd0c_route.metering.meter import TRUNCATED_MARKER

from .live import in_thread, start_live_proxy

_CHAT = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, read until the proxy closes; returns every byte it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each response in ``raw`` (bodies by Content-Length)."""
    out = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((status, rest[:length]))
        raw = rest[length:]
    return out


def request(method: str, path: str, key: str | None, body: bytes = b"", extra: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
        + auth + extra + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )


class _Failures:
    """Collects every logged failure (traceback) and critical event."""

    def __init__(self, testcase: TestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict) -> None:
        level = getattr(event.get("log_level"), "name", "")
        if "log_failure" in event or level == "critical":
            self.events.append(event)


class HostileClientTests(TestCase):
    timeout = 120

    def setUp(self):
        self.failures = _Failures(self)

    def assertError(self, raw: bytes, status: int, code: str) -> None:
        answers = responses(raw)
        self.assertEqual(len(answers), 1, raw[:300])
        self.assertEqual(answers[0][0], status, raw[:300])
        body = json.loads(answers[0][1])
        self.assertEqual(body["error"]["code"], code)
        self.assertNotIn(b"Traceback", raw)

    def provider_paths(self, live) -> list[str]:
        return [r.path for r in live.openai.state.requests]

    @inlineCallbacks
    def assertStillServing(self, live):
        raw = yield in_thread(exchange, live.port, request("POST", "/v1/chat/completions", live.key, _CHAT))
        self.assertEqual(responses(raw)[0][0], 200, raw[:300])

    @inlineCallbacks
    def test_paths(self):
        """
        Dot segments (raw or encoded), encoded separators and controls are a
        400 invalid_path; an unlisted /v1 path is a 404 unknown_endpoint;
        neither reaches the provider.  An allowlisted path with encoded
        unreserved characters is relayed decoded, query kept.
        """
        live = yield start_live_proxy(self)
        for path in (
            "/v1/../admin", "/v1/%2e%2e/admin", "/v1/chat/completions/../../../admin",
            "/v1/files/a%2F..%2F..%2Fadmin", "/v1/files/%5C..%5Cadmin", "/v1/files/a%00b", "/v1/./embeddings",
        ):
            raw = yield in_thread(exchange, live.port, request("POST", path, live.key, b'{"input": "x"}'))
            self.assertError(raw, 400, "invalid_path")
        for path in ("/v1/admin", "/v1/organization/api_keys", "/v1/embeddingsx"):
            raw = yield in_thread(exchange, live.port, request("GET", path, live.key))
            self.assertError(raw, 404, "unknown_endpoint")
        self.assertEqual(self.provider_paths(live), [])
        raw = yield in_thread(
            exchange, live.port,
            request("POST", "/v1/%65mbeddings?x=%2e%2e", live.key, b'{"model": "text-embedding-3-small", "input": "hi"}'),
        )
        self.assertEqual(responses(raw)[0][0], 200, raw[:300])
        self.assertEqual(self.provider_paths(live), ["/v1/embeddings"])
        records = yield live.records()
        self.assertEqual(len(records), 11)
        yield self.assertStillServing(live)
        self.assertEqual(self.failures.events, [])

    @inlineCallbacks
    def test_smuggling_refused(self):
        """
        chunked + identity (and the other bad framings) get one JSON 400 and
        a close; the request and the one smuggled after it never reach the
        provider.
        """
        live = yield start_live_proxy(self)
        smuggled = request("POST", "/v1/embeddings", live.key, b'{"model": "text-embedding-3-small", "input": "smuggled"}')
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_CHAT), _CHAT)
        for framing in (
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            b"Transfer-Encoding: chunked, identity\r\n",
            b"Transfer-Encoding: identity\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
        ):
            head = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + live.key.encode() + b"\r\n" + framing + b"\r\n"
            )
            raw = yield in_thread(exchange, live.port, head + chunked + smuggled)
            self.assertError(raw, 400, "invalid_framing")
        self.assertEqual(self.provider_paths(live), [])
        yield self.assertStillServing(live)
        self.assertEqual(self.failures.events, [])

    @inlineCallbacks
    def test_bodies_headers_and_records(self):
        """
        100,000-deep JSON is a 400 invalid_json (no traceback); a 17 KiB
        header line is a JSON 431; a 1 MB model is a 404 whose record keeps
        at most 256 characters of it, marked.
        """
        live = yield start_live_proxy(self)
        deep = b"[" * 100_000 + b"]" * 100_000
        raw = yield in_thread(exchange, live.port, request("POST", "/v1/chat/completions", live.key, deep))
        self.assertError(raw, 400, "invalid_json")
        deep_model = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": ' + b"[" * 300 + b"]" * 300 + b"}]}"
        raw = yield in_thread(exchange, live.port, request("POST", "/v1/chat/completions", live.key, deep_model))
        self.assertError(raw, 400, "invalid_json")
        raw = yield in_thread(exchange, live.port, request("GET", "/v1/models", live.key, extra=b"X-Big: " + b"a" * 17000 + b"\r\n"))
        self.assertError(raw, 431, "request_header_too_large")
        huge = json.dumps({"model": "m" * 1_048_576, "messages": [{"role": "user", "content": "x"}]}).encode()
        raw = yield in_thread(exchange, live.port, request("POST", "/v1/chat/completions", live.key, huge))
        self.assertError(raw, 404, "model_not_found")
        records = yield live.records()
        self.assertEqual(sorted(r.status for r in records), [400, 400, 404])
        (missing,) = [r for r in records if r.status == 404]
        self.assertLessEqual(len(missing.model_requested), 256)
        self.assertTrue(missing.model_requested.endswith(TRUNCATED_MARKER))
        self.assertEqual(self.provider_paths(live), [])
        yield self.assertStillServing(live)
        self.assertEqual(self.failures.events, [])

    @inlineCallbacks
    def test_slow_clients_timed_out(self):
        """
        A head trickled byte by byte and a declared body never sent are cut
        (408) at the configured timeouts and counted; a normal request on
        another connection is served meanwhile.
        """
        live = yield start_live_proxy(self, extra_config={"server": {"client_header_timeout": 0.5, "client_body_timeout": 0.5}})
        site = live.built.site

        def trickle() -> tuple[bytes, float]:
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
                try:
                    for byte in b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                        sock.sendall(bytes([byte]))
                        time.sleep(0.05)
                except OSError:
                    pass
                data = b""
                try:
                    while chunk := sock.recv(4096):
                        data += chunk
                except ConnectionResetError:
                    pass
            return data, time.monotonic() - started

        data, elapsed = yield in_thread(trickle)
        self.assertError(data, 408, "request_timeout")
        self.assertLess(elapsed, 5.0)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10485000\r\n\r\n"
        raw = yield in_thread(exchange, live.port, head)
        self.assertError(raw, 408, "request_timeout")
        self.assertEqual(site.client_timeouts, 2)
        yield self.assertStillServing(live)
        self.assertEqual(self.failures.events, [])


_TOKENS = st.one_of(
    st.just("POST"),
    st.sampled_from(["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    st.sampled_from(["G\x00T", "", "POST POST", "\xff", "PO\rST"]),
)
_PATH_PIECES = st.sampled_from(
    ["v1", "chat", "completions", "models", "embeddings", "files", "messages", "..", ".", "%2e%2e", "%2F", "%5c",
     "%00", "%", "%zz", "a b", "\x00", "\r", "?", "#", "healthz", "responses", "~", "%7e", ""]
)
_NAMES = st.sampled_from(
    ["Content-Type", "Transfer-Encoding", "Content-Length", "Authorization", "Connection", "X-Any",
     "transfer-encoding", "Transfer-Encoding ", " Content-Length", "Host", "Bad\x00Name", "", "x-api-key",
     "anthropic-version"]
)
_VALUES = st.one_of(
    st.sampled_from(["chunked", "identity", "chunked, identity", "gzip", "0", "5", "-1", "99999999", "application/json",
                     "keep-alive", "close", "Bearer nope", "\x00", "a\rb", ""]),
    st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=30),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["model", "messages", "stream", "role", "content", "x"]), c, max_size=4),
    max_leaves=12,
)
_BODIES = st.one_of(
    st.just(_CHAT),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.just(_CHAT),
    st.integers(250, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.binary(max_size=200),
)


class FuzzTests(TestCase):
    timeout = 600

    @inlineCallbacks
    def test_fuzz_request_head_and_body(self):
        """
        For generated methods, paths, headers, framings and bodies: the
        proxy answers HTTP (never a 500) or closes cleanly, logs no
        traceback, and answers /healthz after every input.
        """
        failures = _Failures(self)
        live = yield start_live_proxy(
            self, kinds=("openai",), extra_config={"server": {"client_header_timeout": 0.5, "client_body_timeout": 0.5}}
        )
        key = live.key
        seen: dict[str, int] = {}

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            method=_TOKENS,
            path=st.one_of(
                st.sampled_from(["/v1/chat/completions", "/v1/models", "/v1/embeddings", "/v1/messages", "/healthz"]),
                st.lists(_PATH_PIECES, max_size=6).map(lambda p: "/" + "/".join(p)),
            ),
            headers=st.lists(
                st.one_of(st.tuples(st.sampled_from(["X-Any", "OpenAI-Beta", "Accept"]), st.just("1")), st.tuples(_NAMES, _VALUES)),
                max_size=3,
            ),
            framing=st.sampled_from(["length", "chunked", "none", "short"]),
            with_key=st.booleans(),
            body=_BODIES,
            plain_head=st.booleans(),
        )
        # The cases, always tried first:
        @example("POST", "/v1/chat/completions", [], "length", True, b"[" * 100_000 + b"]" * 100_000, True)
        @example("POST", "/v1/chat/completions", [("Transfer-Encoding", "identity")], "chunked", True, _CHAT, False)
        @example("GET", "/v1/%2e%2e/admin", [], "none", True, b"", False)
        def one(method, path, headers, framing, with_key, body, plain_head):
            if plain_head:  # half the inputs fuzz the body behind a valid head
                method, path, headers, framing, with_key = "POST", "/v1/chat/completions", [], "length", True
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode("latin-1")
            if with_key:
                head += f"Authorization: Bearer {key}\r\n".encode()
            for name, value in headers:
                head += f"{name}: {value}\r\n".encode("latin-1")
            if framing == "length":
                head += b"Content-Length: %d\r\n" % len(body)
            elif framing == "short":
                head += b"Content-Length: %d\r\n" % (len(body) + 10)
            elif framing == "chunked":
                head += b"Transfer-Encoding: chunked\r\n"
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            else:
                body = b""
            raw = exchange(live.port, head + b"Connection: close\r\n\r\n" + body)
            outcome = raw[9:12].decode() if raw else "close"
            seen[outcome] = seen.get(outcome, 0) + 1
            if raw:
                self.assertTrue(raw.startswith(b"HTTP/1.1 "), raw[:200])
                status = int(raw.split(b" ", 2)[1])
                self.assertNotEqual(status, 500, raw[:500])
                self.assertLess(status, 600)
                self.assertNotIn(b"Traceback", raw)
            health = exchange(live.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(health.startswith(b"HTTP/1.1 200"), health[:200])

        yield in_thread(one)
        # The inputs reached past the parser: answered requests, not only refusals.
        self.assertGreater(sum(seen.values()), 100)
        self.assertTrue({"200", "400", "404"} <= set(seen), seen)
        self.assertEqual([e.get("log_format") for e in failures.events], [])
        self.assertTrue(live.built.service.running)
